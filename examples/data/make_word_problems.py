"""Write the one-step word problems of ``examples/configs/smollm2_word_problems.yaml``.

    python examples/data/make_word_problems.py      # -> word_problems_train.jsonl, word_problems_test.jsonl

Deterministic (seeded); the test problems never share (template, numbers) with the training ones.
Rows: ``{"question": ..., "answer": "19"}``.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

NAMES = ["Mia", "Tom", "Sara", "Leo", "Ava", "Ben", "Nora", "Sam", "Lily", "Omar", "Zoe", "Max"]
ITEMS = ["apples", "books", "stickers", "marbles", "pencils", "cookies", "cards", "shells", "coins", "stamps"]
TEMPLATES = [  # (text, answer from a and b)
    ("{n} has {a} {i} and gets {b} more. How many {i} does {n} have now?", lambda a, b: a + b),
    ("{n} had {a} {i} and gave away {b}. How many {i} are left?", lambda a, b: a - b),
    ("{n} buys {a} bags with {b} {i} in each bag. How many {i} does {n} buy?", lambda a, b: a * b),
    ("There are {a} {i} on a table and {b} {i} in a box. How many {i} are there in all?", lambda a, b: a + b),
    ("{n} needs {a} {i} and already has {b}. How many more {i} does {n} need?", lambda a, b: a - b),
    ("Each of {b} friends has {a} {i}. How many {i} do they have together?", lambda a, b: a * b),
]


def problems(rng: random.Random, n: int, taken: set) -> list[dict]:
    rows = []
    while len(rows) < n:
        t = rng.randrange(len(TEMPLATES))
        text, fn = TEMPLATES[t]
        a, b = rng.randint(3, 30), rng.randint(2, 12)
        if t in (1, 4):  # subtraction: a > b
            a, b = max(a, b) + 1, min(a, b)
        if (t, a, b) in taken:
            continue
        taken.add((t, a, b))
        q = text.format(n=rng.choice(NAMES), i=rng.choice(ITEMS), a=a, b=b)
        rows.append({"question": q, "answer": str(fn(a, b))})
    return rows


def main() -> None:
    here = Path(__file__).resolve().parent
    rng, taken = random.Random(16), set()
    test = problems(rng, 100, taken)
    train = problems(rng, 1000, taken)
    for name, rows in (("word_problems_train.jsonl", train), ("word_problems_test.jsonl", test)):
        (here / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


if __name__ == "__main__":
    main()
