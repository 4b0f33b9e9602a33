"""Prompt formatting: a ``"{prompt}"``-style template, and conversational rows.

A conversational row (TRL's format: the ``prompt`` column holds a list of ``{role, content}``
messages) becomes a :class:`Conversation`: a plain ``str`` (a readable transcript, what
rewards, logs and the text spaces see) that also carries its messages, so that whoever
applies the chat template — the policy by default, or the env when it is given a tokenizer
and ``chat_template=True`` — renders the real turns, not the transcript.
"""
from __future__ import annotations

import json
import string
from typing import Any, Sequence

from ..errors import ConfigError


class Conversation(str):
    """A list of chat messages that reads as a transcript string (``role: content`` lines)."""

    messages: list[dict[str, str]]

    def __new__(cls, messages: Sequence[dict[str, Any]]) -> "Conversation":
        checked = [_message(m, i) for i, m in enumerate(messages)]
        text = "\n".join(f"{m['role']}: {m['content']}" for m in checked)
        obj = super().__new__(cls, text)
        obj.messages = checked
        return obj

    def __reduce__(self):  # pickles (and deep-copies) with its messages
        return (Conversation, (self.messages,))

    def to_plain(self) -> dict[str, Any]:
        """JSON-safe form (checkpoints store observations as plain data)."""
        return {"messages": self.messages}


def _message(m: Any, i: int) -> dict[str, str]:
    if not isinstance(m, dict) or "role" not in m or "content" not in m:
        raise ConfigError(f"conversational prompt: message {i} is {m!r}; expected a mapping with 'role' and "
                          f"'content' (TRL's conversational format)")
    return {"role": str(m["role"]), "content": str(m["content"])}


def to_plain(prompt: Any) -> Any:
    """An observation as plain data: strings stay strings, conversations become a dict."""
    return prompt.to_plain() if isinstance(prompt, Conversation) else prompt


def from_plain(value: Any) -> Any:
    """Inverse of :func:`to_plain` (a JSON string of it is accepted too)."""
    if isinstance(value, dict) and "messages" in value:
        return Conversation(value["messages"])
    return value


def chat_messages(prompt: str, system_prompt: str | None = None) -> list[dict[str, str]]:
    """The messages a chat template renders for ``prompt``: its own turns for a
    :class:`Conversation`, else one user turn; ``system_prompt`` first unless one is there."""
    messages = list(prompt.messages) if isinstance(prompt, Conversation) else [{"role": "user", "content": str(prompt)}]
    if system_prompt and not any(m["role"] == "system" for m in messages):
        messages = [{"role": "system", "content": system_prompt}] + messages
    return messages


class Formatter:
    """Applies a ``"{prompt}"``-style template and/or the tokenizer's chat template."""

    def __init__(self, template: str | None = None, chat_template: bool = False, tokenizer: Any = None,
                 system_prompt: str | None = None, forbidden: Sequence[str] = ("answer",)) -> None:
        if template is not None:
            fields = {f.split(".")[0].split("[")[0] for _, f, _, _ in string.Formatter().parse(template) if f}
            leaked = sorted(fields & set(forbidden))
            if leaked:
                raise ConfigError(f"template uses {leaked[0]!r}, the gold answer column; the answer must not appear in the prompt")
        if chat_template and tokenizer is None:
            raise ConfigError("chat_template=True needs a tokenizer (pass tokenizer=...)")
        if isinstance(tokenizer, str):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        self.template, self.chat_template = template, chat_template
        self.tokenizer, self.system_prompt = tokenizer, system_prompt

    def __call__(self, prompt: Any, fields: dict[str, Any]) -> str:
        """The prompt text for a row (``fields`` are the raw row's values, for the template)."""
        if isinstance(prompt, str) and prompt.lstrip().startswith("[{"):
            prompt = _json_messages(prompt)  # a conversational column read from csv/parquet as text
        if isinstance(prompt, list):  # conversational rows, as TRL accepts them
            conversation = Conversation(prompt)
            if not self.chat_template:
                return conversation  # the policy applies the model's chat template to its messages
            return self._render(chat_messages(conversation, self.system_prompt))
        text = str(prompt)
        if self.template is not None:
            try:
                text = self.template.format_map({**fields, "prompt": text})
            except KeyError as exc:
                raise ConfigError(f"template field {exc.args[0]!r} is not a column; columns: {', '.join(sorted(fields))}") from None
        if not self.chat_template:
            return text
        return self._render(chat_messages(text, self.system_prompt))

    def _render(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _json_messages(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, list) and all(isinstance(m, dict) for m in value) else text
