"""RewardPipeline: weights, None handling, one call per batch, errors, warn mode, timeouts, specs."""
from __future__ import annotations

import logging
import math
import threading
import time

import numpy as np
import pytest

import rftgym
from rftgym.config import RewardConfig
from rftgym.errors import ConfigError, RftgymError
from rftgym.plugins.manager import reset_manager
from rftgym.rewards.pipeline import RewardError, RewardPipeline, RewardResult, metrics

COMPLETIONS = ["a", "bb", "ccc", "dddd"]
PROMPTS = ["p0", "p1", "p2", "p3"]


@pytest.fixture(autouse=True)
def fresh_registry():
    """Each test registers rewards in a fresh manager so names never collide across tests."""
    reset_manager()
    yield
    reset_manager()


def const(value):
    def reward(completions, **kwargs):
        return [value] * len(completions)

    return reward


def by_length(completions, **kwargs):
    return [float(len(c)) for c in completions]


def warnings_from(caplog):
    return [r for r in caplog.records if r.name == "rftgym.rewards" and r.levelno == logging.WARNING]


def test_weighted_sum_and_per_reward_values():
    pipe = RewardPipeline([("len", by_length, 2.0), ("one", const(1.0), 0.5)])
    result = pipe(PROMPTS, COMPLETIONS)
    assert isinstance(result, RewardResult)
    assert result.total.dtype == np.float64 and result.total.shape == (4,)
    np.testing.assert_allclose(result.total, [2.5, 4.5, 6.5, 8.5])
    np.testing.assert_allclose(result.per_reward["len"], [1, 2, 3, 4])
    np.testing.assert_allclose(result.per_reward["one"], [1, 1, 1, 1])
    assert result.faults == {"len": 0, "one": 0, "total": 0}


def test_zero_weight_reward_is_computed_but_not_added():
    pipe = RewardPipeline([("len", by_length, 1.0), ("logged", const(100.0), 0.0)])
    result = pipe(PROMPTS, COMPLETIONS)
    np.testing.assert_allclose(result.total, [1, 2, 3, 4])
    np.testing.assert_allclose(result.per_reward["logged"], [100] * 4)
    assert metrics(result)["reward/logged/mean"] == 100.0


def test_none_is_excluded_from_the_sum_like_nansum():
    def sometimes(completions, **kwargs):
        return [None if len(c) % 2 else 10.0 for c in completions]

    pipe = RewardPipeline([("len", by_length, 1.0), ("some", sometimes, 1.0)])
    result = pipe(PROMPTS, COMPLETIONS)
    np.testing.assert_allclose(result.total, [1, 12, 3, 14])
    assert np.isnan(result.per_reward["some"][[0, 2]]).all()
    assert result.faults["total"] == 0
    m = metrics(result)
    assert m["reward/some/mean"] == 10.0 and m["reward/some/std"] == 0.0


def test_no_applicable_reward_uses_fallback_and_is_counted_and_logged(caplog):
    def only_even(completions, **kwargs):
        return [None if len(c) % 2 else 1.0 for c in completions]

    # The zero-weight reward applies everywhere but does not count as "applicable" for the sum.
    pipe = RewardPipeline([("even", only_even, 1.0), ("log", const(5.0), 0.0)], fallback=-0.5)
    with caplog.at_level(logging.WARNING, logger="rftgym.rewards"):
        result = pipe(PROMPTS, COMPLETIONS)
    np.testing.assert_allclose(result.total, [-0.5, 1.0, -0.5, 1.0])
    assert result.faults["total"] == 2
    assert metrics(result)["reward/total/faults"] == 2.0
    records = warnings_from(caplog)
    assert len(records) == 1 and "2 of 4" in records[0].getMessage()


def test_each_reward_called_once_per_batch_with_trl_keywords():
    calls = []

    def spy(prompts, completions, answer, level, **kwargs):
        calls.append(dict(prompts=prompts, completions=completions, answer=answer, level=level, extra=kwargs))
        return [0.0] * len(completions)

    pipe = RewardPipeline([("spy", spy, 1.0)])
    pipe(PROMPTS, COMPLETIONS, answer=["1", "2", "3", "4"], level=[1, 1, 2, 2])
    assert len(calls) == 1
    assert calls[0]["prompts"] == PROMPTS and calls[0]["completions"] == COMPLETIONS
    assert calls[0]["answer"] == ["1", "2", "3", "4"] and calls[0]["level"] == [1, 1, 2, 2]
    assert calls[0]["extra"] == {}


def test_a_reward_mutating_its_inputs_does_not_affect_the_next():
    def mutate(completions, **kwargs):
        completions[0] = "XXXXXXXXXX"
        kwargs["answer"][0] = "changed"
        return [0.0] * len(completions)

    seen = {}

    def record(completions, answer, **kwargs):
        seen["c"], seen["a"] = list(completions), list(answer)
        return [0.0] * len(completions)

    RewardPipeline([("mutate", mutate, 1.0), ("record", record, 1.0)])(PROMPTS, COMPLETIONS, answer=list("wxyz"))
    assert seen == {"c": COMPLETIONS, "a": list("wxyz")}


@pytest.mark.parametrize("bad, expect", [
    (lambda completions, **kw: 1 / 0, "raised ZeroDivisionError"),
    (lambda completions, **kw: [1.0], "returned 1 values for 4 completions"),
    (lambda completions, **kw: 1.0, "returned float, expected a list of 4 values"),
    (lambda completions, **kw: "1234", "returned str"),
    (lambda completions, **kw: [1.0, float("nan"), 1.0, 1.0], "NaN/inf for 1 of 4 samples at indices [1]"),
    (lambda completions, **kw: [1.0, 1.0, float("inf"), -math.inf], "NaN/inf for 2 of 4 samples at indices [2, 3]"),
    (lambda completions, **kw: [1.0, "high", 1.0, 1.0], "non-number (str 'high')"),
    (lambda completions, **kw: [1.0, [1.0], 1.0, 1.0], "non-number (list [1.0])"),
    (lambda completions, **kw: np.ones((4, 1)), "shape (4, 1)"),
])
def test_raise_mode_names_the_reward_and_the_problem(bad, expect):
    pipe = RewardPipeline([("good", by_length, 1.0), ("culprit", bad, 1.0)])
    with pytest.raises(RewardError) as info:
        pipe(PROMPTS, COMPLETIONS)
    message = str(info.value)
    assert "'culprit'" in message and expect in message
    assert isinstance(info.value, RftgymError)


def test_zero_weight_reward_errors_still_raise():
    pipe = RewardPipeline([("good", by_length, 1.0), ("logged", lambda completions, **kw: [None], 0.0)])
    with pytest.raises(RewardError, match="'logged'"):
        pipe(PROMPTS, COMPLETIONS)


def test_numpy_and_bool_values_are_numbers():
    pipe = RewardPipeline([("np", lambda completions, **kw: np.array([0.5, 1, 2, 3], dtype=np.float32), 1.0),
                           ("bool", lambda completions, **kw: [True, False, np.int64(1), np.float64(0.25)], 1.0)])
    np.testing.assert_allclose(pipe(PROMPTS, COMPLETIONS).total, [1.5, 1, 3, 3.25])


def test_warn_mode_counts_faults_uses_fallback_and_logs_once_per_reward(caplog):
    def partly_bad(completions, **kwargs):
        return [1.0, float("nan"), "x", 1.0]

    def raises(completions, **kwargs):
        raise RuntimeError("backend down")

    pipe = RewardPipeline([("good", by_length, 1.0), ("partly", partly_bad, 1.0), ("raises", raises, 2.0)],
                          on_error="warn", fallback=-1.0)
    with caplog.at_level(logging.WARNING, logger="rftgym.rewards"):
        result = pipe(PROMPTS, COMPLETIONS)
    assert result.faults == {"good": 0, "partly": 2, "raises": 4, "total": 0}
    np.testing.assert_allclose(result.per_reward["partly"], [1.0, -1.0, -1.0, 1.0])
    np.testing.assert_allclose(result.per_reward["raises"], [-1.0] * 4)
    np.testing.assert_allclose(result.total, [1 + 1 - 2, 2 - 1 - 2, 3 - 1 - 2, 4 + 1 - 2])
    records = warnings_from(caplog)
    assert len(records) == 2  # one per faulty reward, although 'partly' had two kinds of problem
    partly = next(r.getMessage() for r in records if "'partly'" in r.getMessage())
    assert "NaN/inf" in partly and "non-number" in partly and "2 of 4" in partly
    assert any("'raises'" in r.getMessage() and "backend down" in r.getMessage() for r in records)
    m = metrics(result)
    assert m["reward/partly/faults"] == 2.0 and m["reward/raises/faults"] == 4.0 and m["reward/good/faults"] == 0.0


def test_warn_mode_logs_again_on_the_next_batch(caplog):
    pipe = RewardPipeline([("bad", lambda completions, **kw: [None], 1.0)], on_error="warn")
    with caplog.at_level(logging.WARNING, logger="rftgym.rewards"):
        pipe(PROMPTS, COMPLETIONS)
        pipe(PROMPTS, COMPLETIONS)
    assert len([r for r in warnings_from(caplog) if "'bad'" in r.getMessage()]) == 2


def test_timeout_raises_and_warns():
    release = threading.Event()

    def slow(completions, **kwargs):
        release.wait(5)
        return [1.0] * len(completions)

    try:
        pipe = RewardPipeline([("slow", slow, 1.0)], timeout=0.2)
        start = time.monotonic()
        with pytest.raises(RewardError, match="'slow' timed out after 0.2s"):
            pipe(PROMPTS, COMPLETIONS)
        assert time.monotonic() - start < 2.0
        rftgym.register_reward("slow_warn", slow)
        warn = RewardPipeline([{"name": "slow_warn", "weight": 1.0, "timeout": 0.1}, ("fast", by_length, 1.0)],
                              on_error="warn", fallback=0.0)
        result = warn(PROMPTS, COMPLETIONS)
        assert result.faults["slow_warn"] == 4
        np.testing.assert_allclose(result.total, [1, 2, 3, 4])
    finally:
        release.set()  # let the abandoned worker threads finish


def test_timeout_passes_results_and_errors_through():
    pipe = RewardPipeline([("len", by_length, 1.0, 5.0)])
    np.testing.assert_allclose(pipe(PROMPTS, COMPLETIONS).total, [1, 2, 3, 4])
    bad = RewardPipeline([("boom", lambda completions, **kw: 1 / 0, 1.0)], timeout=5.0)
    with pytest.raises(RewardError, match="'boom' raised ZeroDivisionError"):
        bad(PROMPTS, COMPLETIONS)


def test_trl_style_function_through_register_and_get_reward():
    def trl_reward(completions, **kwargs):  # exactly the shape TRL documents
        return [1.0 if c == kwargs["answer"][i] else 0.0 for i, c in enumerate(completions)]

    rftgym.register_reward("trl_style", trl_reward)
    reward = rftgym.get_reward("trl_style")
    assert reward(PROMPTS, COMPLETIONS, answer=["a", "x", "ccc", "y"]) == [1.0, 0.0, 1.0, 0.0]
    pipe = RewardPipeline([RewardConfig(name="trl_style", weight=3.0)])
    result = pipe(PROMPTS, COMPLETIONS, answer=["a", "x", "ccc", "y"])
    np.testing.assert_allclose(result.total, [3, 0, 3, 0])


def test_specs_as_dicts_configs_names_and_callables():
    def scaled(completions, scale=1.0, **kwargs):
        return [scale * len(c) for c in completions]

    rftgym.register_reward("scaled", scaled)
    pipe = RewardPipeline([
        {"name": "scaled", "weight": 1.0, "options": {"scale": 10.0}},
        RewardConfig(name="format", weight=0.0, options={"tags": ["answer"]}),
        "exact_match",
        by_length,
    ])
    assert pipe.names == ["scaled", "format", "exact_match", "by_length"]
    assert pipe.weights == {"scaled": 1.0, "format": 0.0, "exact_match": 1.0, "by_length": 1.0}
    result = pipe(PROMPTS, ["<answer>1</answer>", "b", "c", "d"], answer=["1", "b", "z", "d"])
    np.testing.assert_allclose(result.per_reward["scaled"], [180, 10, 10, 10])
    np.testing.assert_allclose(result.per_reward["format"], [1, 0, 0, 0])
    np.testing.assert_allclose(result.per_reward["exact_match"], [0, 1, 0, 1])
    np.testing.assert_allclose(result.total, [180 + 0 + 18, 10 + 1 + 1, 10 + 0 + 1, 10 + 1 + 1])


@pytest.mark.parametrize("specs, expect", [
    ([], "at least one reward"),
    ([("a", by_length, 0.0)], "every reward has weight 0"),
    ([("a", by_length, 1.0), ("a", by_length, 1.0)], "appears twice"),
    ([("total", by_length, 1.0)], "reserved"),
    ([("a", by_length, float("nan"))], "finite"),
    ([("a", "not callable", 1.0)], "expected (name, callable, weight"),
    ([{"name": "format", "wieght": 1.0}], "did you mean 'weight'"),
    ([{"weight": 1.0}], "has no 'name'"),
    ([{"name": "format", "options": {"tagz": []}}], "has no option 'tagz'"),
    ([42], "cannot read a reward spec"),
    ([("a", by_length, 1.0, -1)], "positive"),
])
def test_bad_specs_are_config_errors(specs, expect):
    with pytest.raises(ConfigError) as info:
        RewardPipeline(specs)
    assert expect in str(info.value)


def test_unknown_reward_name_is_reported():
    with pytest.raises(RftgymError, match="unknown reward 'fromat'; did you mean 'format'"):
        RewardPipeline(["fromat"])


def test_bad_on_error_and_fallback():
    with pytest.raises(ConfigError, match="on_error"):
        RewardPipeline([("a", by_length, 1.0)], on_error="ignore")
    with pytest.raises(ConfigError, match="fallback"):
        RewardPipeline([("a", by_length, 1.0)], fallback=float("nan"))


def test_columns_and_prompts_must_match_completions():
    pipe = RewardPipeline([("a", by_length, 1.0)])
    with pytest.raises(RewardError, match="column 'answer' has 3 values for 4 completions"):
        pipe(PROMPTS, COMPLETIONS, answer=["1", "2", "3"])
    with pytest.raises(RewardError, match="column 'level' must be a list"):
        pipe(PROMPTS, COMPLETIONS, level=3)
    with pytest.raises(RewardError, match="3 prompts for 4 completions"):
        pipe(PROMPTS[:3], COMPLETIONS)
    np.testing.assert_allclose(pipe(None, COMPLETIONS).total, [1, 2, 3, 4])


def test_setup_failure_raises_even_in_warn_mode():
    class Broken:
        def setup(self):
            raise OSError("model file missing")

        def __call__(self, prompts, completions, **columns):
            return [0.0] * len(completions)

    pipe = RewardPipeline([("broken", Broken, 1.0)], on_error="warn")
    with pytest.raises(RewardError, match="'broken' failed to set up: OSError: model file missing"):
        pipe(PROMPTS, COMPLETIONS)


def test_close_closes_every_reward_even_when_one_fails():
    closed = []

    class Tracked:
        def __init__(self, tag, fail=False):
            self.tag, self.fail = tag, fail

        def __call__(self, prompts, completions, **columns):
            return [0.0] * len(completions)

        def close(self):
            closed.append(self.tag)
            if self.fail:
                raise RuntimeError("leaky")

    rftgym.register_reward("tracked", Tracked)
    pipe = RewardPipeline([{"name": "tracked", "options": {"tag": "a", "fail": True}},
                           ("b", Tracked("b"), 1.0)])
    pipe(PROMPTS, COMPLETIONS)
    with pytest.raises(RewardError, match="tracked: RuntimeError: leaky"):
        pipe.close()
    assert closed == ["a", "b"]
    pipe(PROMPTS, COMPLETIONS)  # usable again after close: set up lazily once more


def test_metrics_keys_and_values():
    def half(completions, **kwargs):
        return [None, 1.0, None, 3.0]

    pipe = RewardPipeline([("len", by_length, 1.0), ("half", half, 0.0),
                           ("never", lambda completions, **kw: [None] * 4, 0.0)])
    result = pipe(PROMPTS, COMPLETIONS)
    m = pipe.metrics(result)
    assert set(m) == {f"reward/{n}/{s}" for n in ("len", "half", "never", "total") for s in ("mean", "std", "faults")}
    assert m["reward/len/mean"] == 2.5 and m["reward/len/std"] == pytest.approx(np.std([1, 2, 3, 4]))
    assert m["reward/half/mean"] == 2.0 and m["reward/half/std"] == 1.0
    assert math.isnan(m["reward/never/mean"]) and math.isnan(m["reward/never/std"])
    assert m["reward/total/mean"] == 2.5 and m["reward/total/faults"] == 0.0
    assert all(isinstance(v, float) for v in m.values())
