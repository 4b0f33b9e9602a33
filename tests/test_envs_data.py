"""Prompt data: local files through datasets.load_dataset, column mapping, answers, bad input."""
from __future__ import annotations

import json
import warnings

import pytest

from rftgym.answers import extract_answer, last_boxed
from rftgym.envs.bandit import PromptBanditEnv
from rftgym.envs.loading import DataError
from rftgym.envs.vector import PromptBanditVectorEnv
from rftgym.errors import ConfigError, RftgymError

GSM8K_ROWS = [
    {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3 + 4 = <<3+4=7>>7\n#### 7", "level": "easy"},
    {"question": "A shop sells 1,200 pens a day. Pens in 2 days?", "answer": "1200*2=2400\n#### 2,400", "level": "mid"},
    {"question": "Half of 10?", "answer": "#### 5", "level": "easy"},
]
MATH_ROWS = [
    {"problem": "Simplify 6/8.", "solution": "Divide: $\\boxed{\\frac{3}{4}}$.", "type": "Algebra"},
    {"problem": "Find the set.", "solution": "First \\boxed{1} then finally \\boxed{\\{1, 2\\}}", "type": "Sets"},
]


class Recorder:
    __name__ = "recorder"

    def __init__(self):
        self.columns = []

    def __call__(self, prompts, completions, **columns):
        self.columns.append(columns)
        return [1.0] * len(completions)


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


def gsm8k_env(tmp_path, **kwargs):
    reward = kwargs.pop("reward", Recorder())
    return PromptBanditVectorEnv(len(GSM8K_ROWS), 1, reward=reward, check=None, order="sequential",
                                 cache_dir=str(tmp_path / "cache"), **kwargs)


# -- answer extraction -----------------------------------------------------------------------------
def test_gsm8k_and_boxed_extraction():
    assert extract_answer("work\n#### 72", "gsm8k") == "72"
    assert extract_answer("#### 1,234", "gsm8k") == "1234"
    assert extract_answer("no marker", "gsm8k") is None
    assert extract_answer("so $\\boxed{\\frac{1}{2}}$", "boxed") == "\\frac{1}{2}"
    assert extract_answer("\\boxed{a} and \\boxed{\\{x \\mid x>0\\}}", "boxed") == "\\{x \\mid x>0\\}"
    assert last_boxed("\\fbox{3}") == "3" and last_boxed("\\boxed 7.") == "7."
    assert last_boxed("\\boxed{unbalanced") is None
    assert extract_answer("x #### 3", "auto") == "3" and extract_answer("\\boxed{4}", "auto") == "4"
    assert extract_answer("  42 ", "auto") == "42" and extract_answer("#### 3", "raw") == "#### 3"
    with pytest.raises(ValueError, match="answer_format must be one of"):
        extract_answer("1", "latex")


# -- loading local files -----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_local_files_with_column_mapping_and_gsm8k_answers(tmp_path, fmt):
    import pandas as pd

    path = tmp_path / f"data.{fmt}"
    if fmt == "jsonl":
        write_jsonl(path, GSM8K_ROWS)
    elif fmt == "csv":
        pd.DataFrame(GSM8K_ROWS).to_csv(path, index=False)
    else:
        pd.DataFrame(GSM8K_ROWS).to_parquet(path)
    recorder = Recorder()
    env = gsm8k_env(tmp_path, reward=recorder, path=str(path), prompt_column="question", answer_column="answer",
                    answer_format="gsm8k", template="Q: {prompt} ({level})\nA:")
    obs, info = env.reset(seed=0)
    assert obs == tuple(f"Q: {r['question']} ({r['level']})\nA:" for r in GSM8K_ROWS)
    assert info["columns"] == {"level": ["easy", "mid", "easy"], "answer": ["7", "2400", "5"]}
    env.step(["a", "b", "c"])
    assert recorder.columns[0]["answer"] == ["7", "2400", "5"] and recorder.columns[0]["level"] == ["easy", "mid", "easy"]
    assert all("####" not in p and "2400" not in p for p in obs)


def test_gsm8k_preset_with_data_files(tmp_path):
    path = write_jsonl(tmp_path / "gsm8k.jsonl", GSM8K_ROWS)
    env = gsm8k_env(tmp_path, preset="gsm8k", data_files={"train": path, "test": path})
    obs, info = env.reset(seed=0)
    assert obs[0].startswith(GSM8K_ROWS[0]["question"]) and "####" in obs[0]  # the instruction, not the answer
    assert info["columns"]["answer"] == ["7", "2400", "5"]
    test = gsm8k_env(tmp_path, preset="gsm8k", data_files={"train": path, "test": path}, split="test")
    assert test.reset(seed=0)[1]["columns"]["answer"] == ["7", "2400", "5"]


def test_math_preset_extracts_boxed_answers(tmp_path):
    path = write_jsonl(tmp_path / "math.jsonl", MATH_ROWS)
    env = PromptBanditVectorEnv(2, 1, path=path, preset="math", reward=Recorder(), check=None, order="sequential",
                                cache_dir=str(tmp_path / "cache"))
    obs, info = env.reset(seed=0)
    assert info["columns"]["answer"] == ["\\frac{3}{4}", "\\{1, 2\\}"]
    assert info["columns"]["type"] == ["Algebra", "Sets"] and "solution" not in info["columns"]
    assert obs[0].endswith("within \\boxed{}.") and "frac" not in obs[0]


def test_in_memory_datasets_and_columns_selection():
    import datasets

    ds = datasets.Dataset.from_list(GSM8K_ROWS)
    env = PromptBanditEnv(dataset=datasets.DatasetDict({"train": ds}), prompt_column="question",
                          columns=[], reward=Recorder(), check=None, order="sequential")
    prompt, info = env.reset(seed=0)
    assert prompt == GSM8K_ROWS[0]["question"] and info["row"] == {"answer": "7"}
    stream = PromptBanditVectorEnv(3, 1, dataset=ds.to_iterable_dataset(), prompt_column="question",
                                   reward=Recorder(), check=None, order="sequential")
    obs, info = stream.reset(seed=0)
    assert obs == tuple(r["question"] for r in GSM8K_ROWS) and info["columns"]["answer"] == ["7", "2400", "5"]
    assert stream.step(["x"] * 3)[0] == obs  # the next epoch starts over


def test_stream_state_round_trip_in_random_order():
    import datasets

    rows = [{"prompt": f"p{i}", "answer": str(i)} for i in range(20)]
    make = lambda: PromptBanditVectorEnv(4, 2, dataset=datasets.Dataset.from_list(rows).to_iterable_dataset(),
                                         reward=Recorder(), check=None, shuffle_buffer=8)
    env = make()
    env.reset(seed=3)
    env.step(["x"] * 4)
    state = json.loads(json.dumps(env.state_dict()))
    expected = [env.step(["x"] * 4)[0] for _ in range(6)]  # crosses an epoch boundary
    fresh = make()
    fresh.load_state_dict(state)
    fresh.reset()
    assert [fresh.step(["x"] * 4)[0] for _ in range(6)] == expected


def test_chat_template_with_system_prompt():
    class Tok:
        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            assert tokenize is False and add_generation_prompt is True
            return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    env = PromptBanditEnv(task="arithmetic", chat_template=True, tokenizer=Tok(), system_prompt="Be brief.",
                          template="Compute {prompt}", reward=Recorder(), check=None)
    prompt, info = env.reset(seed=1)
    assert prompt == f"<system>Be brief.<user>Compute {info['row']['a']}+{info['row']['b']}=<assistant>"
    with pytest.raises(ConfigError, match="needs a tokenizer"):
        PromptBanditEnv(task="arithmetic", chat_template=True, reward=Recorder())


# -- bad input ---------------------------------------------------------------------------------------
def test_missing_column_is_named_with_columns_found(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", GSM8K_ROWS)
    with pytest.raises(DataError, match=r"prompt_column 'prompt' not found.*columns found: question, answer, level"):
        gsm8k_env(tmp_path, path=path)
    with pytest.raises(DataError, match=r"answer_column 'solution' not found.*columns found: question, answer, level"):
        gsm8k_env(tmp_path, path=path, prompt_column="question", answer_column="solution")
    with pytest.raises(DataError, match=r"columns 'grade' not found"):
        gsm8k_env(tmp_path, path=path, prompt_column="question", columns=["grade"])
    assert issubclass(DataError, RftgymError) and issubclass(DataError, ValueError)


def test_empty_dataset_and_missing_split(tmp_path):
    import datasets

    with pytest.raises(DataError, match="empty"):
        PromptBanditEnv(dataset=[], reward=Recorder())
    with pytest.raises(DataError, match="empty"):
        PromptBanditEnv(dataset=datasets.Dataset.from_dict({"prompt": [], "answer": []}), reward=Recorder())
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "answer": "1"}])
    with pytest.raises(DataError, match="split 'test' not found; splits found: train"):
        PromptBanditEnv(path=path, split="test", reward=Recorder(), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match="data file not found"):
        PromptBanditEnv(path=str(tmp_path / "missing.jsonl"), reward=Recorder())
    empty_stream = datasets.Dataset.from_dict({"prompt": [""], "answer": ["1"]}).to_iterable_dataset()
    env = PromptBanditEnv(dataset=empty_stream, reward=Recorder(), check=None)
    with pytest.warns(UserWarning), pytest.raises(DataError, match="empty"):
        env.reset(seed=0)


def test_null_or_empty_rows_are_skipped_with_one_warning():
    rows = [{"prompt": "ok1", "answer": "1"}, {"prompt": None, "answer": "2"}, {"prompt": "  ", "answer": "3"},
            {"prompt": "ok2", "answer": None}, {"prompt": "ok3", "answer": ""}, {"prompt": "ok4", "answer": "4"},
            {"prompt": "ok5", "answer": "no box"}]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = PromptBanditVectorEnv(2, 1, dataset=rows, reward=Recorder(), check=None, order="sequential")
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert messages == ["skipped 4 of 7 rows with a missing or empty prompt or answer"]
    assert env.source.skipped == 4
    obs, _ = env.reset(seed=0)
    assert obs == ("ok1", "ok4") and env.step(["a", "b"])[0] == ("ok5", "ok1")
    boxed = [{"prompt": "a", "answer": "so \\boxed{1}"}, {"prompt": "b", "answer": "no box"}]
    with pytest.warns(UserWarning, match="skipped 1 of 2"):  # "no box" has no \boxed{} answer to extract
        env = PromptBanditEnv(dataset=boxed, answer_format="boxed", reward=Recorder(), check=None)
    assert env.reset(seed=0)[1]["row"] == {"answer": "1"}
    with pytest.raises(DataError, match="no usable rows: all 2 have an empty prompt or answer"):
        PromptBanditEnv(dataset=rows[1:3], reward=Recorder())


def test_template_cannot_leak_answer_and_unknown_fields_are_named():
    rows = [{"question": "q", "solution": "#### 1", "topic": "t"}]
    with pytest.raises(ConfigError, match="'solution', the gold answer column"):
        PromptBanditEnv(dataset=rows, prompt_column="question", answer_column="solution", template="{prompt} {solution}",
                        reward=Recorder())
    env = PromptBanditEnv(dataset=rows, prompt_column="question", answer_column="solution", template="{prompt} {nope}",
                          reward=Recorder(), check=None)
    with pytest.raises(ConfigError, match="template field 'nope' is not a column; columns: question, solution, topic"):
        env.reset(seed=0)


def test_unknown_kwargs_and_conflicting_sources():
    with pytest.raises(ConfigError, match="unknown env argument 'prompt_col'.*did you mean 'prompt_column'"):
        PromptBanditEnv(dataset=[{"prompt": "a", "answer": "1"}], prompt_col="x", reward=Recorder())
    with pytest.raises(ConfigError, match="either task or dataset"):
        PromptBanditEnv(task="arithmetic", dataset=[{"prompt": "a"}], reward=Recorder())
    with pytest.raises(ConfigError, match="order must be one of"):
        PromptBanditEnv(task="arithmetic", order="shuffled", reward=Recorder())
    with pytest.raises(ConfigError, match="no reward given"):
        PromptBanditEnv(dataset=[{"prompt": "a"}], answer_column=None)
    env = PromptBanditEnv(dataset=[{"prompt": "a"}], answer_column=None, reward=Recorder())
    assert env.reset(seed=0)[1]["row"] == {} and env.scorer.check is None
