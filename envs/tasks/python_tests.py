"""Generated Python function problems with unit tests and gold solutions (``rftgym/PythonTests-v0``).

Each family is a small list/str function with a parameter (``k``, a character, ...); every
(family, parameter, function name) combination is one problem, a few hundred in all. Test
inputs come from an RNG seeded by the problem's text and the expected outputs from the
family's reference function (our own code, never model output), so problems are identical on
every machine. Problems are held out by a hash of the prompt, so train and test are disjoint.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

# (name stem, description with {k}, gold source with {name}/{k}, reference fn(k) -> f, argument kind, k values)
_FAMILIES: list[tuple[str, str, str, Callable[[Any], Callable[..., Any]], str, list[Any]]] = [
    ("sum_above", "returns the sum of the numbers in the list `xs` that are greater than {k}",
     "def {name}(xs):\n    return sum(x for x in xs if x > {k})\n", lambda k: lambda xs: sum(x for x in xs if x > k),
     "ints", list(range(-3, 8))),
    ("count_char", "returns how many times the character {k!r} occurs in the string `s`",
     "def {name}(s):\n    return s.count({k!r})\n", lambda k: lambda s: s.count(k), "str", list("abcdexyz")),
    ("scale", "returns a new list with every number of `xs` multiplied by {k}",
     "def {name}(xs):\n    return [x * {k} for x in xs]\n", lambda k: lambda xs: [x * k for x in xs], "ints",
     list(range(-3, 8))),
    ("rotate", "returns the list `xs` rotated left by {k} positions (wrapping around; an empty list stays empty)",
     "def {name}(xs):\n    if not xs:\n        return []\n    n = {k} % len(xs)\n    return xs[n:] + xs[:n]\n",
     lambda k: lambda xs: (xs[k % len(xs):] + xs[:k % len(xs)]) if xs else [], "ints", list(range(1, 9))),
    ("every_kth", "returns every {k}-th character of the string `s`, starting with the first",
     "def {name}(s):\n    return s[::{k}]\n", lambda k: lambda s: s[::k], "str", list(range(2, 9))),
    ("count_multiples", "returns how many numbers in the list `xs` are divisible by {k}",
     "def {name}(xs):\n    return sum(1 for x in xs if x % {k} == 0)\n",
     lambda k: lambda xs: sum(1 for x in xs if x % k == 0), "ints", list(range(2, 10))),
    ("pad_left", "returns the string `s` padded on the left with '*' to length {k} (unchanged if already longer)",
     "def {name}(s):\n    return s.rjust({k}, '*')\n", lambda k: lambda s: s.rjust(k, "*"), "str", list(range(3, 12))),
    ("remove_value", "returns the list `xs` without any element equal to {k}, keeping the order",
     "def {name}(xs):\n    return [x for x in xs if x != {k}]\n", lambda k: lambda xs: [x for x in xs if x != k],
     "ints", list(range(-2, 8))),
    ("first_index", "returns the index of the first element of `xs` equal to {k}, or -1 if there is none",
     "def {name}(xs):\n    for i, x in enumerate(xs):\n        if x == {k}:\n            return i\n    return -1\n",
     lambda k: lambda xs: xs.index(k) if k in xs else -1, "ints", list(range(0, 8))),
    ("replace_char", "returns the string `s` with every {k!r} replaced by '_'",
     "def {name}(s):\n    return s.replace({k!r}, '_')\n", lambda k: lambda s: s.replace(k, "_"), "str", list("abcdexyz")),
    ("chunk_sums", "returns the sums of consecutive chunks of {k} numbers of `xs` (the last chunk may be shorter)",
     "def {name}(xs):\n    return [sum(xs[i:i + {k}]) for i in range(0, len(xs), {k})]\n",
     lambda k: lambda xs: [sum(xs[i:i + k]) for i in range(0, len(xs), k)], "ints", list(range(2, 7))),
    ("repeat_words", "returns the words of the string `s` (split on spaces) each repeated {k} times, joined by one space",
     "def {name}(s):\n    return ' '.join(w * {k} for w in s.split())\n",
     lambda k: lambda s: " ".join(w * k for w in s.split()), "words", list(range(2, 6))),
]
_NAME_STYLES = ("{stem}", "solve_{stem}", "{stem}_fn", "compute_{stem}")
_ALPHABET = "abcdexyz "


def _is_test(text: str, test_percent: int) -> bool:
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % 100 < test_percent


def _inputs(kind: str, rng: random.Random, n: int) -> list[Any]:
    out: list[Any] = [[] if kind == "ints" else ""]  # the empty case is always tested
    while len(out) < n:
        size = rng.randint(1, 8)
        if kind == "ints":
            out.append([rng.randint(-5, 12) for _ in range(size)])
        elif kind == "words":
            out.append(" ".join("".join(rng.choice("abxyz") for _ in range(rng.randint(1, 4))) for _ in range(size)))
        else:
            out.append("".join(rng.choice(_ALPHABET) for _ in range(size + 2)))
    return out


def make_problem(family: int, k: Any, style: int, n_tests: int = 5) -> dict:
    """One problem row: ``prompt``, ``tests`` (assert lines), ``entry_point``, ``answer`` (gold code)."""
    stem, describe, gold, reference, kind, _ = _FAMILIES[family]
    name = _NAME_STYLES[style].format(stem=stem)
    arg = "xs" if kind == "ints" else "s"
    text = f"Write a Python function `{name}({arg})` that {describe.format(k=k)}."
    rng = random.Random(text)  # the tests depend on the problem only
    fn = reference(k)
    tests = [f"assert {name}({x!r}) == {fn(x)!r}" for x in _inputs(kind, rng, n_tests)]
    prompt = f"{text}\nYour code should pass this test:\n{tests[-1]}\nAnswer with the function in a ```python block.\n"
    return {"prompt": prompt, "tests": tests, "entry_point": name, "answer": gold.format(name=name, k=k),
            "family": stem}


def all_problems(n_tests: int = 5) -> list[dict]:
    """Every problem, in a fixed order."""
    return [make_problem(f, k, style, n_tests) for f, fam in enumerate(_FAMILIES) for k in fam[5]
            for style in range(len(_NAME_STYLES))]


@dataclass
class PythonTestsTask:
    """The generated problems of one split; ``test_percent`` of them are held out.

    The default reward and checker are ``code`` (the fraction of tests passed; correct when all pass
    with ``mode="all"``, or at least half with the default)."""

    split: str = "train"
    test_percent: int = 20
    n_tests: int = 5

    default_reward = "code"
    checker = "code"

    def __post_init__(self) -> None:
        if self.split not in ("train", "test"):
            raise ValueError(f"python_tests split must be 'train' or 'test', got {self.split!r}")
        if not 1 <= self.test_percent <= 50:
            raise ValueError(f"python_tests test_percent must be in 1..50, got {self.test_percent!r}")
        if not 1 <= self.n_tests <= 20:
            raise ValueError(f"python_tests n_tests must be in 1..20, got {self.n_tests!r}")
        problems = all_problems(self.n_tests)
        want_test = self.split == "test"
        self.problems = [p for p in problems if _is_test(p["prompt"].split("\n", 1)[0], self.test_percent) == want_test]
        order = np.random.default_rng(12345).permutation(len(self.problems))
        self.problems = [self.problems[i] for i in order]

    def sample(self, rng: np.random.Generator) -> dict:
        """One problem of this split drawn with ``rng``."""
        return dict(self.problems[int(rng.integers(len(self.problems)))])

    def __iter__(self) -> Iterator[dict]:
        """Every problem of this split in a fixed pseudo-random order (for evaluation)."""
        return (dict(p) for p in self.problems)

    def __len__(self) -> int:
        return len(self.problems)
