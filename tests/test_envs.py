"""The bandit env and its native vector env: Gymnasium conformance, groups, seeding, resumption."""
from __future__ import annotations

import json
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rftgym
from rftgym.envs.bandit import PromptBanditEnv
from rftgym.envs.vector import PromptBanditVectorEnv
from rftgym.plugins.manager import get_manager


def exact(prompts, completions, answer, **columns):
    return [float(c.strip() == a) for c, a in zip(completions, answer)]


class Spy:
    """An exact-match reward that records every call."""

    __name__ = "spy"

    def __init__(self):
        self.calls = []

    def __call__(self, prompts, completions, **columns):
        self.calls.append((list(prompts), list(completions), {k: list(v) for k, v in columns.items()}))
        return [float(c == a) for c, a in zip(completions, columns["answer"])]


@pytest.fixture(autouse=True)
def countdown_reward(fresh_manager):
    """The countdown reward is registered by rewards/catalog.py; register it here if not yet."""
    manager = get_manager()
    manager.load_builtins()
    if "countdown" not in manager.rewards:
        from rftgym.envs.tasks.countdown import CountdownReward

        rftgym.register_reward("countdown", CountdownReward)


def make_vec(num_envs=32, group_size=8, **kwargs):
    kwargs.setdefault("reward", exact)
    kwargs.setdefault("check", None)
    return gymnasium.make_vec("rftgym/Arithmetic-v0", num_envs=num_envs, vectorization_mode="vector_entry_point",
                              group_size=group_size, **kwargs)


# -- registration ---------------------------------------------------------------------------------
def test_ids_registered_with_both_entry_points_and_no_time_limit():
    for env_id in ("rftgym/Arithmetic-v0", "rftgym/Countdown-v0", "rftgym/PromptDataset-v0",
                   "rftgym/GSM8K-v0", "rftgym/MATH-v0"):
        spec = gymnasium.spec(env_id)
        assert isinstance(spec.entry_point, str) and isinstance(spec.vector_entry_point, str)
        assert spec.max_episode_steps is None


@pytest.mark.parametrize("env_id,kwargs", [
    ("rftgym/Arithmetic-v0", {"reward": exact, "check": None}),
    ("rftgym/Arithmetic-v0", {"reward": exact, "check": None, "ops": ["+", "-", "*"], "digits": 3}),
    ("rftgym/Countdown-v0", {}),
    ("rftgym/PromptDataset-v0", {"dataset": [{"prompt": "1+1=", "answer": "2"}, {"prompt": "2+2=", "answer": "4"}],
                                 "reward": exact, "check": None}),
])
def test_check_env(env_id, kwargs):
    env = gymnasium.make(env_id, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checker's warnings (spaces, render, determinism) are failures too
        check_env(env.unwrapped)
    env.close()


@pytest.mark.parametrize("env_id", ["rftgym/PromptDataset-v0", "rftgym/GSM8K-v0", "rftgym/MATH-v0"])
def test_ids_needing_data_name_the_missing_argument(env_id):
    with pytest.raises(TypeError, match="missing argument 'path'") as excinfo:
        gymnasium.make(env_id, reward=exact)
    assert env_id in str(excinfo.value)
    with pytest.raises(TypeError, match="missing argument 'path'"):
        gymnasium.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point", reward=exact)


def test_import_is_light():
    import subprocess
    import sys

    code = ("import sys, rftgym; heavy = [m for m in ('torch', 'datasets', 'sympy', 'transformers') if m in sys.modules];"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


# -- single env --------------------------------------------------------------------------------------
def test_step_scores_completion_and_info_has_breakdown_and_metadata():
    env = gymnasium.make("rftgym/Arithmetic-v0", reward=[("exact", exact, 1.0), ("spy", Spy(), 0.0)],
                         check="exact", render_mode="ansi")
    prompt, info = env.reset(seed=3)
    row = info["row"]
    assert prompt == f"{row['a']}+{row['b']}=" and row["answer"] not in prompt.split("=")[1]
    obs, reward, terminated, truncated, info = env.step(str(row["a"] + row["b"]))
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["per_reward"] == {"exact": 1.0, "spy": 1.0} and info["correct"] is True
    assert info["row"]["op"] == "+"
    assert "reward: 1" in env.render()
    _, reward, _, _, info = env.step("nope")
    assert reward == 0.0 and info["correct"] is False


def test_single_env_rejects_non_string_completion():
    env = PromptBanditEnv(task="arithmetic", reward=exact, check=None)
    with pytest.raises(gymnasium.error.ResetNeeded):
        env.step("1")
    env.reset(seed=0)
    with pytest.raises(TypeError, match="completion 0 must be a str"):
        env.step(42)


def test_single_env_seeded_reset_is_deterministic_and_sequential_order_is_fixed():
    env = PromptBanditEnv(task="arithmetic", reward=exact, check=None)
    first = [env.reset(seed=11)[0]] + [env.reset()[0] for _ in range(5)]
    again = [env.reset(seed=11)[0]] + [env.reset()[0] for _ in range(5)]
    assert first == again and len(set(first)) > 1
    seq = PromptBanditEnv(task="arithmetic", order="sequential", split="test", reward=exact, check=None)
    from rftgym.envs.tasks.arithmetic import ArithmeticTask

    expected = [r["prompt"] for r in ArithmeticTask(split="test").rows(4)]
    assert [seq.reset(seed=0)[0]] + [seq.reset()[0] for _ in range(3)] == expected


# -- vector env --------------------------------------------------------------------------------------
def test_make_vec_groups_are_contiguous_identical_and_distinct():
    env = make_vec(32, 8)
    assert isinstance(env.unwrapped, PromptBanditVectorEnv)
    assert env.metadata["autoreset_mode"] == gymnasium.vector.AutoresetMode.SAME_STEP
    obs, info = env.reset(seed=0)
    for batch, info in [(obs, info), env.step(["x"] * 32)[::4]]:
        assert len(batch) == 32
        groups = [batch[i:i + 8] for i in range(0, 32, 8)]
        assert all(len(set(g)) == 1 for g in groups)
        assert len({g[0] for g in groups}) == 4
        assert info["group_id"].tolist() == [g for g in range(4) for _ in range(8)]
        assert len(info["row"]) == 32 and len(info["columns"]["answer"]) == 32
        assert all(info["columns"]["answer"][i] == info["columns"]["answer"][i - i % 8] for i in range(32))


def test_one_batched_reward_call_per_step_with_columns_and_same_step_autoreset():
    spy = Spy()
    env = make_vec(12, 3, reward=spy)
    obs, info = env.reset(seed=1)
    answers = info["columns"]["answer"]
    completions = [a if i % 3 == 0 else "wrong" for i, a in enumerate(answers)]
    next_obs, rewards, terminated, truncated, info = env.step(completions)
    assert len(spy.calls) == 1
    prompts, seen, columns = spy.calls[0]
    assert prompts == list(obs) and seen == completions
    assert columns["answer"] == answers and set(columns) == {"answer", "a", "b", "op"}
    assert rewards.dtype == np.float64 and rewards.tolist() == [1.0, 0.0, 0.0] * 4
    assert terminated.all() and not truncated.any()
    scored = info["scored"]
    assert scored["prompts"] == list(obs) and scored["per_reward"]["spy"].tolist() == rewards.tolist()
    assert scored["correct"] is None and scored["group_id"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert next_obs != obs and len(next_obs) == 12  # the next prompts, drawn in the same step
    env.step(["1"] * 12)
    assert len(spy.calls) == 2


def test_step_async_scores_on_another_thread_while_the_caller_works():
    import threading

    from gymnasium.error import AlreadyPendingCallError, NoAsyncCallError

    went_on = threading.Event()

    def waits_for_the_caller(prompts, completions, **columns):
        # Only an asynchronous step lets the caller set the event while this runs; a synchronous
        # one would leave it unset (the wait gives up, the reward says 0).
        return [float(went_on.wait(timeout=10))] * len(completions)

    env = make_vec(4, 2, reward=waits_for_the_caller)
    env.reset(seed=0)
    with pytest.raises(NoAsyncCallError):
        env.step_wait()
    env.step_async(["1"] * 4)
    with pytest.raises(AlreadyPendingCallError):
        env.step_async(["1"] * 4)
    went_on.set()
    obs, rewards, terminated, _, info = env.step_wait()
    assert rewards.tolist() == [1.0] * 4 and terminated.all() and len(obs) == 4
    assert info["scored"]["completions"] == ["1"] * 4


def test_step_async_then_wait_equals_step_and_errors_surface_in_wait():
    a, b = make_vec(8, 2), make_vec(8, 2)
    a.reset(seed=3), b.reset(seed=3)
    for completions in (["1"] * 8, [str(i) for i in range(8)]):
        sync = a.step(completions)
        b.step_async(completions)
        split = b.step_wait()
        assert sync[0] == split[0] and sync[1].tolist() == split[1].tolist()
        assert sync[4]["scored"]["prompts"] == split[4]["scored"]["prompts"]

    def broken(prompts, completions, **columns):
        raise ValueError("boom")

    env = make_vec(4, 2, reward=broken)
    obs, _ = env.reset(seed=0)
    env.step_async(["1"] * 4)                       # returns: the error belongs to step_wait
    with pytest.raises(Exception, match="boom"):
        env.step_wait()
    env.step_async(["1"] * 4)                       # a reset drops a step never waited for
    assert env.reset(seed=0)[0] == obs


def test_close_waits_for_scoring_in_flight_but_not_forever(monkeypatch):
    import threading

    import rftgym.envs.vector as vector

    finished, release = threading.Event(), threading.Event()

    def slow(prompts, completions, **columns):
        release.wait(timeout=10)
        finished.set()
        return [0.0] * len(completions)

    env = make_vec(4, 2, reward=slow)
    env.reset(seed=0)
    env.step_async(["1"] * 4)
    threading.Timer(0.05, release.set).start()
    env.close()                                     # waits for the reward before closing the pipeline
    assert finished.is_set()

    finished.clear(), release.clear()
    monkeypatch.setattr(vector, "CLOSE_WAIT_S", 0.01)
    env = make_vec(4, 2, reward=slow)
    env.reset(seed=0)
    env.step_async(["1"] * 4)
    with pytest.warns(RuntimeWarning, match="left to finish on its own"):
        env.close()                                 # a stuck reward cannot hang shutdown
    assert not finished.is_set()
    release.set()


def test_vector_check_reuses_pipeline_reward_and_reports_correct():
    spy = Spy()
    env = make_vec(4, 2, reward=spy, check="spy")
    _, info = env.reset(seed=2)
    answers = info["columns"]["answer"]
    _, _, _, _, info = env.step([answers[0], "x", "y", answers[3]])
    assert info["scored"]["correct"].tolist() == [True, False, False, True]
    assert len(spy.calls) == 1  # the check read the pipeline's scores instead of calling again


def test_vector_seeded_reset_is_deterministic():
    a, b = make_vec(8, 2), make_vec(8, 2)
    runs = []
    for env in (a, b):
        obs = [env.reset(seed=5)[0]]
        for _ in range(3):
            obs.append(env.step(["0"] * 8)[0])
        runs.append(obs)
    assert runs[0] == runs[1]
    assert make_vec(8, 2).reset(seed=6)[0] != runs[0][0]


@pytest.mark.parametrize("kwargs", [
    {},
    {"order": "sequential", "split": "test"},
    {"task": None, "dataset": [{"prompt": f"q{i}", "answer": str(i)} for i in range(7)]},
    {"task": None, "dataset": [{"prompt": f"q{i}", "answer": str(i)} for i in range(7)], "order": "sequential"},
])
def test_state_dict_round_trip_draws_the_same_prompts(kwargs):
    kwargs = {"task": "arithmetic", **kwargs}
    if kwargs["task"] is None:
        del kwargs["task"]
    env = PromptBanditVectorEnv(6, 2, reward=exact, check=None, **kwargs)
    env.reset(seed=9)
    for _ in range(3):
        env.step(["0"] * 6)
    state = json.loads(json.dumps(env.state_dict()))  # JSON-serialisable
    expected = [env.reset()[0]] + [env.step(["0"] * 6)[0] for _ in range(4)]
    # the state was saved after a step: the pending prompts were those reset() then replaced
    fresh = PromptBanditVectorEnv(6, 2, reward=exact, check=None, **kwargs)
    fresh.load_state_dict(state)
    pending, _ = fresh.reset()
    resumed = [fresh.reset()[0]] + [fresh.step(["0"] * 6)[0] for _ in range(4)]
    assert resumed == expected and pending != expected[0]
    # resuming straight into step() scores the pending prompts
    again = PromptBanditVectorEnv(6, 2, reward=exact, check=None, **kwargs)
    again.load_state_dict(state)
    assert again.step(["0"] * 6)[4]["scored"]["prompts"] == list(pending)


def test_single_env_state_dict_round_trip():
    make = lambda: PromptBanditEnv(task="countdown", reward=exact, check=None, render_mode="ansi")
    env = make()
    env.reset(seed=4)
    env.reset()
    state = json.loads(json.dumps(env.state_dict()))
    shown = env.render()  # "prompt: ..." of the prompt on display when the state was saved
    expected = [env.reset()[0] for _ in range(3)]
    fresh = make()
    fresh.load_state_dict(state)
    fresh.reset()
    assert fresh.render() == shown
    assert [fresh.reset()[0] for _ in range(3)] == expected


def test_vector_bad_inputs():
    with pytest.raises(ValueError, match="num_envs=10 is not divisible by group_size=4"):
        make_vec(10, 4)
    env = make_vec(4, 2)
    with pytest.raises(gymnasium.error.ResetNeeded):
        env.step(["a"] * 4)
    env.reset(seed=0)
    with pytest.raises(TypeError, match="completion 2 must be a str.*int"):
        env.step(["a", "b", 3, "d"])
    with pytest.raises(ValueError, match="expects 4 completions"):
        env.step(["a"] * 3)
    with pytest.raises(TypeError, match="single str"):
        env.step("abcd")


def test_unknown_task_option_is_named():
    with pytest.raises(rftgym.errors.ConfigError, match="no option 'digts'.*did you mean 'digits'"):
        PromptBanditEnv(task="arithmetic", digts=3, reward=exact)


def test_default_rewards_by_name():
    pytest.importorskip("rftgym.rewards.math")
    env = PromptBanditVectorEnv(4, 2, task="arithmetic")
    assert env.scorer.pipeline.names == ["math"] and env.scorer.check == "math"
    countdown = PromptBanditVectorEnv(4, 2, task="countdown")
    assert countdown.scorer.pipeline.names == ["countdown"]


def test_check_env_with_default_rewards():
    pytest.importorskip("rftgym.rewards.math")
    for env_id in ("rftgym/Arithmetic-v0", "rftgym/Countdown-v0"):
        env = gymnasium.make(env_id)
        check_env(env.unwrapped)
        _, info = env.reset(seed=0)
        answer = info["row"]["answer"]
        _, reward, _, _, info = env.step(answer)
        assert reward == 1.0 and info["correct"] is True
        env.close()
