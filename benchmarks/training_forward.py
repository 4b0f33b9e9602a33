"""The three ways rftgym runs the training forward, side by side: forward+backward ms per batch.

    python benchmarks/training_forward.py            # three batch shapes, embedded model
    python benchmarks/training_forward.py --quick    # one small cell (the smoke test)

``padded``: every row whole (prompt copied G times, completions padded to the longest);
``kv_cache``: each distinct prompt once, its KV cache indexed out to the G completions (two
model calls); ``packed``: prompt-tree packing (each group's prompt once, then its completions,
no padding, one call; ``runner/packing.py``). ``default`` is what the trainer runs
(``completion_logprobs(share_prompts=True)``): packed unless its cost estimate declines, which
the ``packed_batches`` column counts. Same rollouts for all, sampled once from the model; the
loss weighs every token, as GRPO's does. Interleaved per repetition; medians. Last stdout line: JSON.
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

MODES = {"padded": dict(share_prompts=False), "kv_cache": dict(share_prompts=True, pack_rows=False),
         "default": dict(share_prompts=True)}


def fwd_bwd(model, batch, **kwargs) -> None:
    from rftgym.runner.policy import completion_logprobs

    model.zero_grad(set_to_none=True)
    logp, _ = completion_logprobs(model, *batch, with_entropy=True, **kwargs)
    logp.sum().backward()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one small cell, few repetitions")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions per cell (default 5)")
    args = p.parse_args(argv)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rftgym.runner import packing
    from rftgym.runner.policy import Policy

    torch.set_num_threads(args.threads)
    reps = args.reps or (1 if args.quick else 5)
    kind = "random" if args.quick else "warm"
    # (prompts, group size, max new tokens, model): the standard GRPO batch, no groups, long rows
    cells = [(4, 4, 8, kind)] if args.quick else [(8, 8, 8, "warm"), (64, 1, 8, "warm"), (8, 8, 64, "random")]
    started = time.perf_counter()
    models, info = {}, {}
    for k in sorted({c[3] for c in cells}):
        with tempfile.TemporaryDirectory(prefix="bench-fwd-") as tmp:
            info[k] = build_model_dir(Path(tmp), kind=k, log=lambda m: print(m, file=sys.stderr))["model"]
            models[k] = (AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32),
                         AutoTokenizer.from_pretrained(tmp))
    rows = heldout_rows(256)
    results = []
    for n_prompts, group, max_new, k in cells:
        model, tokenizer = models[k]
        policy = Policy(model, tokenizer)
        generator = torch.Generator().manual_seed(0)
        batches = []
        for i in range(4):  # different rollouts, the same for every mode
            prompts = [r["prompt"] for r in rows[i * n_prompts:(i + 1) * n_prompts]]
            s = policy.sample(prompts, group_size=group, max_new_tokens=max_new, generator=generator)
            batches.append((s.prompt_ids, s.prompt_mask, s.completion_ids, s.completion_mask))
        model.train()
        weights = packing.cost_weights(model)
        packed = sum(packing.pack(*b, weights) is not None for b in batches)
        times = {m: [] for m in MODES}
        for m, kwargs in MODES.items():  # warm-up
            fwd_bwd(model, batches[0], **kwargs)
        for _ in range(reps):
            for m, kwargs in MODES.items():
                t0 = time.perf_counter()
                for b in batches:
                    fwd_bwd(model, b, **kwargs)
                times[m].append((time.perf_counter() - t0) / len(batches) * 1000)
        ms = {m: median(v) for m, v in times.items()}
        lengths = torch.cat([b[3].sum(-1) for b in batches]).float()
        cell = {"prompts": n_prompts, "group_size": group, "max_new_tokens": max_new, "model": info[k],
                "completion_length_mean": round(float(lengths.mean()), 2), "packed_batches": f"{packed}/{len(batches)}",
                **{f"{m}_ms": round(v, 2) for m, v in ms.items()},
                "default_vs_padded": round(ms["padded"] / ms["default"], 2),
                "default_vs_kv_cache": round(ms["kv_cache"] / ms["default"], 2)}
        results.append(cell)
        print(f"bench: B={n_prompts} G={group} T={max_new}: " + ", ".join(f"{m} {v:.1f} ms" for m, v in ms.items())
              + f" (packed {packed}/{len(batches)})", file=sys.stderr)
    report = {"cells": results, "config": {"threads": args.threads, "reps": reps},
              "load_average": load_average(), "wall_s": round(time.perf_counter() - started, 1)}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
