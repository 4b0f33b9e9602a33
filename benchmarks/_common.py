"""Shared pieces of the benchmarks: the workload, the tiny model, the prompt file, child processes.

Each framework runs in a child process of its own (``python <script> --child <json>``), so their
imports, thread pools and peak RSS never mix; the parent interleaves the children A/B/A/B and
reads one JSON line back from each.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

# The last line a child prints starts with this marker, followed by its JSON result.
RESULT_MARK = "BENCH_RESULT "


@dataclass
class Workload:
    """One GRPO configuration, given identically to both frameworks."""

    prompts_per_step: int = 8
    group_size: int = 8
    max_new_tokens: int = 8
    temperature: float = 1.0
    beta: float = 0.0
    lr: float = 1e-4
    steps: int = 30
    """Optimizer steps per run, warm-up included."""
    warmup: int = 5
    """Steps excluded from the timing (allocator, first-call dispatch, lazy imports)."""
    threads: int = 1
    seed: int = 0
    max_grad_norm: float = 1.0
    clip: float = 0.2
    # rftgym's seq-mean-token-mean is TRL's loss_type="grpo": (1/G) Σ_i (1/|o_i|) Σ_t
    loss_agg: str = "seq-mean-token-mean"
    eval_every: int = 0
    """Time-to-accuracy only: greedy held-out accuracy every N steps (its time is excluded)."""
    eval_prompts: int = 200
    target_accuracy: float = 0.0
    """Time-to-accuracy only: stop once the held-out accuracy reaches this (0: never)."""
    extra: dict[str, Any] = field(default_factory=dict)


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def trl_available() -> str | None:
    """None when TRL can be imported, else the reason (printed in the JSON, never a silent skip)."""
    try:
        import trl  # noqa: F401
    except Exception as exc:  # ImportError, or a TRL that fails against this transformers
        return f"trl is not importable ({type(exc).__name__}: {exc}); pip install trl to compare"
    return None


# -- the model and the prompts -----------------------------------------------------------------

def build_model_dir(path: Path, kind: str = "warm", seed: int = 0, log: Callable[[str], None] = print) -> dict:
    """Save a ~1M-parameter Llama + char tokenizer to ``path``; returns a description.

    ``warm``: the embedded model when it is already built, else the same recipe's supervised
    warm-up on the arithmetic train split (answers end with EOS, greedy accuracy about 50%), so
    completions are short and stop early as in real RL fine-tuning. ``random``: fresh weights,
    which rarely emit EOS (every row runs to ``max_new_tokens``); used by ``--quick``.
    """
    from rftgym.runner.tiny_model import (EMBEDDED_DIR, REQUIRED_FILES, build_char_tokenizer, build_tiny_model,
                                          pretrain_arithmetic)

    path.mkdir(parents=True, exist_ok=True)
    if kind == "warm" and all((EMBEDDED_DIR / f).is_file() for f in REQUIRED_FILES):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(EMBEDDED_DIR)
        tokenizer = AutoTokenizer.from_pretrained(EMBEDDED_DIR)
        info = {"model": "embedded (assets/tiny-arith)"}
    else:
        tokenizer = build_char_tokenizer()
        model = build_tiny_model(tokenizer, seed=seed)
        info = {"model": f"tiny llama, seed {seed}, {kind}"}
        if kind == "warm":
            t0 = time.perf_counter()
            result = pretrain_arithmetic(model, tokenizer, band=(0.45, 0.58), eval_prompts=300, seed=seed, log=None)
            info.update(warmup_steps=result["steps"], warmup_s=round(time.perf_counter() - t0, 1))
            log(f"bench: warmed the tiny model in {info['warmup_s']} s ({result['steps']} supervised steps)")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    info["parameters"] = sum(p.numel() for p in model.parameters())
    return info


def write_prompt_file(path: Path, n: int, seed: int = 0, split: str = "train") -> Path:
    """``n`` arithmetic prompts ``{"prompt": "12+34=", "answer": "46"}`` as jsonl (fixed order)."""
    import numpy as np

    from rftgym.envs.tasks.arithmetic import ArithmeticTask

    task, rng = ArithmeticTask(digits=2, split=split), np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(n):
            row = task.sample(rng)
            fh.write(json.dumps({"prompt": row["prompt"], "answer": row["answer"]}) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def heldout_rows(n: int) -> list[dict]:
    """The first ``n`` test-split problems (never in the training prompts)."""
    from rftgym.envs.tasks.arithmetic import ArithmeticTask

    return ArithmeticTask(digits=2, split="test").rows(n)


# -- per-step timing shared by both children ----------------------------------------------------

class StepClock:
    """Wall-clock stamps at the end of each optimizer step, minus time spent in benchmark evals."""

    def __init__(self, work: Workload, model_fn: Callable[[], Any], tokenizer: Any) -> None:
        self.work, self.model_fn, self.tokenizer = work, model_fn, tokenizer
        self.stamps: list[float] = []
        self.cpu_stamps: list[float] = []  # process CPU time: steadier than wall time on a loaded machine
        self.excluded = 0.0
        self.cpu_excluded = 0.0
        self.evals: list[dict] = []
        self.reached: float | None = None
        self._rows = heldout_rows(work.eval_prompts) if work.eval_every else []

    def tick(self) -> bool:
        """Record a step end; run the held-out eval when due. True when the target is reached."""
        now, cpu_now = time.perf_counter(), time.process_time()
        self.stamps.append(now - self.excluded)
        self.cpu_stamps.append(cpu_now - self.cpu_excluded)
        step = len(self.stamps)
        if not self.work.eval_every or step % self.work.eval_every:
            return False
        from rftgym.runner.tiny_model import greedy_accuracy

        model = self.model_fn()
        was_training = model.training
        acc = greedy_accuracy(model, self.tokenizer, self._rows, max_new_tokens=self.work.max_new_tokens)
        model.train(was_training)
        self.excluded += time.perf_counter() - now
        self.cpu_excluded += time.process_time() - cpu_now
        elapsed = self.stamps[-1] - self.stamps[0] if self.stamps else 0.0
        self.evals.append({"step": step, "accuracy": acc, "train_s": elapsed})
        if self.work.target_accuracy and acc >= self.work.target_accuracy and self.reached is None:
            self.reached = self.stamps[-1] - self.start
            return True
        return False

    def begin(self) -> None:
        self.start = time.perf_counter()

    def result(self) -> dict:
        """s/step over the steps after the warm-up, plus the time-to-target bookkeeping."""
        w = min(self.work.warmup, max(0, len(self.stamps) - 2))
        timed = self.stamps[w:]
        cpu = self.cpu_stamps[w:]
        n = len(timed) - 1
        per_step = (timed[-1] - timed[0]) / n if n > 0 else float("nan")
        cpu_per_step = (cpu[-1] - cpu[0]) / n if n > 0 else float("nan")
        return {"s_per_step": per_step, "cpu_s_per_step": cpu_per_step, "steps": len(self.stamps), "timed_steps": len(timed) - 1,
                "peak_rss_mb": peak_rss_mb(), "evals": self.evals, "time_to_target_s": self.reached}


def emit(result: dict) -> None:
    """The child's last stdout line."""
    print(RESULT_MARK + json.dumps(result), flush=True)


# -- the parent's side ------------------------------------------------------------------------

def run_child(script: Path, payload: dict, timeout: float) -> dict:
    """Run ``script --child payload`` in a fresh interpreter; its parsed result or an ``error``."""
    env = {**os.environ, "OMP_NUM_THREADS": str(payload["work"]["threads"]),
           "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error",
           "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_DISABLED": "true"}
    cmd = [sys.executable, str(script), "--child", json.dumps(payload)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
    return {"error": f"exit {proc.returncode}: " + "\n".join(tail)}


def median(values: list[float]) -> float:
    values = sorted(v for v in values if v == v)
    if not values:
        return float("nan")
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def load_average() -> str:
    """``uptime``'s load averages: the machine is shared, so report how busy it was."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def workload_dict(work: Workload) -> dict:
    return asdict(work)
