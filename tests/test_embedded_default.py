"""The main job end to end: RL on the embedded model visibly lifts held-out accuracy."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _eval_accuracy(run_dir) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["eval/accuracy"]) for r in rows if "eval/accuracy" in r]


@pytest.mark.slow
@pytest.mark.parametrize("algo, steps, min_gain", [("grpo", 50, 0.25), ("ppo", 64, 0.15)])
def test_rl_raises_heldout_accuracy_on_the_embedded_task(tmp_path, algo, steps, min_gain):
    out = tmp_path / algo
    proc = subprocess.run([sys.executable, "-m", "rftgym", "train", "--algo", algo, "--max-steps", str(steps),
                           "--output-dir", str(out), "--quiet", "--set", f"eval.every={steps}"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    evals = _eval_accuracy(out)
    assert evals[0][0] == 0 and evals[-1][0] == steps
    start, end = evals[0][1], evals[-1][1]
    assert 0.3 <= start <= 0.7, f"the shipped base model should start mid-way, got {start}"
    assert end >= start + min_gain, f"{algo}: held-out accuracy {start:.3f} -> {end:.3f}"
