"""Tools for multi-turn envs: plain Python functions the model calls by emitting a tool call."""
from __future__ import annotations

from .calculator import CalculatorError, calc
from .calls import TAG, ToolCall, ToolRunner, parse_tool_call, tool_schema
from .wrapper import ToolEnv

__all__ = ["CalculatorError", "TAG", "ToolCall", "ToolEnv", "ToolRunner", "calc", "parse_tool_call", "tool_schema"]
