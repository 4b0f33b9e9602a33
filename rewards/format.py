"""Format rewards: tag structure / regex, DAPO overlong length shaping, exact match.

Every reward follows the TRL protocol ``reward(prompts=..., completions=..., **columns)`` and
accepts plain-text completions or TRL's conversational ones
(``[{"role": "assistant", "content": "..."}]``), whose assistant content is scored.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Sequence

from ..answers import last_boxed  # the one box scanner (rftgym/answers.py)
from ..errors import ConfigError, RftgymError

_TAG = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]*")


def completion_text(completion: Any) -> str:
    """The text of one completion: a string as is, or the content of a conversational one.

    For a list of messages the last assistant message counts (the last message when none
    has a role); list-of-parts contents (``[{"type": "text", "text": ...}]``) are joined.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return _content(completion.get("content"))
    if isinstance(completion, Sequence) and completion and all(isinstance(m, Mapping) for m in completion):
        assistant = [m for m in completion if m.get("role") == "assistant"]
        return _content((assistant or list(completion))[-1].get("content"))
    if completion is None:
        return ""
    raise RftgymError(f"a completion must be a string or a list of chat messages, got {type(completion).__name__}")


def _content(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):  # multimodal parts: keep the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return str(content)


class FormatReward:
    """``score`` when a completion has the required structure, else 0.0.

    Default (``pattern=None``): the completion is, apart from surrounding whitespace, exactly
    ``<think>…</think>`` then ``<answer>…</answer>`` separated by whitespace only, each tag
    appearing once (the structure of TRL's/open-r1's format reward; ``tags`` sets the tag
    names and their order). This check uses string searches, not a regex, so it runs in
    linear time on any input, however long or hostile.

    With ``pattern`` (a regex string, compiled once with DOTALL), the completion must match
    it entirely (``match="full"``) or contain a match (``match="search"``). Python's regex
    engine backtracks: prefer patterns without nested quantifiers (``(a+)+``) or several
    unbounded ``.*?`` in a row. Completions longer than ``max_chars`` are not scanned and
    score 0.0, which bounds the time any pattern can take.
    """

    def __init__(self, pattern: str | None = None, tags: Sequence[str] = ("think", "answer"),
                 score: float = 1.0, match: str = "full", max_chars: int = 100_000) -> None:
        if match not in ("full", "search"):
            raise ConfigError(f"format reward: match must be 'full' or 'search', got {match!r}")
        if not isinstance(max_chars, int) or max_chars <= 0:
            raise ConfigError(f"format reward: max_chars must be a positive integer, got {max_chars!r}")
        self.score = float(score)
        self.max_chars = max_chars
        self.tags = tuple(tags)
        self._regex: re.Pattern[str] | None = None
        if pattern is not None:
            try:
                self._regex = re.compile(pattern, re.DOTALL)
            except re.error as exc:
                raise ConfigError(f"format reward: invalid pattern {pattern!r}: {exc}") from exc
            self._match = self._regex.fullmatch if match == "full" else self._regex.search
        else:
            if not self.tags or isinstance(tags, str):
                raise ConfigError(f"format reward: tags must be a non-empty list of tag names, got {tags!r}")
            for tag in self.tags:
                if not isinstance(tag, str) or not _TAG.fullmatch(tag):
                    raise ConfigError(f"format reward: invalid tag name {tag!r}")
            if len(set(self.tags)) != len(self.tags):
                raise ConfigError(f"format reward: tags repeat: {tags!r}")

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        return [self.score if self.matches(completion_text(c)) else 0.0 for c in completions]

    def matches(self, text: str) -> bool:
        """Whether ``text`` has the required structure."""
        if len(text) > self.max_chars:
            return False
        if self._regex is not None:
            return self._match(text) is not None
        return _tag_structure(text.strip(), self.tags)


def _tag_structure(text: str, tags: tuple[str, ...]) -> bool:
    """``<t1>…</t1> <t2>…</t2> …`` exactly, each tag once, only whitespace between blocks."""
    # Blocks must tile the text: a tag inside a block, text between blocks, or a block before
    # or after the expected ones all fail, so each tag appears exactly once.
    pos = 0
    for tag in tags:
        open_tag, close_tag = f"<{tag}>", f"</{tag}>"
        if not text.startswith(open_tag, pos):
            return False
        end = text.find(close_tag, pos + len(open_tag))
        if end < 0:
            return False
        inner = text[pos + len(open_tag):end]
        if any(f"<{t}>" in inner or f"</{t}>" in inner for t in tags):
            return False  # another block opened inside this one
        pos = end + len(close_tag)
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return pos == len(text)


class LengthReward:
    """DAPO's overlong reward shaping (Yu et al., 2025, eq. 13), scaled by ``penalty``.

    With ``L = max_length``, ``C = cache_length`` and ``|y|`` the completion length::

        R(y) = 0                        if |y| <= L - C
             = ((L - C) - |y|) / C      if L - C < |y| <= L      (linear from 0 down to -1)
             = -1                       if |y| > L

    times ``penalty``. ``unit="chars"`` counts characters; ``unit="tokens"`` counts tokens
    with ``tokenizer`` (a tokenizer object with ``encode``, a callable returning tokens, or a
    Hugging Face name loaded on first use) or, without one, the lengths of the
    ``completion_ids`` column that TRL passes to rewards (the policy's own tokens).
    """

    def __init__(self, max_length: int, cache_length: int, penalty: float = 1.0, unit: str = "chars",
                 tokenizer: Any = None) -> None:
        if not isinstance(max_length, int) or max_length <= 0:
            raise ConfigError(f"length reward: max_length must be a positive integer, got {max_length!r}")
        if not isinstance(cache_length, int) or not 0 <= cache_length <= max_length:
            raise ConfigError(f"length reward: cache_length must be an integer in [0, max_length={max_length}], "
                              f"got {cache_length!r}")
        if unit not in ("chars", "tokens"):
            raise ConfigError(f"length reward: unit must be 'chars' or 'tokens', got {unit!r}")
        if penalty < 0:
            raise ConfigError(f"length reward: penalty must be >= 0 (it is subtracted), got {penalty!r}")
        if unit == "chars" and tokenizer is not None:
            raise ConfigError("length reward: a tokenizer needs unit='tokens'")
        self.max_length = max_length
        self.cache_length = cache_length
        self.penalty = float(penalty)
        self.unit = unit
        self.tokenizer = tokenizer

    def setup(self) -> None:
        """Load a tokenizer given by name (transformers is imported only here)."""
        if isinstance(self.tokenizer, str):
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(self.tokenizer)

    def shape(self, length: int) -> float:
        """The shaped reward for a completion of ``length`` units."""
        soft = self.max_length - self.cache_length
        if length <= soft:
            return 0.0
        if length > self.max_length:
            return -self.penalty
        return self.penalty * (soft - length) / self.cache_length

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        return [self.shape(n) for n in self.lengths(completions, columns.get("completion_ids"))]

    def lengths(self, completions: Sequence[Any], completion_ids: Sequence[Sequence[int]] | None = None) -> list[int]:
        """Completion lengths in this reward's unit."""
        if self.unit == "chars":
            return [len(completion_text(c)) for c in completions]
        if self.tokenizer is None:
            if completion_ids is None:
                raise RftgymError("length reward with unit='tokens' needs a tokenizer option or the "
                                  "'completion_ids' column")
            return [len(ids) for ids in completion_ids]
        if isinstance(self.tokenizer, str):
            self.setup()
        return [len(self._encode(completion_text(c))) for c in completions]

    def _encode(self, text: str) -> Sequence[Any]:
        tok = self.tokenizer
        if hasattr(tok, "encode"):
            try:  # Hugging Face: count the completion's own tokens, not BOS/EOS added around it
                return tok.encode(text, add_special_tokens=False)
            except TypeError:
                return tok.encode(text)
        out = tok(text)
        return out["input_ids"] if isinstance(out, Mapping) else out


_EXTRACTORS = ("line", "####", "boxed", "answer_tag")


class ExactMatchReward:
    """1.0 when the completion (or the part ``extract`` selects) equals the gold answer, else 0.0.

    ``extract``: None (the whole completion), ``"line"`` (up to the first newline), ``"####"``
    (after the last ``####``, GSM8K style), ``"boxed"`` (inside the last ``\\boxed{…}``),
    ``"answer_tag"`` (inside the last ``<answer>…</answer>``), or a callable
    ``str -> str | None``. Nothing to extract scores 0.0. Both sides are stripped of
    surrounding whitespace when ``strip`` and compared case-folded unless ``case_sensitive``.
    The gold answer is the column ``column`` (default ``answer``); a ``None`` gold makes the
    sample not applicable (``None``). No math equivalence here: use the ``math`` reward.
    """

    def __init__(self, strip: bool = True, case_sensitive: bool = True,
                 extract: str | Callable[[str], str | None] | None = None, column: str = "answer") -> None:
        if extract is not None and not callable(extract) and extract not in _EXTRACTORS:
            raise ConfigError(f"exact_match: extract must be None, a callable or one of {', '.join(_EXTRACTORS)}; "
                              f"got {extract!r}")
        self.strip = strip
        self.case_sensitive = case_sensitive
        self.extract = extract
        self.column = column

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float | None]:
        if self.column not in columns:
            have = ", ".join(sorted(columns)) or "(none)"
            raise RftgymError(f"exact_match needs the gold answers in column {self.column!r}; columns given: {have}")
        golds = columns[self.column]
        out: list[float | None] = []
        for completion, gold in zip(completions, golds):
            if gold is None:
                out.append(None)
                continue
            found = self.extracted(completion_text(completion))
            out.append(1.0 if found is not None and self._norm(found) == self._norm(str(gold)) else 0.0)
        return out

    def extracted(self, text: str) -> str | None:
        """The part of ``text`` compared with the gold answer (None: nothing to compare)."""
        if self.extract is None:
            return text
        if callable(self.extract):
            return self.extract(text)
        if self.extract == "line":
            return text.strip().split("\n", 1)[0] if self.strip else text.split("\n", 1)[0]
        if self.extract == "####":
            head, sep, tail = text.rpartition("####")
            return tail if sep else None
        if self.extract == "answer_tag":
            end = text.rfind("</answer>")
            start = text.rfind("<answer>", 0, end) if end >= 0 else -1
            return text[start + len("<answer>"):end] if start >= 0 else None
        return last_boxed(text)

    def _norm(self, text: str) -> str:
        if self.strip:
            text = text.strip()
        return text if self.case_sensitive else text.casefold()
