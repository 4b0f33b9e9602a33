"""Smoke tests: each benchmark runs in its ``--quick`` configuration and prints its JSON line.

They assert only that the scripts run and report the expected keys, not any speed. Without
TRL installed (as in CI) the comparison must say so in the JSON while the rftgym side still runs.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _run(script: str, *args: str, timeout: float = 600) -> dict:
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_grpo_vs_trl_quick():
    report = _run("grpo_vs_trl.py", "--quick")
    for key in ("speedup", "rftgym_s_per_step", "trl_s_per_step", "rss_ratio", "config", "trl_available"):
        assert key in report
    assert report["rftgym_s_per_step"] > 0
    assert report["config"]["group_size"] == 8
    try:
        import trl  # noqa: F401
    except Exception:
        assert report["trl_available"] is False and report["speedup"] is None
        assert "trl" in report["trl_unavailable_reason"]
    else:
        assert report["trl_available"] is True and report["speedup"] > 0 and report["rss_ratio"] > 0


@pytest.mark.slow
def test_generation_quick():
    report = _run("generation.py", "--quick")
    assert report["cells"] and report["speedup_median"] > 0
    cell = report["cells"][0]
    for key in ("rftgym_tokens_per_s", "hf_tokens_per_s", "prompts", "group_size", "max_new_tokens"):
        assert key in cell


@pytest.mark.slow
def test_training_forward_quick():
    report = _run("training_forward.py", "--quick")
    (cell,) = report["cells"]
    for key in ("padded_ms", "kv_cache_ms", "default_ms", "default_vs_padded", "packed_batches"):
        assert key in cell
    assert cell["padded_ms"] > 0 and cell["default_ms"] > 0
