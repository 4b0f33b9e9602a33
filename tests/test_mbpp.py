"""The MBPP-style loader feeds ``rftgym/PromptDataset-v0`` and the ``code`` reward."""
from __future__ import annotations

import json

import gymnasium as gym
import pytest

import rftgym  # noqa: F401 - registers the env ids
from rftgym.envs.loading import DataError
from rftgym.envs.mbpp import mbpp_rows

ROWS = [
    {"task_id": 1, "text": "Write a function to find the maximum of two numbers.",
     "code": "def max_of_two(a, b):\n    return a if a > b else b\n",
     "test_list": ["assert max_of_two(1, 2) == 2", "assert max_of_two(5, 3) == 5"], "test_setup_code": ""},
    {"task_id": 2, "text": "Write a function to reverse a string.", "code": "def rev(s):\n    return s[::-1]\n",
     "test_list": ["assert rev('ab') == 'ba'"], "test_setup_code": "import math"},
]


def test_rows_map_and_the_env_scores_gold_and_wrong(tmp_path):
    path = tmp_path / "mbpp.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    rows = mbpp_rows(path)
    assert rows[0]["entry_point"] == "max_of_two" and rows[1]["tests"].startswith("import math\n")
    assert "assert max_of_two(1, 2) == 2" in rows[0]["prompt"] and "return" not in rows[0]["prompt"]
    env = gym.make("rftgym/PromptDataset-v0", dataset=rows, answer_column=None, reward="code", check="code",
                   order="sequential")
    obs, _ = env.reset(seed=0)
    _, reward, *_ , info = env.step(f"```python\n{ROWS[0]['code']}```")
    assert reward == 1.0 and info["correct"]
    env.reset()
    assert "reverse" in env.unwrapped.prompt if hasattr(env.unwrapped, "prompt") else True
    _, reward, *_ = env.step("def rev(s):\n    return s\n")
    assert reward == 0.0
    env.close()


def test_bad_rows_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="test_list"):
        mbpp_rows([{"text": "x"}])
    with pytest.raises(DataError, match="not found"):
        mbpp_rows(tmp_path / "missing.jsonl")
