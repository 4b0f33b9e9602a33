"""Tools for multi-turn envs: the calculator (never eval), tool calls, the docs' examples."""
from __future__ import annotations

import re
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import rftgym
from rftgym.envs.tools import CalculatorError, ToolRunner, calc, parse_tool_call, tool_schema
from rftgym.envs.tools.calculator import evaluate

DOCS = Path(rftgym.__file__).resolve().parent / "docs"


@pytest.mark.parametrize("expr, value", [
    ("12*34", "408"), ("347 * 28", "9716"), ("(1+2)*3-4/2", "7"), ("-3*-(2+1)", "9"), ("1/3", "0.333333"),
    ("2.5*4", "10"), ("10÷4", "2.5"), ("7×6", "42"), ("((((1))))", "1"), (".5+.5", "1"),
])
def test_calculator_evaluates_arithmetic_exactly(expr, value):
    assert calc(expr) == value


def test_calculator_is_exact_on_rationals():
    assert evaluate("1/3*3") == Fraction(1) and evaluate("0.1+0.2") == Fraction(3, 10)


@pytest.mark.parametrize("expr, match", [
    ("__import__('os').system('x')", "unexpected character"), ("2**10", "powers"), ("1/0", "division by zero"),
    ("(1+2", "never closed"), ("1+", "ends too early"), ("", "empty"), ("1 2", "unexpected '2'"),
    ("(" * 40 + "1" + ")" * 40, "nested more than"), ("9" * 61, "more than 60 digits"),
    ("99999999999999999999*" * 9 + "9", "more than 60 digits"), ("1" * 201, "longer than 200"),
])
def test_calculator_rejects_what_is_not_bounded_arithmetic(expr, match):
    with pytest.raises(CalculatorError, match=match):
        calc(expr)


def test_calculator_never_evaluates_code(monkeypatch):
    import builtins

    def forbidden(*a, **k):
        raise AssertionError("eval/exec called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    assert calc("(2+3)*4") == "20"


def test_tool_schema_is_transformers_json_schema():
    schema = tool_schema(calc)
    assert schema["function"]["name"] == "calc"
    assert schema["function"]["parameters"]["properties"]["expression"]["type"] == "string"


def _slow(seconds: float) -> str:
    """Sleep.

    Args:
        seconds: How long.
    """
    time.sleep(seconds)
    return "done"


def _boom(x: str) -> str:
    """Raise.

    Args:
        x: Anything.
    """
    raise RuntimeError("tool failed\nsecond line")


@pytest.mark.parametrize("fmt, text, expect", [
    ("tag", "<tool>calc(2+2)</tool>", ("4", True)),
    ("tag", "<tool>calc 2+2</tool>", ("error: malformed tool call; expected <tool>name(argument)</tool>", False)),
    ("tag", "<tool>rm(-rf)</tool>", ("error: unknown tool 'rm'; available: _boom, _slow, calc", False)),
    ("tag", "<tool>_boom(1)</tool>", ("error: RuntimeError: tool failed", False)),
    ("tag", "<tool>_slow(5)</tool>", ("error: tool '_slow' timed out after 0.2s", False)),
    ("json", '<tool_call>{"name": "calc", "arguments": {"expression": "6*7"}}</tool_call>', ("42", True)),
    ("json", '<tool_call>{"name": "calc", "arguments": "{\\"expression\\": \\"1+1\\"}"}</tool_call>', ("2", True)),
    ("json", "<tool_call>{not json}</tool_call>", (None, False)),
    ("json", '<tool_call>{"name": "calc", "arguments": {"x": "1"}}</tool_call>', (None, False)),
])
def test_tool_calls_and_their_failures_become_observations(fmt, text, expect):
    runner = ToolRunner([calc, _slow, _boom], fmt, timeout=0.2)
    call = runner.find(text)
    assert call is not None
    t0 = time.monotonic()
    result, ok = runner.run(call)
    assert time.monotonic() - t0 < 3  # a hanging tool never hangs the episode
    assert ok is expect[1]
    if expect[0] is not None:
        assert result == expect[0]
    else:
        assert result.startswith("error: ") and "\n" not in result
    obs = runner.observation(result)
    assert obs == (f"<result>{result}</result>" if fmt == "tag" else {"role": "tool", "content": result})


def test_no_tool_call_is_an_answer():
    assert parse_tool_call("answer 42", "tag", {"calc": calc}) is None
    assert parse_tool_call("answer 42", "json", {"calc": calc}) is None


def test_tool_arithmetic_env_rewards_the_right_product_and_splits_are_disjoint():
    import gymnasium

    from rftgym.envs.tasks.tool_arithmetic import draw_problem, split_of

    rftgym.load_plugins()
    env = gymnasium.make("rftgym/ToolArithmetic-v0").unwrapped
    prompt, info = env.reset(seed=0)
    a, b = map(int, re.fullmatch(r"(\d+)\*(\d+)=", prompt).groups())
    assert 100 <= a <= 999 and 10 <= b <= 99 and split_of(a, b) == "train"
    obs, r, term, _, _ = env.step(f"<tool>calc({a}*{b})</tool>")
    assert (obs, r, term) == (f"<result>{a * b}</result>", 0.0, False)
    _, r, term, _, info = env.step(f"answer {a * b}")
    assert (r, term, info["correct"], info["tool_calls"]) == (1.0, True, True, 1)
    env.reset(seed=0)
    _, r, _, _, info = env.step(f"answer {a * b + 1}")
    assert (r, info["correct"]) == (0.0, False)
    rng = np.random.default_rng(0)
    assert all(split_of(*draw_problem(rng, "test")) == "test" for _ in range(50))


def _blocks(path: Path) -> dict[str, str]:
    out = {}
    for code in re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S):
        first = code.splitlines()[0]
        if first.startswith("# ") and first.endswith(".py"):
            out[first[2:]] = code
    return out


def test_docs_tool_example_runs(tmp_path):
    blocks = _blocks(DOCS / "multiturn.md")
    exec(compile(blocks["tool_env.py"], "tool_env.py", "exec"), {"__name__": "tool_env"})


def test_docs_multi_turn_env_example_trains(tmp_path, monkeypatch):
    from runner_fixtures import build_tiny_model_dir

    blocks = _blocks(DOCS / "multiturn.md")
    assert {"guess_env.py", "train_guess.py", "tool_env.py"} <= set(blocks)
    (tmp_path / "guess_env.py").write_text(blocks["guess_env.py"])
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("guess_env", None)
    model = build_tiny_model_dir(tmp_path / "model")
    scope = {"MODEL_DIR": str(model), "OUTPUT_DIR": str(tmp_path / "run"), "__name__": "train_guess"}
    exec(compile(blocks["train_guess.py"], "train_guess.py", "exec"), scope)
    assert 0.0 <= scope["result"].final_metrics["eval/accuracy"] <= 1.0
    assert (tmp_path / "run" / "final" / "model.safetensors").exists()


def test_the_shipped_tool_model_plays_tool_arithmetic():
    """``model: embedded-tool`` resolves to the shipped assets and plays episodes; its build
    record says how it was made and measured."""
    import json

    from rftgym.config import ModelConfig
    from rftgym.envs.multiturn import make_episodes
    from rftgym.runner.episodes import play
    from rftgym.runner.models import load_policy, resolve_model_path
    from rftgym.runner.policy import Policy
    from rftgym.runner.tool_model import ROLLOUT, TOOL_BUILD

    path = Path(resolve_model_path("embedded-tool"))
    info = json.loads((path / "build_info.json").read_text())
    assert info["recipe"]["p_tool"] == TOOL_BUILD["p_tool"] and info["history"]
    model, tok = load_policy(ModelConfig(name_or_path="embedded-tool"))
    rftgym.load_plugins()
    env = make_episodes("rftgym/ToolArithmetic-v0", 16, 1, split="test")
    obs, _ = env.reset(seed=0)
    ep = play(Policy(model, tok), env, list(obs), ROLLOUT, greedy=False, on_error="raise")
    assert ep.correct is not None and len(ep.correct) == 16
    assert ep.turns.max() >= 2, "sampling calls the tool in some episodes"
