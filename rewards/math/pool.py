"""A pool of killable checker processes with a hard per-check time limit.

Why not ``multiprocessing.Pool`` or ``concurrent.futures``: neither can kill one stuck task;
a timed-out sympy call would hold a worker forever. Here each worker has its own pipe; the
thread that sent a check waits on it with a deadline and, on expiry, kills the process, starts
a replacement and records the check as failed (counted in ``stats`` and logged, never silent).

Workers are fresh interpreters (``python -m rftgym.rewards.math.worker``) talking over two
inherited pipes: like the ``spawn`` start method they share nothing with a parent that runs
torch threads (which ``fork`` must not copy), and unlike ``spawn``/``forkserver`` they never
re-import the user's ``__main__`` (a training script without an ``if __name__ ==
"__main__"`` guard would otherwise re-run in every worker). A worker starts in about half a
second and then serves checks until closed. Any number of threads may call ``run`` at once:
each idle worker is handed to one thread at a time through a queue.
"""
from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection, wait
from typing import Any, Sequence

logger = logging.getLogger(__name__)

_WORKER_MODULE = "rftgym.rewards.math.worker"
STARTUP_TIMEOUT = 120.0  # a cold start on a loaded 2-core machine can take seconds


def default_workers() -> int:
    """Workers sized to the CPUs this process may use (capped at 16)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 16))


def _child_env() -> dict[str, str]:
    # The child must import rftgym the way this process did (editable install, or a checkout
    # put on sys.path by a test runner): hand it this interpreter's path.
    env = dict(os.environ)
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("OMP_NUM_THREADS", "1")  # a checker never needs BLAS threads
    return env


class _Worker:
    def __init__(self, memory_mb: int | None) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", _WORKER_MODULE, str(to_child_r), str(from_child_w), str(memory_mb or 0)],
                pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, env=_child_env(),
                close_fds=True,
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.send_conn = Connection(to_child_w, readable=False)
        self.conn = Connection(from_child_r, writable=False)
        self.ready = False

    def send(self, obj: Any) -> None:
        self.send_conn.send(obj)

    def wait_ready(self, timeout: float) -> bool:
        if self.ready:
            return True
        try:
            if self.conn.poll(timeout):
                self.ready = self.conn.recv()[0] == "ready"
        except (EOFError, OSError):
            self.ready = False
        return self.ready

    def kill(self) -> None:
        try:
            self.process.kill()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for conn in (self.send_conn, self.conn):
            try:
                conn.close()
            except OSError:
                pass


class CheckerPool:
    """``run(jobs)`` checks ``(gold, pred, options)`` jobs in worker processes, each under
    ``timeout`` seconds and ``memory_mb`` MiB; a timed-out or crashed check answers
    ``(False, "timeout" | "worker died")``."""

    def __init__(self, workers: int | None = None, timeout: float = 5.0, memory_mb: int | None = 2048,
                 start_workers: int | None = None) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        self.size = workers or default_workers()
        # Workers started up front; the rest start when a check finds every worker busy. One
        # caller checking one pair at a time (``verify()``) then never pays for a second
        # worker's start (about 2 s on a loaded 2-core machine) nor for warming its caches.
        self.start_workers = self.size if start_workers is None else max(1, min(start_workers, self.size))
        self.timeout = float(timeout)
        self.memory_mb = memory_mb
        self.stats = {"checks": 0, "timeouts": 0, "crashes": 0, "restarts": 0}
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = True

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Start the workers (idempotent) and wait until they answer."""
        with self._lock:
            if not self._closed:
                return
            workers = [self._spawn_locked() for _ in range(self.start_workers)]
            self._closed = False
        for w in workers:
            if not w.wait_ready(STARTUP_TIMEOUT):
                self._replace(w, "failed to start")
                continue
            self._idle.put(w)

    def close(self) -> None:
        """Stop every worker; ``start`` (or the next ``run``) starts fresh ones."""
        with self._lock:
            self._closed = True
            workers, self._all = list(self._all), set()
        while True:
            try:
                self._idle.get_nowait()
            except queue.Empty:
                break
        for w in workers:
            try:
                w.send(None)
            except (OSError, ValueError):
                pass
        for w in workers:
            try:
                w.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
            w.kill()

    def _spawn_locked(self) -> _Worker:
        w = _Worker(self.memory_mb)
        self._all.add(w)
        return w

    def _replace(self, worker: _Worker, why: str) -> None:
        worker.kill()
        with self._lock:
            self._all.discard(worker)
            if self._closed:
                return
            self.stats["restarts"] += 1
            fresh = self._spawn_locked()
        logger.warning("math checker worker replaced (%s)", why)
        self._idle.put(fresh)  # becomes ready in the background; the next user waits for it

    # -- checking ---------------------------------------------------------------------------
    def _grow(self) -> None:
        """Start one more worker when fewer than ``size`` exist; it joins the idle queue and
        serves once ready."""
        with self._lock:
            if self._closed or len(self._all) >= self.size:
                return
            fresh = self._spawn_locked()
        self._idle.put(fresh)

    def _acquire(self, block: bool) -> _Worker | None:
        while True:
            try:
                w = self._idle.get(block=block, timeout=0.05 if block else None)
            except queue.Empty:
                self._grow()  # every worker is busy: start another, up to ``size``
                if not block:
                    return None
                if self._closed:
                    raise RuntimeError("math checker pool is closed")
                continue
            if not block and not w.wait_ready(0):
                self._idle.put(w)  # still starting: the checks in flight are not held up for it
                return None
            if w.wait_ready(STARTUP_TIMEOUT):
                return w
            self._replace(w, "failed to start")

    def run(self, jobs: Sequence[tuple[str, str, Any]]) -> list[tuple[bool, str]]:
        """Check every job; results in order. Safe to call from several threads at once."""
        if self._closed:
            self.start()
        results: list[tuple[bool, str] | None] = [None] * len(jobs)
        pending = list(range(len(jobs)))[::-1]
        inflight: dict[Connection, tuple[_Worker, int, float]] = {}
        retried: set[int] = set()
        while pending or inflight:
            while pending:
                w = self._acquire(block=not inflight)
                if w is None:
                    break
                index = pending.pop()
                try:
                    w.send(jobs[index])
                except (OSError, ValueError):
                    pending.append(index)
                    self._replace(w, "pipe broken")
                    continue
                inflight[w.conn] = (w, index, time.monotonic() + self.timeout)
            if not inflight:
                continue
            now = time.monotonic()
            wait_for = max(0.0, min(d for _, _, d in inflight.values()) - now)
            if pending:
                wait_for = min(wait_for, 0.05)  # also look for workers other threads free up
            for conn in wait(list(inflight), timeout=wait_for):
                w, index, _ = inflight.pop(conn)  # type: ignore[index]
                try:
                    results[index] = conn.recv()  # type: ignore[union-attr]
                    self._idle.put(w)
                except (EOFError, OSError):
                    self._count("crashes", jobs[index], "scored 0.0" if index in retried else "checking it again")
                    self._replace(w, "worker died")
                    if index in retried:  # died twice on this check: the input itself kills workers
                        results[index] = (False, "worker died")
                    else:  # killed from outside (OOM killer, a stray kill): check it again once
                        retried.add(index)
                        pending.append(index)
            now = time.monotonic()
            for conn, (w, index, deadline) in list(inflight.items()):
                if now >= deadline:
                    del inflight[conn]
                    results[index] = (False, "timeout")
                    self._count("timeouts", jobs[index])
                    self._replace(w, "timeout")
        with self._lock:
            self.stats["checks"] += len(jobs)
        return [r if r is not None else (False, "lost") for r in results]

    def _count(self, key: str, job: tuple[str, str, Any], outcome: str = "scored 0.0") -> None:
        with self._lock:
            self.stats[key] += 1
        if key == "timeouts":
            logger.warning("math check timeout after %.1fs: gold=%.80r prediction=%.80r (%s)",
                           self.timeout, job[0], job[1], outcome)
        else:
            logger.warning("math checker worker died during a check: gold=%.80r prediction=%.80r (%s)",
                           job[0], job[1], outcome)
