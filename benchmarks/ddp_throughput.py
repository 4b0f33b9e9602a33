"""2 ranks (torchrun, gloo) vs 1 process on the same global batch: training throughput ratio.

    python benchmarks/ddp_throughput.py [--model DIR] [--prompts 8] [--steps 6] [--nproc 2]

Both runs train GRPO with the same config and global batch (``rollout.prompts_per_step``
prompts × G completions per step); the single process gets all the machine's cores as torch
threads, each rank its share (``train.threads=0``). Per step, the time is the rank-mean of
sample + score + update (the update's gradient all-reduce aligns the ranks, so that is the
step's wall time); the first step (warm-up) is dropped. Prints one JSON line:
``sequences_per_s`` for each, and ``ratio`` = ranks / single (> 1: the ranks are faster).
With no ``--model``, a tiny random model is built in a temporary directory.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def build_model(folder: Path) -> Path:
    from rftgym.runner.tiny_model import build_char_tokenizer, build_tiny_model

    tok = build_char_tokenizer()
    build_tiny_model(tok).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def run(model: Path, out: Path, prompts: int, steps: int, nproc: int, max_new_tokens: int, threads: int = 0) -> dict:
    """One training run; returns its per-step throughput figures (warm-up step dropped)."""
    train = ["-m", "rftgym", "train", "--device", "cpu", "--model", str(model), "--reward", "exact_match",
             "--max-steps", str(steps), "--save-every", "0", "--output-dir", str(out), "--overwrite",
             "--set", f"rollout.prompts_per_step={prompts}", "--set", f"rollout.max_new_tokens={max_new_tokens}",
             "--set", "eval.every=0", "--set", "logging.progress=false", "--set", f"train.threads={threads}"]
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
                if nproc > 1 else [sys.executable])
    proc = subprocess.run(launcher + train, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"run with {nproc} process(es) failed:\n{proc.stderr[-3000:]}")
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    lines = [x for x in lines if "time/update" in x][1:]
    if not lines:
        raise SystemExit("need at least 2 steps (the first is warm-up)")
    step_s = [x["time/sample"] + x.get("time/prepare", 0.0) + x["time/score"] + x["time/update"] for x in lines]
    seqs = prompts * _group_size(out)
    return {"processes": nproc, "threads": threads or "auto", "step_s_median": statistics.median(step_s),
            "sequences_per_s": seqs / statistics.median(step_s),
            "tokens_per_s": statistics.median(x["completion/tokens"] * nproc / s for x, s in zip(lines, step_s))}


def _group_size(out: Path) -> int:
    import yaml

    config = yaml.safe_load((out / "config.yaml").read_text())
    return int(config["algo"]["group_size"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a saved causal LM (default: a tiny random one)")
    parser.add_argument("--prompts", type=int, default=8, help="global prompts per step")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--single-threads", type=int, default=0,
                        help="torch threads of the single process (0: all cores; 1 shows the threading overhead)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build_model(Path(tmp) / "model")
        single = run(model, Path(tmp) / "single", args.prompts, args.steps, 1, args.max_new_tokens,
                     args.single_threads)
        ranks = run(model, Path(tmp) / "ranks", args.prompts, args.steps, args.nproc, args.max_new_tokens)
    print(json.dumps({"benchmark": "ddp_throughput", "cpus": len(os.sched_getaffinity(0)),
                      "global_prompts_per_step": args.prompts, "steps_timed": args.steps - 1,
                      "single": single, "ranks": ranks,
                      "ratio": ranks["sequences_per_s"] / single["sequences_per_s"]}))


if __name__ == "__main__":
    main()
