"""Run outputs: ``metrics.jsonl``, ``samples.jsonl``, a progress bar, optional TensorBoard / W&B.

``metrics.jsonl`` holds two kinds of line, written by rank 0 only: one training line per
optimizer step (``step`` = updates completed) and evaluation lines (``eval/accuracy``,
``eval/reward``; ``step`` = updates completed before the evaluation).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

METRICS = "metrics.jsonl"
SAMPLES = "samples.jsonl"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def truncate_jsonl(path: Path, max_step: int) -> int:
    """Keep lines whose ``step`` ≤ ``max_step`` (resume: every step appears exactly once). Returns lines dropped."""
    if not path.exists():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            step = json.loads(line).get("step", 0)
        except json.JSONDecodeError:  # a half-written last line after kill -9
            dropped += 1
            continue
        if step <= max_step:
            kept.append(line)
        else:
            dropped += 1
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    tmp.replace(path)
    return dropped


class RunLogger:
    """Writes the run's metric and sample lines and drives the progress bar (rank 0 only)."""

    def __init__(self, output_dir: Path, enabled: bool, total_steps: int, start_step: int = 0,
                 progress: bool = True, tensorboard: bool = False, wandb: bool = False,
                 wandb_project: str = "rftgym", config: dict | None = None, desc: str = "rftgym",
                 shown: tuple[str, str] = ("reward", "reward/total/mean"), samples: bool = True) -> None:
        self.enabled = enabled
        # What the bar is called and which training metric it shows (``train-rm``: its loss).
        self._desc, self._shown = desc, shown
        self.output_dir = Path(output_dir)
        self._metrics = self._samples = None
        self._bar = self._tb = self._wandb = None
        self._last_eval: dict[str, float] = {}
        if not enabled:
            return
        self._metrics = open(self.output_dir / METRICS, "a", encoding="utf-8")
        if samples:
            self._samples = open(self.output_dir / SAMPLES, "a", encoding="utf-8")
        if progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, desc=desc, unit="step",
                             dynamic_ncols=True, file=sys.stderr)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                print("rftgym: warning: tensorboard is not installed (pip install 'rftgym[tensorboard]'); "
                      "continuing without it", file=sys.stderr)
            else:
                self._tb = SummaryWriter(str(self.output_dir / "tensorboard"))
        if wandb:
            try:
                import wandb as wandb_lib
            except ImportError:
                print("rftgym: warning: wandb is not installed (pip install 'rftgym[wandb]'); continuing without it",
                      file=sys.stderr)
            else:
                self._wandb = wandb_lib.init(project=wandb_project, config=config, dir=str(self.output_dir))

    def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps({k: _clean(v) for k, v in record.items()})
        self._metrics.write(line + "\n")
        self._metrics.flush()
        step = record["step"]
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                if self._tb is not None:
                    self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in record.items() if k != "step"}, step=step)

    def log_train(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._write({"step": step, **metrics})
        if self._bar is not None:
            postfix = {self._shown[0]: f"{metrics.get(self._shown[1], float('nan')):.3f}"}
            if "eval/accuracy" in self._last_eval:
                postfix["acc"] = f"{self._last_eval['eval/accuracy']:.3f}"
            self._bar.set_postfix(postfix, refresh=False)
            self._bar.update(step - self._bar.n)

    def log_eval(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._last_eval = metrics
        self._write({"step": step, **metrics})
        if self._bar is not None:
            parts = [f"{key[5:]} {metrics[key]:.3f}" for key in ("eval/reward", "eval/accuracy", "eval/margin")
                     if isinstance(metrics.get(key), (int, float))]
            text = f"eval @ step {step}: " + ", ".join(parts)
            self._bar.write(text, file=sys.stderr)

    def log_samples(self, step: int, rows: list[dict[str, Any]]) -> None:
        if self._samples is None:
            return
        for row in rows:
            self._samples.write(json.dumps({"step": step, **row}, default=str) + "\n")
        self._samples.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        for handle in (self._metrics, self._samples):
            if handle is not None:
                handle.close()
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
