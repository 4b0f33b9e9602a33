"""Exact resume after ``kill -9``, signals, torn checkpoints and keep-last-K, on real subprocesses.

Every run here is ``python -m rftgym train`` on a tiny random model (CPU, one torch thread,
``--seed 1``). The reference is one uninterrupted run; a run killed with SIGKILL after its
second checkpoint and resumed, and a run stopped with SIGTERM / Ctrl-C (SIGINT to the whole
process group, like a terminal sends it) and resumed, must end with bit-identical weights,
every train/eval step logged exactly once and the same sample lines.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from runner_fixtures import build_tiny_model_dir, read_jsonl, run_config, write_prompt_file

STEPS = 6
# Metrics that depend on wall-clock time, not on the computation.
TIMING = ("time/", "tokens_per_s", "memory/")  # measurements of the machine, not of the run


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    return build_tiny_model_dir(root / "model"), write_prompt_file(root / "prompts.jsonl")


def _config_file(assets, root: Path, name: str, **overrides) -> tuple[Path, Path]:
    model_dir, data = assets
    out = root / name
    config = run_config(model_dir, data, out, **{"train.max_steps": STEPS, "save_every": 1, "seed": 1,
                                                 "train.threads": 1, "keep_checkpoints": 2, **overrides})
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, out


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PYTHONDONTWRITEBYTECODE": "1", "RFTGYM_LOAD_PLUGINS": "", "OMP_NUM_THREADS": "1"})
    env.pop("RFTGYM_DEBUG", None)
    return env


def _start(config: Path, *extra: str) -> subprocess.Popen:
    # A new session: the test can signal the whole process group (checker workers included).
    return subprocess.Popen([sys.executable, "-m", "rftgym", "train", "--config", str(config), "--quiet", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        _reap_group(proc)
    return proc.returncode, out, err


def _reap_group(proc: subprocess.Popen) -> None:
    """Kill whatever the run left in its own process group (it started it: start_new_session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"run exited ({proc.returncode}) before {path} appeared:\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path} did not appear within {timeout}s")
        time.sleep(0.01)


def _messages(stderr: str) -> list[str]:
    """stderr without blank lines and the progress bars of transformers/datasets."""
    return [line for line in stderr.splitlines() if line.strip() and "%|" not in line]


def _read_complete(path: Path) -> list[dict]:
    text = path.read_text()
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "final" / "model.safetensors"))


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not differ, f"weights differ from the uninterrupted run: {differ}"


def _lines(run: Path) -> tuple[list[dict], list[dict]]:
    rows = read_jsonl(run / "metrics.jsonl")
    train = [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in rows if "eval/reward" not in r]
    evals = [r for r in rows if "eval/reward" in r]
    return train, evals


def _assert_same_logs(reference: Path, run: Path) -> None:
    ref_train, ref_eval = _lines(reference)
    train, evals = _lines(run)
    assert [r["step"] for r in train] == list(range(1, STEPS + 1)), [r["step"] for r in train]
    assert [r["step"] for r in evals] == [r["step"] for r in ref_eval] == [0, 2, 4, 6]
    assert train == ref_train  # rewards, losses, grad norms: the same computation, step by step
    assert evals == ref_eval
    assert read_jsonl(run / "samples.jsonl") == read_jsonl(reference / "samples.jsonl")


@pytest.fixture(scope="module")
def reference(assets, tmp_path_factory):
    """The uninterrupted run every interrupted run is compared with."""
    root = tmp_path_factory.mktemp("reference")
    config, out = _config_file(assets, root, "full")
    code, stdout, err = _finish(_start(config))
    assert code == 0, err
    assert json.loads(stdout.strip().splitlines()[-1])["step"] == STEPS
    return out


def test_uninterrupted_run_keeps_the_last_k_checkpoints(reference):
    assert sorted(p.name for p in (reference / "checkpoints").iterdir()) == ["step-5", "step-6"]
    train, _ = _lines(reference)
    assert len({r["loss/total"] for r in train}) > 1  # the reward has variance: the weights move


def test_kill_9_after_second_checkpoint_then_resume_is_bit_identical(assets, reference, tmp_path):
    config, out = _config_file(assets, tmp_path, "killed")
    proc = _start(config)
    try:
        _wait_for(out / "checkpoints" / "step-2" / "trainer_state.json", proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        _reap_group(proc)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "final").exists(), "the run finished before it was killed; the test proves nothing"
    done = sorted(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("step-*")
                  if (p / "trainer_state.json").exists())
    assert done and 2 <= done[-1] < STEPS

    # Torn leftovers a crash can leave (or a disk that filled up): a temporary directory and a
    # newer step directory without its state file. Both must be ignored.
    torn = out / "checkpoints" / f"step-{done[-1] + 1}"
    torn.mkdir(exist_ok=True)
    (torn / "policy.safetensors").write_bytes(b"half a file")
    (out / "checkpoints" / f".tmp-step-{done[-1] + 2}").mkdir(exist_ok=True)

    code, stdout, err = _finish(_start(config, "--resume"))
    assert code == 0, err
    assert json.loads(stdout.strip().splitlines()[-1])["step"] == STEPS
    _assert_same_weights(reference, out)
    _assert_same_logs(reference, out)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-5", "step-6"]


@pytest.mark.parametrize("how", ["sigterm", pytest.param("ctrl-c", marks=pytest.mark.slow)])
def test_signal_writes_a_checkpoint_and_resume_completes(assets, reference, tmp_path, how):
    # save_every=0: the only checkpoint before the end is the one the signal asks for.
    config, out = _config_file(assets, tmp_path, how, save_every=0)
    proc = _start(config)
    try:
        _wait_for(out / "metrics.jsonl", proc)
        deadline = time.monotonic() + 180
        while not any("eval/reward" not in r for r in _read_complete(out / "metrics.jsonl")):
            assert proc.poll() is None and time.monotonic() < deadline, "no train step was logged"
            time.sleep(0.01)  # wait until step 1 is logged: training is under way
        if how == "sigterm":
            os.kill(proc.pid, signal.SIGTERM)
        else:  # a terminal's Ctrl-C reaches every process of the foreground group
            os.killpg(proc.pid, signal.SIGINT)
        code, _, err = _finish(proc, timeout=120)
    finally:
        _reap_group(proc)
    assert code == 130, err
    lines = _messages(err)
    assert len(lines) == 1, err  # no tracebacks from the checker workers, no noise
    assert "received; checkpoint written at step" in lines[0] and "--resume" in lines[0], lines[0]
    step = int(lines[0].split("checkpoint written at step ")[1].split(".")[0])
    assert step >= 1 and step < STEPS
    assert (out / "checkpoints" / f"step-{step}" / "trainer_state.json").is_file()
    assert not (out / "final").exists()

    code, stdout, err = _finish(_start(config, "--resume"))
    assert code == 0, err
    _assert_same_weights(reference, out)
    _assert_same_logs(reference, out)
