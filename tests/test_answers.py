"""The one ``\\boxed``/``####`` extractor (rftgym/answers.py), and that envs, the format reward
and the math reward all read answers through it."""
from __future__ import annotations

import pytest

from rftgym import answers
from rftgym.answers import boxed_all, extract_answer, hash_answer, last_boxed, peel_box


@pytest.mark.parametrize("text, expected", [
    ("so \\boxed{\\boxed{7}-2} is it", "\\boxed{7}-2"),     # the outer box is the answer
    ("\\boxed{\\boxed{\\boxed{11}}}", "11"),               # wrappers of one box are peeled
    ("\\fbox{\\boxed{x+1}}", "x+1"),
    ("first \\boxed{3}, then \\boxed{\\frac{1}{4}}", "\\frac{1}{4}"),
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),                  # escaped braces are not groups
    ("The result is \\boxed 12 today", "12"),
    ("\\boxed{ 5 ", None),                                   # unclosed
    ("no box here", None),
])
def test_last_boxed_pins_nesting_and_escapes(text, expected):
    assert last_boxed(text) == expected


def test_boxes_inside_a_box_are_not_separate_answers():
    boxes = boxed_all("a \\boxed{\\boxed{2}+\\boxed{3}} b \\boxed{4}")
    assert [b[0] for b in boxes] == ["\\boxed{2}+\\boxed{3}", "4"]
    assert peel_box("\\boxed{2}+\\boxed{3}") == "\\boxed{2}+\\boxed{3}"


def test_a_longer_command_is_not_a_box():
    assert boxed_all("\\boxedcolor{3}") == []


@pytest.mark.parametrize("text, expected", [
    ("Add them.\n#### 1,250", "1,250"),
    ("#### 3\nThe answer is: 3", "3"),                      # only the line after ####
    ("#### 5 ... #### 6", "6"),                              # the last ####
    ("####\n  -8 ", "-8"),
    ("#### ", None),
    ("no marker", None),
])
def test_hash_answer(text, expected):
    assert hash_answer(text) == expected


def test_extract_answer_formats():
    assert extract_answer("so 1000+250\n#### 1,250") == "1250"      # gsm8k drops thousands commas
    assert extract_answer("Hence $\\boxed{\\boxed{9}+1}$.") == "\\boxed{9}+1"
    assert extract_answer("  \\frac{2}{5} ") == "\\frac{2}{5}"
    assert extract_answer("#### 4", "raw") == "#### 4"
    with pytest.raises(ValueError, match="answer_format must be one of"):
        extract_answer("4", "latex")


def test_every_reader_uses_the_one_scanner():
    """envs (gold columns), the format reward and the math reward agree on a nested box."""
    from rftgym.envs import sources
    from rftgym.rewards import format as format_reward
    from rftgym.rewards.math import extract as math_extract

    assert sources.extract_answer is answers.extract_answer
    assert format_reward.last_boxed is answers.last_boxed
    assert math_extract.boxed_all is answers.boxed_all
    text = "We get \\boxed{\\boxed{4}\\cdot 3}."
    assert math_extract.extract(text).text == last_boxed(text) == "\\boxed{4}\\cdot 3"
    assert math_extract.unwrap_gold("work\n#### 12\n") == hash_answer("work\n#### 12\n") == "12"
    assert math_extract.extract("#### 12\nso twelve").text == "12"


def test_no_other_module_scans_boxes_or_hashes():
    """The scanning code lives in answers.py only: other modules may name the markers in
    patterns and docs, but none re-implements the brace matching."""
    from pathlib import Path

    root = Path(answers.__file__).resolve().parent
    offenders = []
    for path in root.rglob("*.py"):
        if "tests" in path.parts or path.name == "answers.py":
            continue
        src = path.read_text(encoding="utf-8")
        if "def _brace_matches" in src or 'rsplit("####"' in src or "def last_boxed" in src:
            offenders.append(str(path.relative_to(root)))
    assert not offenders

