"""The ``code`` reward: a completion's Python runs against the row's unit tests in a sandbox.

The dataset carries ``tests`` (assert lines, a list of them, ``test_*`` functions, or
HumanEval's ``check(candidate)`` with ``entry_point``). The code is the last fenced
``python`` block of the completion (or the last fenced block, or the whole text). Each
program runs in its own sandboxed child (``code_sandbox``); up to ``workers`` run at once.
Nothing of the completion is ever evaluated in this process.
"""
from __future__ import annotations

import ast
import logging
import queue
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from ..errors import ConfigError, RftgymError
from .code_sandbox import RunResult, SandboxLimits, isolation, run_program
from .format import completion_text
from .math.pool import default_workers

logger = logging.getLogger(__name__)

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.S)
MAX_CODE_CHARS = 100_000


def extract_code(text: str) -> str:
    """The program in a completion: the last ```python (or ```py) block, else the last fenced
    block, else the whole text (an unclosed final fence counts as closed at the end)."""
    blocks = _FENCE.findall(text)
    if not blocks:
        head, sep, tail = text.rpartition("```")
        if sep and tail.strip():  # an unclosed fence: the model ran out of tokens inside it
            lang, _, body = tail.partition("\n")
            return body if lang.strip().isidentifier() or not lang.strip() else tail
        return text
    python = [body for lang, body in blocks if lang.lower() in ("python", "py", "python3")]
    return (python or [body for _, body in blocks])[-1]


def _parses(code: str) -> bool:
    """Whether ``code`` is syntactically valid Python. ``ast.parse`` only parses (it runs
    nothing); input too deep for the parser is left to the sandbox to judge."""
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    except (RecursionError, MemoryError, ValueError):
        return True
    return True


def _default_workers() -> int:
    # Programs mostly wait (timeouts, start-up), so twice the cores keeps the CPUs busy.
    return max(2, min(2 * default_workers(), 16))


class CodeReward:
    """Fraction of the row's tests the completion's code passes (``mode="fraction"``), or 1.0
    only when all pass (``mode="all"``). Rows whose ``tests`` value is None are not applicable
    (None); tests that do not parse, a completion without code, a crash or a timeout score 0.

    Options: ``timeout`` (wall-clock seconds per program), ``cpu_seconds``, ``memory_mb``,
    ``file_size_mb``, ``open_files``, ``processes`` (per-program limits), ``workers``
    (programs run at once), ``tests_column``, ``entry_point_column``.
    """

    def __init__(self, mode: str = "fraction", timeout: float = 5.0, cpu_seconds: int = 4, memory_mb: int = 512,
                 file_size_mb: int = 8, open_files: int = 64, processes: int = 16, workers: int | None = None,
                 tests_column: str = "tests", entry_point_column: str = "entry_point") -> None:
        if mode not in ("fraction", "all"):
            raise ConfigError(f"code reward: mode must be 'fraction' or 'all', got {mode!r}")
        if not timeout or timeout <= 0:
            raise ConfigError(f"code reward: timeout must be > 0 seconds, got {timeout!r}")
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise ConfigError(f"code reward: workers must be a positive integer, got {workers!r}")
        self.mode = mode
        self.limits = SandboxLimits(timeout=float(timeout), cpu_seconds=int(cpu_seconds), memory_mb=int(memory_mb),
                                    file_size_mb=int(file_size_mb), open_files=int(open_files),
                                    processes=int(processes))
        self.workers = workers or _default_workers()
        self.tests_column, self.entry_point_column = tests_column, entry_point_column
        self.stats = {"programs": 0, "timeouts": 0, "errors": 0}
        self.last_results: list[RunResult | None] = []
        self._executor: ThreadPoolExecutor | None = None
        self._slots: queue.Queue[int] = queue.Queue()

    def setup(self) -> None:
        """Start the thread pool (each thread runs one sandboxed program at a time)."""
        if self._executor is None:
            self._slots = queue.Queue()
            for slot in range(self.workers):
                self._slots.put(slot)
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="rftgym-code")
            name, _, _ = isolation()
            logger.info("code reward: %d workers, isolation %s", self.workers, name)

    def close(self) -> None:
        """Wait for running programs and stop the threads."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _run(self, code: str, tests: str, entry_point: str | None) -> RunResult:
        slot = self._slots.get()  # one uid per concurrent program (see code_sandbox)
        try:
            return run_program(code, tests, entry_point, self.limits, slot)
        finally:
            self._slots.put(slot)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float | None]:
        if self.tests_column not in columns:
            have = ", ".join(sorted(columns)) or "(none)"
            raise ConfigError(f"code reward needs the unit tests in column {self.tests_column!r}; columns given: {have}")
        self.setup()
        tests_values = columns[self.tests_column]
        entry_points = columns.get(self.entry_point_column) or [None] * len(completions)
        futures: list[Any] = []
        seen: dict[tuple[str, str, str | None], Any] = {}  # GRPO groups repeat completions: run each once
        for completion, tests, entry in zip(completions, tests_values, entry_points):
            if tests is None:
                futures.append(None)
                continue
            if isinstance(tests, (list, tuple)):
                tests = "\n".join(str(t) for t in tests)
            code = extract_code(completion_text(completion))
            if not code.strip() or len(code) > MAX_CODE_CHARS or not str(tests).strip():
                futures.append(RunResult(status="error: no code" if not code.strip() else "error: not run"))
                continue
            entry = entry if isinstance(entry, str) and entry.isidentifier() else None
            if not _parses(code):  # a syntax error fails every test: no process needed
                futures.append(RunResult(status="error: code does not parse"))
                continue
            key = (code, str(tests), entry)
            if key not in seen:
                seen[key] = self._executor.submit(self._run, code, str(tests), entry)  # type: ignore[union-attr]
            futures.append(seen[key])
        results = [f if f is None or isinstance(f, RunResult) else f.result() for f in futures]
        self.last_results = results
        return [None if r is None else self._score(r) for r in results]

    def _score(self, result: RunResult) -> float:
        self.stats["programs"] += 1
        if result.status == "timeout":
            self.stats["timeouts"] += 1
        elif result.status != "ok":
            self.stats["errors"] += 1
        if result.total <= 0:
            return 0.0
        if self.mode == "all":
            return 1.0 if result.passed == result.total else 0.0
        return result.passed / result.total

    def __del__(self) -> None:  # threads only; programs are never left running by a call
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


def run_tests(code: str, tests: str | Sequence[str], entry_point: str | None = None, **limits: Any) -> RunResult:
    """Run one program against its tests in the sandbox (a convenience for scripts and tests)."""
    if not isinstance(tests, str):
        tests = "\n".join(tests)
    try:
        sandbox_limits = SandboxLimits(**limits)
    except TypeError as exc:
        raise RftgymError(f"run_tests: {exc}") from None
    return run_program(code, tests, entry_point, sandbox_limits)
