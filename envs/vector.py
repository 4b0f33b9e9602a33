"""``PromptBanditVectorEnv``: a natively batched bandit env with GRPO groups of identical prompts."""
from __future__ import annotations

import copy
import threading
import warnings
from typing import Any

import numpy as np
from gymnasium.error import AlreadyPendingCallError, NoAsyncCallError, ResetNeeded
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .bandit import MAX_CHARS, DrawCursor
from .scoring import Scorer, check_completions
from .source_kwargs import build_source
from .sources import Row
from .spaces import AnyText


CLOSE_WAIT_S = 60.0  # longest close() waits for a scoring thread (rewards' own timeouts are shorter)
_IMMUTABLE = (str, int, float, bool, type(None), np.generic)


def _copy(value: Any) -> Any:
    """A copy the caller (or a reward) may mutate without touching the env's rows; immutable
    values, by far the common case, need none (deep-copying them cost ~1 ms a step)."""
    return value if isinstance(value, _IMMUTABLE) else copy.deepcopy(value)


class PromptBanditVectorEnv(VectorEnv):
    """``num_envs // group_size`` prompts per batch, each repeated ``group_size`` times, contiguous.

    Every step terminates every sub-env and the batch is scored with one reward-pipeline call;
    autoreset is ``SAME_STEP``: ``step`` returns the *next* prompts as observations and the
    scored batch in ``info["scored"]`` (``prompts``, ``completions``, ``columns``, ``group_id``,
    ``per_reward``, ``faults``, ``correct``). ``reset``/``step`` infos describe the current
    prompts: ``group_id`` (int array), ``row`` (one metadata dict per sub-env) and ``columns``
    (per-sample lists, as rewards receive them).
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, num_envs: int, group_size: int = 1, *, reward: Any = None, check: Any = "auto",
                 reward_resolver: Any = None, render_mode: str | None = None, max_prompt_chars: int = MAX_CHARS,
                 max_completion_chars: int = MAX_CHARS, **source_kwargs: Any) -> None:
        if not isinstance(group_size, (int, np.integer)) or group_size < 1:
            raise ValueError(f"group_size must be a positive int, got {group_size!r}")
        if not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        if num_envs % group_size:
            raise ValueError(f"num_envs={num_envs} is not divisible by group_size={group_size}: "
                             f"num_envs must be (prompts per batch) x group_size")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.num_envs, self.group_size = int(num_envs), int(group_size)
        self.num_prompts = self.num_envs // self.group_size
        self.render_mode = render_mode
        self.source = build_source(**source_kwargs)
        # The system turn for whoever applies the chat template: the source does when the env
        # has ``chat_template=True``; otherwise the runner hands it to the policy.
        self.system_prompt: str | None = source_kwargs.get("system_prompt")
        self.scorer = Scorer(reward, check, self.source.default_reward, self.source.checker, reward_resolver)
        self.single_observation_space = AnyText(max_prompt_chars)
        self.single_action_space = AnyText(max_completion_chars)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._cursor = DrawCursor(self.source, max_prompt_chars)
        self._batch: list[Row] | None = None  # one Row per sub-env
        self._last_scored: dict[str, Any] | None = None
        self._restored = False
        self._pending: tuple | None = None  # step_async's done event, result box and inputs

    # -- batches --------------------------------------------------------------------------------
    def _draw(self) -> None:
        rows = self._cursor.draw(self.np_random, self.num_prompts)
        self._batch = [row for row in rows for _ in range(self.group_size)]

    def _obs_info(self) -> tuple[tuple[str, ...], dict[str, Any]]:
        batch = self._batch
        names = list(dict.fromkeys(k for row in batch for k in row.columns))
        info = {
            "group_id": np.repeat(np.arange(self.num_prompts), self.group_size),
            "row": [{k: _copy(v) for k, v in row.columns.items()} for row in batch],
            "columns": {k: [_copy(row.columns.get(k)) for row in batch] for k in names},
        }
        return tuple(row.prompt for row in batch), info

    # -- Gymnasium API --------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[tuple[str, ...], dict[str, Any]]:
        """Draw the next prompts (a seeded reset restarts the data order as well as the RNG)."""
        if self._pending is not None:  # a step_async never waited for: its scores are dropped
            self._pending[0].wait()
            self._pending = None
        super().reset(seed=seed)
        if seed is not None:
            self.source.restart()
        if not (self._restored and seed is None):
            self._draw()
        self._restored = False
        return self._obs_info()

    def step(self, actions: Any) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Score ``actions`` (``num_envs`` completion strings) in one pipeline call, then draw
        the next prompts (``SAME_STEP`` autoreset)."""
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: Any) -> None:
        """Start scoring ``actions`` on a worker thread and return at once (as in Gymnasium's
        ``AsyncVectorEnv``); :meth:`step_wait` returns what :meth:`step` would have.

        The math checker's processes and a reward model's forward release the GIL, so the
        caller's forwards that need no rewards (reference, critic) run meanwhile.
        """
        if self._batch is None:
            raise ResetNeeded("call reset() before step()")
        if self._pending is not None:
            raise AlreadyPendingCallError("step_async() called again before step_wait()", "step")
        completions = check_completions(actions, self.num_envs)
        prompts, scored_info = self._obs_info()
        box: dict[str, Any] = {}
        done = threading.Event()

        def score() -> None:
            try:
                box["value"] = self.scorer(prompts, completions, scored_info["columns"], scored_info["group_id"])
            except BaseException as exc:  # raised in the caller's thread by step_wait
                box["error"] = exc
            finally:
                done.set()

        # A daemon thread, not an executor: those are joined at exit, so a reward stuck in C
        # code would hang shutdown after Ctrl-C. Waits use the event, not join(): an
        # interrupted join() (Python < 3.13) marks a still-running thread as finished.
        threading.Thread(target=score, name="rftgym-score", daemon=True).start()
        self._pending = (done, box, prompts, completions, scored_info)

    def step_wait(self) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Wait for the scoring started by :meth:`step_async`; the next prompts are drawn here."""
        if self._pending is None:
            raise NoAsyncCallError("step_wait() called without a pending step_async()", "step")
        done, box, prompts, completions, scored_info = self._pending
        done.wait()  # interrupted (Ctrl-C): the step stays pending for close() or reset()
        self._pending = None
        if "error" in box:
            raise box["error"]
        total, per_reward, faults, correct = box["value"]
        self.source.record(self._batch, correct, total)  # still the scored batch: the next is drawn below
        scored = {"prompts": list(prompts), "completions": completions, "columns": scored_info["columns"],
                  "group_id": scored_info["group_id"], "per_reward": per_reward, "faults": faults, "correct": correct,
                  "metrics": self.source.metrics()}
        self._last_scored = {"prompts": list(prompts), "completions": completions, "rewards": total.copy()}
        self._draw()
        self._restored = False
        obs, info = self._obs_info()
        info["scored"] = scored
        terminated = np.ones(self.num_envs, dtype=np.bool_)
        truncated = np.zeros(self.num_envs, dtype=np.bool_)
        return obs, total, terminated, truncated, info

    def render(self) -> str | None:
        """``ansi``: the last scored prompts, completions and rewards, one line each."""
        if self.render_mode != "ansi":
            return None
        if self._last_scored is None:
            return "".join(f"[{i}] prompt: {row.prompt!r}\n" for i, row in enumerate(self._batch or []))
        s = self._last_scored
        return "".join(f"[{i}] prompt: {p!r} completion: {c!r} reward: {r:g}\n"
                       for i, (p, c, r) in enumerate(zip(s["prompts"], s["completions"], s["rewards"])))

    def close_extras(self, **kwargs: Any) -> None:
        """Release the rewards' resources, after the scoring in flight (waiting at most
        ``CLOSE_WAIT_S``: shutting down must not hang on a stuck reward)."""
        if self._pending is not None:
            if not self._pending[0].wait(CLOSE_WAIT_S):
                warnings.warn(f"closing the env while a reward has been scoring for over {CLOSE_WAIT_S:g}s; "
                              "its thread is left to finish on its own", RuntimeWarning, stacklevel=2)
            self._pending = None
        self.scorer.close()

    # -- resumption -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable RNG state and data position from just before the current prompts
        were drawn, so a restored env shows the same prompts and continues identically."""
        return self._cursor.state_dict(self.np_random)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the next ``reset()`` without a seed returns the prompts the
        saved env was showing (``step`` may also be called directly)."""
        self._np_random = self._cursor.load_state_dict(state)
        self._batch, self._restored = None, False
        if state["pending"]:
            self._draw()
            self._restored = True
