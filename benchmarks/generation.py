"""rftgym's sampler (``Policy.sample``) vs Hugging Face ``generate``: generated tokens per second.

    python benchmarks/generation.py            # prompts × group size × max new tokens grid
    python benchmarks/generation.py --quick    # one small cell (the smoke test)

Same model, same prompts, same sampling (temperature 1, no top-k/top-p), the same thread count,
one process, the two interleaved cell by cell. HF generates G completions per prompt with
``num_return_sequences=G`` (the prompt is copied G times before its prefill); rftgym runs each
prompt's prefill once, shares its KV cache across the G completions, and drops finished rows from
the batch. Tokens counted: generated tokens up to and including EOS. The last stdout line is JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import build_model_dir, heldout_rows, load_average, median  # noqa: E402


def hf_generate(model, tokenizer, prompts: list[str], group: int, max_new_tokens: int) -> int:
    """Generated tokens (up to and including EOS) from one ``model.generate`` call."""
    import torch

    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=max_new_tokens,
                         num_return_sequences=group, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    completion = out[:, enc["input_ids"].size(1):]
    is_eos = completion == tokenizer.eos_token_id
    # length = index of the first EOS + 1, or the full width when none
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1) + 1, torch.full_like(is_eos[:, 0], completion.size(1),
                                                                                   dtype=torch.long))
    return int(first.sum())


def rftgym_sample(policy, prompts: list[str], group: int, max_new_tokens: int) -> int:
    samples = policy.sample(prompts, group_size=group, max_new_tokens=max_new_tokens)
    return int(samples.completion_mask.sum())


def measure(fn, reps: int) -> tuple[float, float]:
    """Median tokens/s over ``reps`` calls (after one warm-up call)."""
    fn()
    rates = []
    for _ in range(reps):
        t0 = time.perf_counter()
        tokens = fn()
        rates.append(tokens / (time.perf_counter() - t0))
    return median(rates), float(tokens)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one small cell, few repetitions")
    p.add_argument("--threads", type=int, default=1, help="torch threads (both samplers)")
    p.add_argument("--reps", type=int, default=None, help="timed calls per cell and sampler (default 7)")
    p.add_argument("--model", choices=("warm", "random"), default=None,
                   help="warm: arithmetic-pretrained (stops early, default); random: fresh weights (rarely stops)")
    args = p.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rftgym.runner.policy import Policy

    torch.set_num_threads(args.threads)
    reps = args.reps or (2 if args.quick else 7)
    kind = args.model or ("random" if args.quick else "warm")
    cells = [(8, 8, 8)] if args.quick else [(b, g, t) for t in (8, 64) for b, g in ((1, 8), (8, 1), (8, 8), (32, 8))]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
        info = build_model_dir(Path(tmp), kind=kind, log=lambda m: print(m, file=sys.stderr))
        model = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(tmp)
    tokenizer.padding_side = "left"
    policy = Policy(model, tokenizer)
    rows = heldout_rows(64)
    results = []
    for prompts_n, group, max_new in cells:
        prompts = [r["prompt"] for r in rows[:prompts_n]]
        torch.manual_seed(0)
        with torch.no_grad():
            hf_rate, hf_tokens = measure(lambda: hf_generate(model, tokenizer, prompts, group, max_new), reps)
        torch.manual_seed(0)
        rft_rate, rft_tokens = measure(lambda: rftgym_sample(policy, prompts, group, max_new), reps)
        cell = {"prompts": prompts_n, "group_size": group, "max_new_tokens": max_new,
                "rftgym_tokens_per_s": rft_rate, "hf_tokens_per_s": hf_rate, "speedup": rft_rate / hf_rate,
                "rftgym_tokens": rft_tokens, "hf_tokens": hf_tokens}
        results.append(cell)
        print(f"bench: B={prompts_n} G={group} T={max_new}: rftgym {rft_rate:.0f} tok/s, HF {hf_rate:.0f} tok/s "
              f"({cell['speedup']:.2f}x)", file=sys.stderr)
    report = {"speedup_median": median([c["speedup"] for c in results]), "cells": results,
              "config": {"threads": args.threads, "reps": reps, **info}, "load_average": load_average(),
              "wall_s": round(time.perf_counter() - started, 1)}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
