"""``ToolEnv``: give any text env's model a set of tools (a ``gymnasium.Wrapper``)."""
from __future__ import annotations

from typing import Any, Callable

import gymnasium

from .calls import TAG, ToolRunner


class ToolEnv(gymnasium.Wrapper):
    """Wraps a text env: a completion that holds a tool call runs the tool, and the result is
    the observation of a non-terminal step (reward 0); any other completion goes to the wrapped
    env's ``step`` as its answer. At most ``max_calls`` calls per episode; past that, the
    completion is passed on as the answer. ``info`` counts ``tool_calls`` and ``tool_errors``.

    ``fmt``: ``"tag"`` (``<tool>calc(1+2)</tool>``, replies ``<result>3</result>``) or
    ``"json"`` (``<tool_call>{...}</tool_call>``, replies ``{"role": "tool", ...}`` messages
    for the chat template). The tools' descriptions are in ``system_prompt`` for the model.
    """

    def __init__(self, env: gymnasium.Env, tools: list[Callable[..., Any]], fmt: str = TAG, max_calls: int = 4,
                 timeout: float = 2.0) -> None:
        super().__init__(env)
        self.runner = ToolRunner(tools, fmt, timeout)
        self.max_calls = int(max_calls)
        self.calls = self.errors = 0

    @property
    def system_prompt(self) -> str:
        """The tools' JSON schemas, for a chat model's system turn."""
        import json

        return "You may call these tools:\n" + "\n".join(json.dumps(s) for s in self.runner.schemas())

    def reset(self, **kwargs: Any):
        self.calls = self.errors = 0
        return self.env.reset(**kwargs)

    def step(self, action: str):
        call = self.runner.find(action) if self.calls < self.max_calls else None
        if call is None:
            obs, reward, terminated, truncated, info = self.env.step(action)
            return obs, reward, terminated, truncated, {**info, "tool_calls": self.calls, "tool_errors": self.errors}
        self.calls += 1
        result, ok = self.runner.run(call)
        self.errors += not ok
        return (self.runner.observation(result), 0.0, False, False,
                {"tool_calls": self.calls, "tool_errors": self.errors})
