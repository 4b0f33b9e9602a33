"""How many torch threads should ``rftgym train`` use? Seconds per training step, per setting.

Runs ``python -m rftgym train`` in fresh processes, interleaved (setting A, B, A, B, …) so load
drift hits every setting alike, on a quiet machine and with ``--load N`` busy-loop processes
competing for the cores (what a shared machine looks like). Two model sizes: the embedded ~1M
model and a random ~25M one (same tokenizer), since small matrices parallelise poorly.

    python benchmarks/threads.py                       # as the machine is, then with 2 busy processes
    python benchmarks/threads.py --quick               # 1 repetition, 4 steps (smoke test)

Prints progress on stderr and one JSON line last on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _medium_model(root: Path) -> str:
    """A random ~25M-parameter Llama with the embedded character tokenizer, saved under ``root``."""
    from rftgym.runner.tiny_model import build_char_tokenizer, build_tiny_model, count_parameters

    tok = build_char_tokenizer()
    model = build_tiny_model(tok, hidden_size=512, num_hidden_layers=8, num_attention_heads=8,
                             num_key_value_heads=4, intermediate_size=2048)
    out = root / "medium"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    print(f"medium model: {count_parameters(model) / 1e6:.1f}M parameters", file=sys.stderr)
    return str(out)


def _run(model: str, threads: int, steps: int, out: Path) -> float:
    cmd = [sys.executable, "-m", "rftgym", "train", "--model", model, "--max-steps", str(steps),
           "--output-dir", str(out), "--overwrite", "--quiet", "--save-every", "0",
           "--set", f"train.threads={threads}", "--set", "eval.every=0", "--set", "save_last=false"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"run failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    # The training loop's own time (sampling, scoring, updates), without process start-up.
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return sum(v for r in lines for k, v in r.items() if k.startswith("time/"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--loads", default="0,2", help="busy-loop processes to run beside, per phase")
    parser.add_argument("--models", default="embedded,medium")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.reps, args.loads, args.models = 4, 1, "0", "embedded"
    threads = [int(t) for t in args.threads.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = {"embedded": "embedded"}
        if "medium" in args.models:
            models["medium"] = _medium_model(root)
        for load in [int(x) for x in args.loads.split(",")]:
            busy = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(load)]
            try:
                for name in args.models.split(","):
                    times: dict[int, list[float]] = {t: [] for t in threads}
                    for rep in range(args.reps):
                        order = threads if rep % 2 == 0 else threads[::-1]
                        for t in order:
                            times[t].append(_run(models[name], t, args.steps, root / "run"))
                    for t in threads:
                        row = {"model": name, "busy_processes": load, "threads": t,
                               "median_s_per_step": round(statistics.median(times[t]) / args.steps, 3),
                               "runs_s_per_step": [round(x / args.steps, 3) for x in times[t]],
                               "load_average": round(os.getloadavg()[0], 2)}
                        print(json.dumps(row), file=sys.stderr)
                        results.append(row)
            finally:
                for p in busy:
                    p.kill()
                    p.wait()
    print(json.dumps({"steps": args.steps, "reps": args.reps, "cores": os.cpu_count(), "results": results}))


if __name__ == "__main__":
    main()
