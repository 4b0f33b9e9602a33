"""The ``math`` reward: TRL protocol, format credit, the worker pool, adversarial inputs."""
from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path

import pytest

from rftgym.rewards.math import MathReward, completion_text, verify

_CASES_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "math_cases.py"
_spec = importlib.util.spec_from_file_location("rftgym_math_cases_reward", _CASES_FILE)
math_cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(math_cases)  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def reward():
    r = MathReward(timeout=1.0, workers=2)
    r.setup()
    yield r
    r.close()


def test_trl_keyword_call(reward) -> None:
    completions = ["so \\boxed{\\frac{3}{4}}", "the answer is 0.75", "#### 12",
                   [{"role": "assistant", "content": "\\boxed{2\\sqrt{3}}"}], "\\boxed{7}"]
    scores = reward(prompts=["p"] * 5, completions=completions, answer=["3/4", "\\frac34", "12", "\\sqrt{12}", "8"],
                    difficulty=[1, 2, 3, 4, 5])
    assert scores == [1.0, 1.0, 1.0, 1.0, 0.0]


def test_missing_answer_is_not_applicable(reward) -> None:
    assert reward(completions=["\\boxed{1}", "\\boxed{1}"], answer=[None, "1"]) == [None, 1.0]
    assert reward(completions=["\\boxed{1}"]) == [None]
    with pytest.raises(ValueError, match="2 completions but 1 answers"):
        reward(completions=["a", "b"], answer=["1"])


def test_integer_gold_and_group_repeats(reward) -> None:
    completions = ["12 + 30 = 42", "\\boxed{42}", "I get 41", "#### 42"] * 4
    assert reward(completions=completions, answer=[42] * 16) == [1.0, 1.0, 0.0, 1.0] * 4


def test_require_boxed_gives_format_score() -> None:
    r = MathReward(require_boxed=True, format_score=0.25, workers=1)
    try:
        assert r(completions=["\\boxed{5}", "the answer is 5", "\\boxed{6}"], answer=["5"] * 3) == [1.0, 0.25, 0.0]
    finally:
        r.close()


def test_extraction_is_configurable() -> None:
    r = MathReward(extraction=("boxed",), workers=1)
    try:
        assert r(completions=["the answer is 5", "\\boxed{5}"], answer=["5", "5"]) == [0.0, 1.0]
    finally:
        r.close()
    with pytest.raises(ValueError, match="extraction"):
        MathReward(extraction=("bogus",))


def test_hedges_earn_nothing(reward) -> None:
    assert reward(completions=["\\boxed{5} or \\boxed{6}", "\\boxed{5 \\text{ or } 6}", "\\boxed{1,2,\\ldots,10}"],
                  answer=["5"] * 3) == [0.0, 0.0, 0.0]


def test_completion_text_forms() -> None:
    assert completion_text("x") == "x"
    assert completion_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]) == "a"
    assert completion_text({"role": "assistant", "content": [{"type": "text", "text": "hi"}]}) == "hi"
    assert completion_text(None) == ""


def test_registered_reward_via_get_reward() -> None:
    import rftgym

    r = rftgym.get_reward("math", timeout=2.0, workers=1)
    try:
        assert r(["p"], ["\\boxed{\\frac{1}{2}}"], answer=["0.5"]) == [1.0]
        assert r(prompts=["p"], completions=["\\boxed{x^2-1}"], answer=["(x-1)(x+1)"]) == [1.0]
    finally:
        r.close()


def test_verify_from_threads() -> None:
    results: dict[int, bool] = {}

    def work(i: int) -> None:
        results[i] = verify(f"{i}\\sqrt{{2}}", f"\\sqrt{{{2 * i * i}}}") and not verify(f"{i}", f"{i + 1}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == {i: True for i in range(1, 7)}


def test_verdicts_are_cached(reward) -> None:
    before = reward.stats
    reward(completions=["\\boxed{\\sqrt{8}}"] * 8, answer=["2\\sqrt{2}"] * 8)
    after = reward.stats
    assert after["worker"] - before["worker"] <= 1
    assert after["cached"] - before["cached"] >= 7


@pytest.mark.parametrize("kind, text", math_cases.ADVERSARIAL,
                         ids=[f"{k}-{i}" for i, (k, _) in enumerate(math_cases.ADVERSARIAL)])
def test_adversarial_inputs(reward, tmp_path, kind, text) -> None:
    marker = tmp_path / "pwned"
    text = text.replace("{marker}", str(marker))
    start = time.monotonic()
    for completion in (text, f"\\boxed{{{text}}}"):
        # gold 7 appears in none of them (a lone "1" inside the junk may be extracted)
        assert reward(completions=[completion], answer=["7"]) == [0.0]
        assert verify("7", completion) is False
    assert time.monotonic() - start < 4 * 10 * reward.verifier.pool.timeout
    assert not marker.exists()


def test_megabyte_completion_with_answer_at_end(reward) -> None:
    completion = "blah " * 200_000 + "\\boxed{42}"
    start = time.monotonic()
    assert reward(completions=[completion], answer=["42"]) == [1.0]
    assert time.monotonic() - start < 5


def test_hanging_input_is_killed_within_bound() -> None:
    r = MathReward(timeout=1.0, workers=1)
    r.setup()
    try:
        start = time.monotonic()
        # passes the parent's guards, then runs for minutes in sympy: (10^8)!
        assert r(completions=["\\boxed{(10^{8})!}", "\\boxed{3}"], answer=["1", "3"]) == [0.0, 1.0]
        assert time.monotonic() - start < 10 * 1.0
        assert r.stats["timeouts"] == 1 and r.stats["restarts"] == 1
        assert r(completions=["\\boxed{\\sqrt{9}}"], answer=["3"]) == [1.0]  # the replacement works
    finally:
        r.close()
