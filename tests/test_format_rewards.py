"""Format rewards: tag structure / regex, DAPO overlong shaping, exact match."""
from __future__ import annotations

import time

import pytest

import rftgym
from rftgym.errors import ConfigError, RftgymError
from rftgym.rewards.format import (ExactMatchReward, FormatReward, LengthReward, completion_text,
                                   last_boxed)


def score(reward, completions, **columns):
    return reward(prompts=[""] * len(completions), completions=completions, **columns)


# -- completion_text ------------------------------------------------------------------------
@pytest.mark.parametrize("completion, text", [
    ("plain", "plain"),
    ([{"role": "assistant", "content": "chat"}], "chat"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a1"},
      {"role": "tool", "content": "t"}, {"role": "assistant", "content": "a2"}], "a2"),
    ({"role": "assistant", "content": "one message"}, "one message"),
    ([{"role": "assistant", "content": [{"type": "text", "text": "x"}, {"type": "image"},
                                         {"type": "text", "text": "y"}]}], "xy"),
    ([{"role": "assistant", "content": None}], ""),
    ([{"content": "no role"}], "no role"),
])
def test_completion_text(completion, text):
    assert completion_text(completion) == text


def test_completion_text_rejects_other_types():
    with pytest.raises(RftgymError, match="int"):
        completion_text(3)


# -- FormatReward -----------------------------------------------------------------------------
@pytest.mark.parametrize("text, ok", [
    ("<think>reason</think><answer>42</answer>", True),
    ("<think>\nreason\n</think>\n<answer>\n42\n</answer>", True),
    ("  \n<think>r</think>  \t\n <answer>42</answer>\n\n", True),
    ("<think></think><answer></answer>", True),
    ("<think>a < b and c > d</think><answer>x</answer>", True),
    ("<think>r</think>", False),
    ("<answer>42</answer>", False),
    ("<answer>42</answer><think>r</think>", False),
    ("<think>r</think>text<answer>42</answer>", False),
    ("preamble <think>r</think><answer>42</answer>", False),
    ("<think>r</think><answer>42</answer> trailing", False),
    ("<think>r</think><answer>1</answer><answer>2</answer>", False),
    ("<think>a<think>b</think><answer>42</answer>", False),
    ("<think>r<answer>x</think></answer>", False),
    ("<think>r</think><answer>42", False),
    ("<think>r<answer>42</answer>", False),
    ("<THINK>r</THINK><ANSWER>42</ANSWER>", False),
    ("<thinking>r</thinking><answer>42</answer>", False),
    ("", False),
])
def test_default_tag_structure(text, ok):
    assert score(FormatReward(), [text]) == [1.0 if ok else 0.0]


def test_custom_tags_score_and_conversational_completions():
    reward = FormatReward(tags=("reasoning", "answer"), score=0.5)
    completions = ["<reasoning>r</reasoning> <answer>1</answer>",
                   [{"role": "assistant", "content": "<reasoning>r</reasoning><answer>1</answer>"}],
                   "<think>r</think><answer>1</answer>"]
    assert score(reward, completions) == [0.5, 0.5, 0.0]
    assert score(FormatReward(tags=["answer"]), ["<answer>7</answer>", "<think>x</think><answer>7</answer>"]) == [1.0, 0.0]


def test_regex_pattern_full_and_search():
    full = FormatReward(pattern=r"<answer>\d+</answer>")
    assert score(full, ["<answer>12</answer>", "x <answer>12</answer>", "<answer>1a</answer>"]) == [1.0, 0.0, 0.0]
    search = FormatReward(pattern=r"<answer>\d+</answer>", match="search")
    assert score(search, ["x <answer>12</answer> y", "<answer></answer>"]) == [1.0, 0.0]
    dotall = FormatReward(pattern=r"<think>.*?</think>\s*<answer>.*?</answer>")
    assert score(dotall, ["<think>a\nb</think>\n<answer>c</answer>"]) == [1.0]


def test_completion_longer_than_max_chars_scores_zero():
    reward = FormatReward(max_chars=50)
    ok = "<think>r</think><answer>1</answer>"
    assert score(reward, [ok, ok.replace("r", "r" * 100)]) == [1.0, 0.0]


@pytest.mark.parametrize("kwargs, expect", [
    ({"pattern": "(unclosed"}, "invalid pattern"),
    ({"tags": ()}, "non-empty"),
    ({"tags": "think"}, "non-empty"),
    ({"tags": ("think", "bad tag")}, "invalid tag name"),
    ({"tags": ("a", "a")}, "repeat"),
    ({"match": "partial"}, "match"),
    ({"max_chars": 0}, "max_chars"),
])
def test_format_reward_bad_options(kwargs, expect):
    with pytest.raises(ConfigError, match=expect):
        FormatReward(**kwargs)


def _hostile_inputs(n=100_000):
    return [
        "<think>" * (n // 7),
        "</think>" * (n // 8),
        "<think>" + "</think> " * (n // 9),
        "<think>x</think>" + " " * n + "<answer>",
        "<think>" + "a" * n + "</think><answer>" + "<" * n,
        ("<think></think><answer>" * (n // 23)),
        "\n" * n,
        "\x00" * n,
    ]


def test_default_format_reward_is_fast_on_100k_char_hostile_inputs():
    reward = FormatReward(max_chars=10 ** 6)
    inputs = _hostile_inputs()
    start = time.perf_counter()
    assert score(reward, inputs) == [0.0] * len(inputs)
    good = "<think>" + "a" * 100_000 + "</think><answer>1</answer>"
    assert score(reward, [good]) == [1.0]
    assert time.perf_counter() - start < 2.0


def test_regex_format_reward_is_bounded_by_max_chars():
    # Lazy .*? twice over many closing tags is quadratic; the length cap keeps it bounded.
    # Uncapped, the 100k-char repeated-block input alone takes about a second; capped, the
    # inputs under the cap are scanned (still fast) and the longer ones are skipped.
    reward = FormatReward(pattern=r"<think>.*?</think>\s*<answer>.*?</answer>", max_chars=4_000)
    near_cap = "<think></think><answer>" * 170
    assert len(near_cap) < 4_000
    start = time.perf_counter()
    assert score(reward, _hostile_inputs() + [near_cap]) == [0.0] * (len(_hostile_inputs()) + 1)
    assert score(reward, [near_cap + "</answer>"]) == [1.0]  # the scanned one really is matched
    assert time.perf_counter() - start < 1.0


# -- LengthReward -----------------------------------------------------------------------------
@pytest.mark.parametrize("length, expected", [
    (0, 0.0), (50, 0.0), (80, 0.0), (81, -0.05), (90, -0.5), (99, -0.95), (100, -1.0), (101, -1.0), (10_000, -1.0),
])
def test_dapo_overlong_shaping(length, expected):
    reward = LengthReward(max_length=100, cache_length=20)
    assert score(reward, ["x" * length]) == [pytest.approx(expected)]


def test_penalty_scales_and_zero_cache_is_a_hard_step():
    assert score(LengthReward(100, 20, penalty=0.5), ["x" * 90, "x" * 200]) == [pytest.approx(-0.25), -0.5]
    assert score(LengthReward(10, 0), ["x" * 10, "x" * 11]) == [0.0, -1.0]
    assert score(LengthReward(10, 10), ["", "x" * 5, "x" * 10]) == [0.0, pytest.approx(-0.5), -1.0]


def test_length_reward_counts_conversational_content():
    reward = LengthReward(10, 5)
    assert score(reward, [[{"role": "assistant", "content": "x" * 8}]]) == [pytest.approx(-0.6)]


class WordTokenizer:
    """Hugging Face-like: ``encode`` with ``add_special_tokens`` (adds a BOS unless told not to)."""

    def encode(self, text, add_special_tokens=True):
        return (["<bos>"] if add_special_tokens else []) + text.split()


def test_length_in_tokens_with_tokenizer_objects_and_callables():
    words = ["w " * 4, "w " * 8, "w " * 12]
    hf_like = LengthReward(10, 4, unit="tokens", tokenizer=WordTokenizer())
    assert score(hf_like, words) == [0.0, pytest.approx(-0.5), -1.0]
    plain = LengthReward(10, 4, unit="tokens", tokenizer=str.split)
    assert score(plain, words) == [0.0, pytest.approx(-0.5), -1.0]
    mapping = LengthReward(10, 4, unit="tokens", tokenizer=lambda t: {"input_ids": t.split()})
    assert score(mapping, words) == [0.0, pytest.approx(-0.5), -1.0]


def test_length_in_tokens_from_trl_completion_ids():
    reward = LengthReward(10, 4, unit="tokens")
    assert score(reward, ["a", "b"], completion_ids=[[1] * 3, [1] * 9]) == [0.0, pytest.approx(-0.75)]
    with pytest.raises(RftgymError, match="completion_ids"):
        score(reward, ["a"])


@pytest.mark.parametrize("kwargs, expect", [
    ({"max_length": 0, "cache_length": 0}, "max_length"),
    ({"max_length": 10, "cache_length": 11}, "cache_length"),
    ({"max_length": 10, "cache_length": -1}, "cache_length"),
    ({"max_length": 10, "cache_length": 2, "unit": "bytes"}, "unit"),
    ({"max_length": 10, "cache_length": 2, "penalty": -1}, "penalty"),
    ({"max_length": 10, "cache_length": 2, "tokenizer": str.split}, "unit='tokens'"),
])
def test_length_reward_bad_options(kwargs, expect):
    with pytest.raises(ConfigError, match=expect):
        LengthReward(**kwargs)


# -- ExactMatchReward -------------------------------------------------------------------------
def test_exact_match_default_strips_and_is_case_sensitive():
    reward = ExactMatchReward()
    out = score(reward, ["42", " 42\n", "42.0", "Paris", "paris", "4 2"], answer=["42", "42", "42", "Paris", "Paris", "42"])
    assert out == [1.0, 1.0, 0.0, 1.0, 0.0, 0.0]


def test_exact_match_options():
    assert score(ExactMatchReward(strip=False), [" 42", "42"], answer=["42", "42"]) == [0.0, 1.0]
    assert score(ExactMatchReward(case_sensitive=False), ["PARIS", "Straße"], answer=["paris", "STRASSE"]) == [1.0, 1.0]
    assert score(ExactMatchReward(), ["7"], answer=[7]) == [1.0]  # non-string golds compare as text


@pytest.mark.parametrize("extract, completion, gold, expected", [
    ("line", "42\nbecause reasons", "42", 1.0),
    ("line", "\n  42  \nmore", "42", 1.0),
    ("line", "because\n42", "42", 0.0),
    ("####", "3 + 4 = 7\n#### 7", "7", 1.0),
    ("####", "#### 6\ncorrection #### 7 ", "7", 1.0),
    ("####", "7", "7", 0.0),
    ("boxed", r"so \boxed{\frac{1}{2}}.", r"\frac{1}{2}", 1.0),
    ("boxed", r"\boxed{1} then \boxed{2}", "2", 1.0),
    ("boxed", r"\boxed{{a}{b}}", "{a}{b}", 1.0),
    ("boxed", r"\boxed{2", "2", 0.0),
    ("boxed", "no box", "no box", 0.0),
    ("answer_tag", "<think>x</think><answer> B </answer>", "B", 1.0),
    ("answer_tag", "<answer>A</answer> then <answer>B</answer>", "B", 1.0),
    ("answer_tag", "<answer>B", "B", 0.0),
    (lambda text: text[-1:], "the letter is C", "C", 1.0),
    (lambda text: None, "C", "C", 0.0),
])
def test_exact_match_extractors(extract, completion, gold, expected):
    assert score(ExactMatchReward(extract=extract), [completion], answer=[gold]) == [expected]


def test_exact_match_none_gold_is_not_applicable_and_missing_column_is_an_error():
    reward = ExactMatchReward()
    assert score(reward, ["a", "b"], answer=[None, "b"]) == [None, 1.0]
    with pytest.raises(RftgymError, match="column 'answer'"):
        score(reward, ["a"], label=["a"])
    assert score(ExactMatchReward(column="label"), ["a"], label=["a"]) == [1.0]
    with pytest.raises(ConfigError, match="extract"):
        ExactMatchReward(extract="last_number")


def test_exact_match_conversational_and_long_inputs_are_fast():
    reward = ExactMatchReward(extract="boxed")
    hostile = ["\\boxed{" * 20_000, "{" * 100_000 + "\\boxed{1}", "}" * 100_000]
    start = time.perf_counter()
    assert score(reward, hostile + [[{"role": "assistant", "content": r"\boxed{1}"}]], answer=["1"] * 4) == \
        [0.0, 1.0, 0.0, 1.0]
    assert time.perf_counter() - start < 2.0
    assert last_boxed("\\boxed{" * 3 + "x" + "}" * 3) == "x"


# -- through the registry -----------------------------------------------------------------------
def test_builtin_names_resolve_to_these_classes():
    fmt = rftgym.get_reward("format", tags=["answer"])
    assert fmt(["p"], ["<answer>1</answer>"]) == [1.0]
    assert isinstance(fmt.impl, FormatReward)
    length = rftgym.get_reward("length", max_length=10, cache_length=5)
    assert length(completions=["x" * 20]) == [-1.0]
    exact = rftgym.get_reward("exact_match", extract="####")
    assert exact(["p"], ["#### 3"], answer=["3"]) == [1.0]
    with pytest.raises(ConfigError, match="did you mean 'max_length'"):
        rftgym.get_reward("length", max_len=10, cache_length=5)
