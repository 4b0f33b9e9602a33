"""Finding a tool call in the model's text, running the tool safely, and phrasing the result.

Two call formats:

* ``tag`` (the tiny character model): ``<tool>calc(12*34)</tool>``; the text between the
  parentheses is the tool's first argument, converted to its type hint.
* ``json`` (chat models; the Hermes/Qwen format their chat templates teach):
  ``<tool_call>{"name": "calc", "arguments": {"expression": "12*34"}}</tool_call>``.

Tools are plain functions with type hints and a Google-style docstring: the format
``transformers.utils.get_json_schema`` reads and chat templates render for ``tools=``. A tool
that raises, returns too much or runs past its timeout becomes an error observation; a
malformed call or an unknown tool name too. Nothing the model writes is evaluated as code.
"""
from __future__ import annotations

import inspect
import json
import re
import threading
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

TAG = "tag"
JSON = "json"
FORMATS = (TAG, JSON)
_TAG_CALL = re.compile(r"<tool>(.*?)</tool>", re.S)
_TAG_BODY = re.compile(r"\s*([A-Za-z_]\w*)\s*\((.*)\)\s*", re.S)
_JSON_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)
MAX_RESULT_CHARS = 2000


@dataclass
class ToolCall:
    """A parsed call (``error`` set when the call was malformed)."""

    name: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    raw: str = ""
    error: str | None = None


def tool_schema(fn: Callable[..., Any]) -> dict[str, Any]:
    """The JSON schema of ``fn`` that chat templates render (``transformers.utils.get_json_schema``)."""
    from transformers.utils import get_json_schema

    return get_json_schema(fn)


def _first_param(fn: Callable[..., Any]) -> tuple[str, Any]:
    params = list(inspect.signature(fn).parameters.values())
    if not params:
        return "", str
    hints = typing.get_type_hints(fn)
    return params[0].name, hints.get(params[0].name, str)


def parse_tool_call(text: str, fmt: str, tools: dict[str, Callable[..., Any]]) -> ToolCall | None:
    """The first tool call in ``text`` (None when there is none)."""
    if fmt == TAG:
        m = _TAG_CALL.search(text)
        if m is None:
            return None
        body = _TAG_BODY.fullmatch(m.group(1))
        if body is None:
            return ToolCall(raw=m.group(0), error="malformed tool call; expected <tool>name(argument)</tool>")
        name, arg = body.group(1), body.group(2)
        if name not in tools:
            return ToolCall(name=name, raw=m.group(0))
        pname, ptype = _first_param(tools[name])
        if not pname:
            return ToolCall(name=name, raw=m.group(0))
        try:
            value = ptype(arg) if ptype in (int, float) else arg
        except ValueError:
            return ToolCall(name=name, raw=m.group(0), error=f"argument {arg!r} is not a valid {ptype.__name__}")
        return ToolCall(name=name, arguments={pname: value}, raw=m.group(0))
    m = _JSON_CALL.search(text)
    if m is None:
        return None
    try:
        payload = json.loads(m.group(1))
    except json.JSONDecodeError as exc:
        return ToolCall(raw=m.group(0), error=f"malformed tool call JSON: {exc.msg}")
    if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
        return ToolCall(raw=m.group(0), error='malformed tool call; expected {"name": ..., "arguments": {...}}')
    args = payload.get("arguments", {})
    if isinstance(args, str):  # some models write the arguments as a JSON string
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            pass
    if not isinstance(args, dict):
        return ToolCall(name=payload["name"], raw=m.group(0), error="tool call arguments must be an object")
    return ToolCall(name=payload["name"], arguments=args, raw=m.group(0))


class ToolRunner:
    """Runs parsed calls against ``tools`` with a timeout; every outcome is a string."""

    def __init__(self, tools: list[Callable[..., Any]] | dict[str, Callable[..., Any]], fmt: str = TAG,
                 timeout: float = 2.0) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"tool call format must be one of {FORMATS}, got {fmt!r}")
        self.tools = dict(tools) if isinstance(tools, dict) else {fn.__name__: fn for fn in tools}
        for name, fn in self.tools.items():
            if not callable(fn):
                raise TypeError(f"tool {name!r} is not callable")
        self.fmt, self.timeout = fmt, float(timeout)

    def schemas(self) -> list[dict[str, Any]]:
        """The tools' JSON schemas (for a chat template's ``tools=``)."""
        return [tool_schema(fn) for fn in self.tools.values()]

    def find(self, text: str) -> ToolCall | None:
        """The call in ``text``, if any."""
        return parse_tool_call(text, self.fmt, self.tools)

    def run(self, call: ToolCall) -> tuple[str, bool]:
        """``(result text, ok)``: the tool's result, or ``error: ...`` (ok False)."""
        if call.error is not None:
            return f"error: {call.error}", False
        fn = self.tools.get(call.name)
        if fn is None:
            return f"error: unknown tool {call.name!r}; available: {', '.join(sorted(self.tools))}", False
        box: dict[str, Any] = {}
        done = threading.Event()

        def target() -> None:
            try:
                box["value"] = fn(**call.arguments)
            except BaseException as exc:  # the tool's failure is the model's observation
                box["error"] = exc
            finally:
                done.set()

        # A daemon thread: a tool stuck in C code cannot hang the run or its shutdown.
        threading.Thread(target=target, name=f"rftgym-tool-{call.name}", daemon=True).start()
        if not done.wait(self.timeout):
            return f"error: tool {call.name!r} timed out after {self.timeout:g}s", False
        if "error" in box:
            exc = box["error"]
            return f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(), False
        text = str(box["value"])
        if len(text) > MAX_RESULT_CHARS:
            return f"error: tool {call.name!r} returned {len(text)} characters, more than {MAX_RESULT_CHARS}", False
        return text, True

    def observation(self, result: str) -> str | dict[str, str]:
        """The env's reply carrying ``result``: a ``<result>`` tag, or a ``tool`` message."""
        if self.fmt == TAG:
            return f"<result>{result}</result>"
        return {"role": "tool", "content": result}
