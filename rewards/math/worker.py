"""The checker worker process: limits itself, then answers check requests over a pipe.

Run as ``python -m rftgym.rewards.math.worker READ_FD WRITE_FD MEMORY_MB`` by ``pool``:
a fresh interpreter, never forked from a parent that runs torch threads. Each request is ``(gold, pred, options)``; each reply is
``(verdict, reason)``. The parent enforces the time limit by killing the process; the memory
limit is ``RLIMIT_AS`` set here, so a runaway allocation raises MemoryError in this process
(answered as a wrong verdict) instead of swapping the host.
"""
from __future__ import annotations

import os
import resource
import signal
import sys
from multiprocessing.connection import Connection

if __name__ == "__main__":
    # Ctrl-C in a terminal reaches the whole process group: the trainer turns it into a
    # checkpoint and closes this pool itself; a worker dying of KeyboardInterrupt would spray
    # tracebacks and fail the checks in flight. (Set before the slow imports below.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

# Imported before "ready" so the first check does not pay for sympy and the LaTeX grammar.
from . import check as math_check, equiv as math_equiv, parse as math_parse, second_opinion  # noqa: F401


# rftgym's own comparison gets this share of a check; math-verify's alarms (second_opinion)
# take at most 4 s more. The pool's hard limit (default 5 s) stays the backstop.
OWN_SECONDS = 1.5


def limit_memory(memory_mb: int | None) -> None:
    """Cap this process's address space at ``memory_mb`` MiB (None or 0: no cap)."""
    if not memory_mb:
        return
    limit = int(memory_mb) * 1024 * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


# Representative checks run once before "ready": ANTLR builds its parse tables (DFA cache)
# lazily and sympy imports simplification modules on first use, which would otherwise make
# each worker's first real checks several times slower.
_WARM_UP = [
    ("\\frac{\\sqrt{3}}{2}", "\\sin\\frac{\\pi}{3}"), ("[1,2)\\cup(3,\\infty)", "x \\le 3"),
    ("\\{1,2\\}", "\\begin{pmatrix}1&2\\end{pmatrix}"), ("x^2-1", "(x-1)(x+1)"), ("y = 2x+3", "10\\text{ cm}"),
    ("\\log_2 8", "\\binom{5}{2}"), ("x \\neq 3", "x != 3"), ("1 < x < 2", "(1,2)"),
]


def warm_up() -> None:
    """Run the representative checks (verdicts ignored)."""
    options = math_check.CheckOptions()
    for gold, pred in _WARM_UP:
        try:
            math_check.check_parsed(gold, pred, options)
        except Exception:  # noqa: BLE001 - warming up must never stop a worker
            pass


def worker_main(requests: Connection, replies: Connection, memory_mb: int | None) -> None:
    """Serve check requests until the pipe closes."""
    limit_memory(memory_mb)
    sys.setrecursionlimit(3000)  # deep enough for sympy, shallow enough not to overflow the C stack
    warm_up()
    replies.send(("ready", ""))
    while True:
        try:
            request = requests.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        gold, pred, options = request
        try:
            reply = math_check.check_parsed(gold, pred, options, own_seconds=OWN_SECONDS)
        except MemoryError:
            reply = (False, "memory limit")
        except RecursionError:
            reply = (False, "recursion limit")
        except Exception as exc:  # noqa: BLE001 - a verdict for every request, never a dead worker
            reply = (False, f"error: {type(exc).__name__}")
        try:
            replies.send(reply)
        except (EOFError, OSError):
            return


def main(argv: list[str]) -> None:
    """Entry point: ``READ_FD WRITE_FD MEMORY_MB``."""
    read_fd, write_fd, memory_mb = int(argv[1]), int(argv[2]), int(argv[3])
    os.dup2(2, 1)  # stray prints from libraries go to stderr, never into the reply pipe
    worker_main(Connection(read_fd, writable=False), Connection(write_fd, readable=False), memory_mb or None)


if __name__ == "__main__":
    main(sys.argv)
