"""The bad-input matrix: every user-facing input with bad values, through ``rftgym train``.

Each case asserts what the user sees (one ``rftgym: error:`` line naming the culprit, or an
isolated warning when the run can go on), the exit code, and that no file that existed before
was changed (hashes of the model, the data and the output directory before/after). Most cases
call ``rftgym.cli.main`` in-process; runs that must train use a tiny random model and 1-3 steps.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import signal
import textwrap
from pathlib import Path

import pytest
import torch

from rftgym.cli import main

from runner_fixtures import build_tiny_model_dir, read_jsonl, write_prompt_file


PROGRESS = re.compile(r"%\||\[\d\d:\d\d")  # tqdm bars of transformers/datasets, not messages

# -- helpers ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-input")
    return build_tiny_model_dir(root / "model"), write_prompt_file(root / "prompts.jsonl")


def _hashes(*roots: Path) -> dict[str, str]:
    out = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def _argv(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--model", str(model), "--env", "rftgym/PromptDataset-v0",
            "--set", f"env.kwargs.data_files={data}", "--set", "env.kwargs.prompt_column=question",
            "--set", "env.eval_kwargs={}", "--reward", "exact_match", "--max-steps", "1", "--quiet",
            "--set", "rollout.prompts_per_step=2", "--set", "rollout.max_new_tokens=4", "--set", "eval.every=0",
            "--output-dir", str(out), *extra]


def _run(argv: list[str], capsys) -> tuple[int, str, list[str]]:
    """``rftgym ARGV`` in-process: (exit code, stdout, stderr lines without progress bars)."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse usage errors, and the signal stop
        code = exc.code
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip() and not PROGRESS.search(line)]
    return code, captured.out, lines


def _one_error(lines: list[str], *culprits: str) -> str:
    assert len(lines) == 1, "expected one line on stderr:\n" + "\n".join(lines)
    line = lines[0]
    assert line.startswith("rftgym: error:"), line
    for culprit in culprits:
        assert culprit in line, f"{culprit!r} not named in: {line}"
    return line


def _plugin(tmp_path: Path, code: str, name: str = "my_plugin.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return path


# -- config ---------------------------------------------------------------------------------------

CONFIG_CASES = {
    "unknown key": (["--set", "train.lrr=1e-3"], 2, ("'train.lrr'", "'train.lr'")),
    "unknown section": (["--set", "trian.lr=1e-3"], 2, ("'trian'", "'train'")),
    "wrong type": (["--set", "train.max_steps=many"], 2, ("'train.max_steps'", "'many'", "int")),
    "wrong type bool": (["--set", "model.trust_remote_code=maybe"], 2, ("'model.trust_remote_code'",)),
    "out of range": (["--set", "rollout.temperature=0"], 2, ("'rollout.temperature'", "> 0")),
    "nan lr": (["--set", "train.lr=.nan"], 2, ("'train.lr'",)),
    "negative steps": (["--max-steps", "-3"], 2, ("'train.max_steps'",)),
    "zero group": (["--set", "algo.group_size=0"], 2, ("'algo.group_size'",)),
    "unknown literal": (["--set", "rollout.reward_errors=ignore"], 2, ("'rollout.reward_errors'", "'warn'")),
    "bad reward timeout": (["--set", "rewards.0.timeout=-1"], 2, ("'rewards[0].timeout'",)),
    "unknown algorithm": (["--algo", "grpoo"], 2, ("'grpoo'", "'grpo'")),
    "unknown reward": (["--reward", "exact_matchh"], 2, ("'exact_matchh'", "'exact_match'")),
    "unknown reward option": (["--set", "rewards.0.options.nope=1"], 2, ("'nope'",)),
    "missing reward option": (["--reward", "length"], 2, ("'length'", "'max_length'")),
    "bad reward weight": (["--reward", "exact_match:heavy"], 2, ("'exact_match:heavy'", "number")),
    "unknown env": (["--env", "rftgym/Nope-v0"], 2, ("'rftgym/Nope-v0'",)),
    "resume and overwrite": (["--resume", "--overwrite"], 2, ("overwrite", "resume")),
    "bad device": (["--device", "tpu:7"], 2, ("'tpu:7'",)),
    "unknown flag": (["--max-stepz", "3"], 2, ("--max-stepz",)),
    "flag wrong type": (["--max-steps", "three"], 2, ("--max-steps", "'three'")),
    "missing config file": (["--config", "/nonexistent/run.yaml"], 2, ("'/nonexistent/run.yaml'", "does not exist")),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_config_errors_are_one_line_and_nothing_is_written(case, assets, tmp_path, capsys):
    model, data = assets
    extra, code, culprits = CONFIG_CASES[case]
    out = tmp_path / "out"
    before = _hashes(model, data)
    got, _, lines = _run(_argv(model, data, out, *extra), capsys)
    assert got == code, lines
    _one_error(lines, *culprits)
    assert not out.exists(), "a config error must fail before anything is written"
    assert _hashes(model, data) == before


@pytest.mark.parametrize("text, culprit", [("model: [unclosed", "not valid YAML"),
                                          ("- just\n- a list\n", "mapping at the top level"),
                                          ("train:\n  lr: 1e-3\n  lr: 2e-3\n", None)])
def test_bad_config_files(assets, tmp_path, capsys, text, culprit):
    model, data = assets
    config = tmp_path / "run.yaml"
    config.write_text(text)
    got, out, lines = _run(["train", "--config", str(config), "--dry-run"], capsys)
    if culprit is None:  # a duplicated key: YAML keeps the last one; the run can go on
        assert got == 0 and "lr: 0.002" in out, lines
        return
    assert got == 2
    _one_error(lines, str(config), culprit)


def test_non_utf8_config_file(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_bytes(b"train:\n  lr: \xff\xfe\n")
    got, _, lines = _run(["train", "--config", str(config), "--dry-run"], capsys)
    assert got == 2
    _one_error(lines, str(config))


# -- data -----------------------------------------------------------------------------------------

def _write(path: Path, content: bytes | str) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def _rows(*rows: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


GOOD = [{"question": f"{i}+1=", "answer": str(i + 1)} for i in range(8)]

DATA_CASES = {
    "missing file": (None, ("nope.jsonl", "does not exist")),
    "empty file": (b"", ("data.jsonl", "empty")),
    "missing prompt column": (_rows(*({"prompt": r["question"], "answer": r["answer"]} for r in GOOD)),
                              ("'question'",)),
    "null prompts": (_rows(*({"question": None, "answer": "1"} for _ in range(8))), ("'question'",)),
    "non-utf8": (b'{"question": "1+1=", "answer": "2"}\n{"question": "\xff\xfe", "answer": "1"}\n',
                 ("data.jsonl", "'question'", "UTF-8")),
    "not json": (b"question,answer\n1+1=,2\n", ("data.jsonl", "line 1 is not valid JSON")),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_data_is_one_clear_error(case, assets, tmp_path, capsys):
    model, _ = assets
    content, culprits = DATA_CASES[case]
    data = tmp_path / ("nope.jsonl" if content is None else "data.jsonl")
    if content is not None:
        _write(data, content)
    out = tmp_path / "out"
    before = _hashes(model, data)
    got, _, lines = _run(_argv(model, data, out), capsys)
    assert got in (1, 2), lines
    line = _one_error(lines, *culprits)
    assert "Traceback" not in line
    assert _hashes(model, data) == before
    # A failed set-up leaves no half run behind: fixing the data and re-running just works.
    assert not (out / "metrics.jsonl").exists()
    assert not (out / "config.yaml").exists()


def test_number_prompts_are_read_as_text(assets, tmp_path, capsys):
    model, _ = assets
    data = _write(tmp_path / "data.jsonl", _rows(*({"question": 7 + i, "answer": "1"} for i in range(8))))
    got, _, lines = _run(_argv(model, data, tmp_path / "out"), capsys)
    assert got == 0, lines
    assert read_jsonl(tmp_path / "out" / "samples.jsonl")[0]["prompt"] in {str(7 + i) for i in range(8)}


def test_some_null_rows_are_an_isolated_warning(assets, tmp_path, capsys):
    model, _ = assets
    data = _write(tmp_path / "data.jsonl", _rows(*GOOD, {"question": None, "answer": "3"}))
    with pytest.warns(UserWarning, match=r"skipped 1 of 9 rows with a missing or empty prompt"):
        got, _, lines = _run(_argv(model, data, tmp_path / "out"), capsys)
    assert got == 0, lines
    assert not lines, lines


def test_huge_row_is_refused_by_name(assets, tmp_path, capsys):
    model, _ = assets
    data = _write(tmp_path / "data.jsonl", _rows({"question": "1+" * 600_000 + "1=", "answer": "1"}))
    got, _, lines = _run(_argv(model, data, tmp_path / "out"), capsys)
    assert got == 2
    _one_error(lines, "max_prompt_chars")


# -- plugins --------------------------------------------------------------------------------------

PLUGIN_CASES = {
    "import error": ("import rftgym_no_such_module\n", ("failed to import", "rftgym_no_such_module")),
    "syntax error": ("def broken(:\n", ("failed to import", "SyntaxError")),
    "hook raises": ("""
        import rftgym

        @rftgym.hookimpl
        def rftgym_register_rewards(register):
            raise RuntimeError("the plugin's own bug")
        """, ("my_plugin.py", "the plugin's own bug")),
    "duplicate name": ("""
        import rftgym

        @rftgym.hookimpl
        def rftgym_register_rewards(register):
            register("exact_match", lambda prompts, completions, **kw: [0.0] * len(completions))
        """, ("duplicate", "'exact_match'")),
    "misspelt hook": ("""
        import rftgym

        @rftgym.hookimpl
        def rftgym_register_reward(register):
            pass
        """, ("my_plugin.py", "rftgym_register_reward")),
}


@pytest.mark.parametrize("case", list(PLUGIN_CASES))
def test_bad_plugins_are_one_line_errors(case, assets, tmp_path, capsys):
    model, data = assets
    code, culprits = PLUGIN_CASES[case]
    plugin = _plugin(tmp_path, code)
    out = tmp_path / "out"
    before = _hashes(model, data, plugin)
    got, _, lines = _run(_argv(model, data, out, "--plugin", str(plugin)), capsys)
    assert got == 2
    _one_error(lines, *culprits)
    assert not out.exists()
    assert _hashes(model, data, plugin) == before


def test_missing_plugin_file_and_module(assets, tmp_path, capsys):
    model, data = assets
    got, _, lines = _run(_argv(model, data, tmp_path / "o", "--plugin", str(tmp_path / "gone.py")), capsys)
    assert got == 2
    _one_error(lines, "gone.py", "no such file")
    got, _, lines = _run(_argv(model, data, tmp_path / "o", "--plugin", "rftgym_absent_plugin_mod"), capsys)
    assert got == 2
    _one_error(lines, "rftgym_absent_plugin_mod", "PYTHONPATH")


# -- model paths ----------------------------------------------------------------------------------

def _not_a_causal_lm(path: Path, model: Path) -> Path:
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(vocab_size=64, dim=16, n_layers=1, n_heads=2, hidden_dim=32, max_position_embeddings=64)
    DistilBertForSequenceClassification(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(model).save_pretrained(path)
    return path


@pytest.mark.parametrize("case", ["missing", "empty dir", "a file", "sequence classifier", "no weights"])
def test_bad_model_paths(case, assets, tmp_path, capsys):
    model, data = assets
    target = tmp_path / "m"
    culprits = [str(target)]
    if case == "empty dir":
        target.mkdir()
    elif case == "a file":
        target.write_text("not a model")
    elif case == "sequence classifier":
        _not_a_causal_lm(target, model)
        culprits.append("not a causal language model")
    elif case == "no weights":
        import shutil

        shutil.copytree(model, target)
        for f in target.glob("*.safetensors"):
            f.unlink()
    out = tmp_path / "out"
    before = _hashes(target, data)
    got, _, lines = _run(_argv(target, data, out), capsys)
    assert got == 2, lines
    _one_error(lines, *culprits)
    assert _hashes(target, data) == before
    assert not (out / "config.yaml").exists()


# -- output dir -----------------------------------------------------------------------------------

def test_output_dir_with_another_run_is_left_alone(assets, tmp_path, capsys):
    model, data = assets
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.yaml").write_text("model:\n  name_or_path: someone-else\n")
    (out / "metrics.jsonl").write_text('{"step": 1, "loss/total": 0.5}\n')
    before = _hashes(out)
    got, _, lines = _run(_argv(model, data, out), capsys)
    assert got == 2
    _one_error(lines, str(out), "already holds a run", "--resume", "--overwrite")
    assert _hashes(out) == before


def test_output_dir_under_a_file_is_not_writable(assets, tmp_path, capsys):
    model, data = assets
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    out = blocker / "sub"
    before = _hashes(blocker, model, data)
    got, _, lines = _run(_argv(model, data, out), capsys)
    assert got == 2
    _one_error(lines, str(out), "not writable")
    assert _hashes(blocker, model, data) == before


def test_disk_full_while_checkpointing_keeps_the_last_checkpoint(assets, tmp_path, capsys, monkeypatch):
    from rftgym.runner import checkpoint

    model, data = assets
    out = tmp_path / "out"
    argv = _argv(model, data, out, "--max-steps", "3", "--save-every", "1")
    real = checkpoint.save_model
    calls = []

    def save_model(module, filename, *args, **kwargs):
        calls.append(filename)
        if len(calls) == 2:  # the second checkpoint: the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", filename)
        return real(module, filename, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_model", save_model)
    got, _, lines = _run(argv, capsys)
    assert got in (1, 2)
    line = _one_error(lines, "No space left on device")
    assert "checkpoint" in line, line
    step1 = out / "checkpoints" / "step-1"
    assert (step1 / "trainer_state.json").is_file()
    before = _hashes(step1)
    monkeypatch.setattr(checkpoint, "save_model", real)

    # Space freed: --resume continues from the last complete checkpoint; step 1 stays intact
    # until keep-last-K retires it.
    got, _, lines = _run(argv + ["--resume"], capsys)
    assert got == 0, lines
    assert _hashes(step1) == before or not step1.exists()
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]


def test_disk_full_while_logging_is_one_line(assets, tmp_path, capsys, monkeypatch):
    from rftgym.runner import run_log

    model, data = assets

    def write(self, record):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_log.RunLogger, "_write", write)
    got, _, lines = _run(_argv(model, data, tmp_path / "out"), capsys)
    assert got in (1, 2)
    _one_error(lines, "No space left on device")


# -- rewards that misbehave in a real run -----------------------------------------------------------

REWARDS_PLUGIN = """
    import time

    import rftgym

    def t_raises(prompts, completions, **kw):
        raise ValueError("broken reward")

    def t_hangs(prompts, completions, **kw):
        time.sleep(20)
        return [0.0] * len(completions)

    def t_short(prompts, completions, **kw):
        return [1.0]

    def t_nan(prompts, completions, **kw):
        return [float("nan")] + [0.0] * (len(completions) - 1)

    for fn in (t_raises, t_hangs, t_short, t_nan):
        rftgym.register_reward(fn.__name__, fn)
"""

REWARD_CASES = {
    "t_raises": "raised ValueError: broken reward",
    "t_hangs": "timed out after 0.3s",
    "t_short": "returned 1 values for 8 completions",
    "t_nan": "returned NaN/inf for 1 of 8 samples",
}


@pytest.mark.parametrize("mode", ["raise", "warn"])
@pytest.mark.parametrize("reward", list(REWARD_CASES))
def test_reward_faults_in_a_real_run(reward, mode, assets, tmp_path, capsys, caplog):
    model, data = assets
    plugin = _plugin(tmp_path, REWARDS_PLUGIN, "bad_rewards.py")
    out = tmp_path / "out"
    argv = _argv(model, data, out, "--plugin", str(plugin), "--reward", reward,
                 "--set", f"rollout.reward_errors={mode}", "--set", "rewards.1.timeout=0.3",
                 "--set", "rollout.prompts_per_step=2", "--set", "algo.group_size=4")
    with caplog.at_level(logging.WARNING, logger="rftgym.rewards"):
        got, _, lines = _run(argv, capsys)
    if mode == "raise":
        assert got == 2, lines
        _one_error(lines, f"reward {reward!r}", REWARD_CASES[reward], "reward_errors='warn'")
        assert not (out / "final").exists()
        return
    assert got == 0, lines
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings and all(REWARD_CASES[reward] in w and "fallback" in w for w in warnings), warnings
    (row,) = read_jsonl(out / "metrics.jsonl")
    faults = 1 if reward == "t_nan" else 8
    assert row[f"reward/{reward}/faults"] == faults  # counted, never a silent zero
    assert (out / "final" / "config.json").is_file()


def test_math_worker_killed_mid_check_is_replaced_and_rescored(monkeypatch, caplog):
    from rftgym.rewards.math import pool as math_pool
    from rftgym.rewards.math.check import CheckOptions

    killed = []
    real_send = math_pool._Worker.send

    def send(self, obj):
        first = obj is not None and not killed
        if first:  # stopped first, so it cannot answer before it dies
            os.kill(self.process.pid, signal.SIGSTOP)
        real_send(self, obj)
        if first:  # the first check: the worker dies while on it
            self.process.kill()
            self.process.wait()
            killed.append(self.process.pid)

    monkeypatch.setattr(math_pool._Worker, "send", send)
    pool = math_pool.CheckerPool(workers=1, timeout=60)
    try:
        with caplog.at_level(logging.WARNING):
            jobs = [("\\frac{1}{2}", "0.5", CheckOptions()), ("x^2-1", "(x-1)(x+1)", CheckOptions()),
                    ("3", "4", CheckOptions())]
            results = pool.run(jobs)
        assert killed
        assert [r[0] for r in results] == [True, True, False], results  # re-scored, not zeroed
        assert pool.stats["crashes"] == 1 and pool.stats["restarts"] >= 1, pool.stats
        assert any("worker" in r.getMessage() for r in caplog.records)
        alive = [w.process for w in pool._all]
        assert alive and all(p.poll() is None for p in alive) and killed[0] not in [p.pid for p in alive]
    finally:
        pool.close()


# -- non-finite losses -------------------------------------------------------------------------------

NAN_ALGO_PLUGIN = """
    import rftgym
    from rftgym.algos.grpo import GRPO

    class NanLoss(GRPO):
        def loss(self, mb, logp, entropy=None, values=None):
            loss, metrics = super().loss(mb, logp, entropy=entropy, values=values)
            return loss * float("nan"), metrics

    rftgym.register_algorithm("t_nan_loss", NanLoss)
"""


def test_non_finite_loss_skips_updates_then_stops(assets, tmp_path, capsys):
    from safetensors.torch import load_model

    model, data = assets
    plugin = _plugin(tmp_path, NAN_ALGO_PLUGIN, "nan_algo.py")
    out = tmp_path / "out"
    argv = _argv(model, data, out, "--plugin", str(plugin), "--algo", "t_nan_loss", "--max-steps", "5",
                 "--save-every", "1", "--set", "train.max_nonfinite_steps=2")
    got, _, lines = _run(argv, capsys)
    assert got == 2, lines
    warnings = [line for line in lines if "warning" in line]
    assert len(warnings) == 2, lines
    for step, warning in enumerate(warnings, 1):
        assert f"step {step}: non-finite" in warning and "loss/total" in warning and "update skipped" in warning
    errors = [line for line in lines if line not in warnings]
    _one_error(errors, "step 2", "2 consecutive non-finite updates", "loss/total", "train.lr")
    rows = read_jsonl(out / "metrics.jsonl")
    assert [(r["step"], r["update/skipped"]) for r in rows] == [(1, 1)]
    from transformers import AutoModelForCausalLM

    initial = AutoModelForCausalLM.from_pretrained(model).state_dict()
    restored = AutoModelForCausalLM.from_pretrained(model)
    load_model(restored, str(out / "checkpoints" / "step-1" / "policy.safetensors"))
    saved = restored.state_dict()
    assert saved.keys() == initial.keys()
    assert all(torch.equal(saved[k], initial[k]) for k in initial), "a skipped update changed the weights"


def test_exploding_learning_rate_ends_with_a_clear_error(assets, tmp_path, capsys):
    model, data = assets
    argv = _argv(model, data, tmp_path / "out", "--max-steps", "4", "--set", "train.lr=1e30",
                 "--reward", "length", "--set", "rewards.1.options={max_length: 4, cache_length: 3}",
                 "--set", "train.max_grad_norm=0", "--set", "train.max_nonfinite_steps=2")
    got, _, lines = _run(argv, capsys)
    assert got == 2, lines
    errors = [line for line in lines if "warning" not in line]
    # refused before it starts: above 1, AdamW's steps only destroy the weights (issue 20, item 8)
    _one_error(errors, "'train.lr' = 1e+30 is invalid")
    assert not (tmp_path / "out").exists()
