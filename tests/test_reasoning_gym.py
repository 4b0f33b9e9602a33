"""``rftgym/ReasoningGym-v0`` and the ``reasoning_gym`` reward (skipped without the extra)."""
from __future__ import annotations

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import rftgym
from rftgym.errors import ConfigError

rg = pytest.importorskip("reasoning_gym")

# Measured with reasoning-gym 0.1.25 (106 tasks): every installed task passes; no entry is skipped. (reasoning-gym's own ``composite`` needs a
# ``datasets`` config, given below; its items are scored by the dataset that made them.)
CONFIGS: dict[str, dict] = {"composite": {"datasets": [{"name": "leg_counting", "weight": 1.0},
                                                      {"name": "basic_arithmetic", "weight": 1.0, "config": {}}]}}
# These items carry no gold answer (answer is None: many solutions are valid and the task's
# scorer verifies a proposed one), so only check_env is run for them.
NO_GOLD = {"boxnet", "graph_color", "propositional_logic", "rubiks_cube", "rush_hour"}


def _names() -> list[str]:
    return sorted(rg.factory.DATASETS)


@pytest.mark.slow
@pytest.mark.parametrize("name", _names())
def test_every_task_passes_check_env_and_scores_its_gold(name):
    env = gym.make("rftgym/ReasoningGym-v0", tasks=name, size=3, config=CONFIGS.get(name, {}))
    check_env(env.unwrapped)
    task = env.unwrapped.source.task
    rows = list(task)
    if name in NO_GOLD:
        assert all(r["answer"] is None for r in rows)
        return
    reward = rftgym.get_reward("reasoning_gym")
    scores = reward([r["prompt"] for r in rows], [f"<answer>{r['answer']}</answer>" for r in rows],
                    rg_entry=[r["rg_entry"] for r in rows], rg_task=[r["rg_task"] for r in rows])
    assert scores == [1.0] * len(rows), scores
    env.close()


def test_env_scores_partial_credit_and_held_out_split_differs():
    train = gym.make("rftgym/ReasoningGym-v0", tasks="leg_counting", size=20).unwrapped.source.task
    test = gym.make("rftgym/ReasoningGym-v0", tasks="leg_counting", size=20, split="test").unwrapped.source.task
    assert {r["prompt"] for r in train} != {r["prompt"] for r in test}
    env = gym.make("rftgym/ReasoningGym-v0", tasks="leg_counting", size=5)
    env.reset(seed=1)
    _, reward, terminated, _, _ = env.step("no answer tags")
    assert terminated and reward == 0.0


def test_composite_with_weights_and_config():
    task = gym.make("rftgym/ReasoningGym-v0", tasks={"leg_counting": 3, "basic_arithmetic": 1}, size=5,
                    config={"leg_counting": {"min_animals": 2, "max_animals": 3}}).unwrapped.source.task
    import numpy as np

    rng = np.random.default_rng(0)
    drawn = [task.sample(rng)["rg_task"] for _ in range(200)]
    assert 0.6 < drawn.count("leg_counting") / 200 < 0.9
    reward = rftgym.get_reward("reasoning_gym")
    rows = list(task)
    assert reward(["p"] * len(rows), [f"<answer>{r['answer']}</answer>" for r in rows],
                  rg_entry=[r["rg_entry"] for r in rows]) == [1.0] * len(rows)


def test_reasoning_gyms_own_composite_needs_datasets_and_scores_by_source():
    with pytest.raises(ConfigError, match="composite' needs config datasets"):
        gym.make("rftgym/ReasoningGym-v0", tasks="composite", size=3)
    env = gym.make("rftgym/ReasoningGym-v0", tasks="composite", size=6, config=CONFIGS["composite"])
    rows = list(env.unwrapped.source.task)
    assert {r["rg_task"] for r in rows} <= {"leg_counting", "basic_arithmetic"}
    env.close()


def test_unknown_task_names_the_closest():
    with pytest.raises(ConfigError, match="did you mean 'leg_counting'"):
        gym.make("rftgym/ReasoningGym-v0", tasks="leg_countin")


def test_rftgym_plugins_lists_the_reasoning_gym_tasks(run_cli):
    import json
    import os
    from pathlib import Path

    # the rftgym under test (a worktree on PYTHONPATH), not whichever is installed
    path = [Path(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    proc = run_cli("plugins", "--json", pythonpath=path)
    assert proc.returncode == 0, proc.stderr
    builtin = next(p for p in json.loads(proc.stdout)["plugins"] if p["name"] == "rftgym.builtin")
    assert builtin["env_tasks"]["rftgym/ReasoningGym-v0"] == sorted(rg.factory.DATASETS)
    text = run_cli("plugins", pythonpath=path).stdout
    assert f"tasks of rftgym/ReasoningGym-v0: ({len(rg.factory.DATASETS)}) ab, " in text


def test_without_the_extra_the_listing_says_how_to_install_it(monkeypatch):
    from rftgym.envs.tasks import reasoning_gym as task_module
    from rftgym.errors import RftgymError
    from rftgym.plugins.manager import get_manager

    def missing():
        raise RftgymError(task_module.INSTALL_HINT)

    monkeypatch.setattr(task_module, "import_reasoning_gym", missing)
    manager = get_manager()
    manager.load_builtins()
    listed = manager.env_tasks("rftgym.builtin")
    assert list(listed) == ["rftgym/ReasoningGym-v0"]
    assert "pip install 'rftgym[reasoning-gym]'" in listed["rftgym/ReasoningGym-v0"]
