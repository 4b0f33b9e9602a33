"""Run one program + its tests in a separate, killable, resource-limited process.

What one run does (docs/security.md has the threat model):

- a fresh temporary directory as cwd, removed afterwards; the job is passed as a file there;
- a clean environment (``PATH``, ``HOME`` = the work dir, ``LANG``): no inherited secrets;
- ``python -I`` (no PYTHONPATH, no user site) running ``code_harness.py``, which sets
  ``RLIMIT_CPU``/``AS``/``FSIZE``/``NOFILE``/``NPROC``/``CORE`` on itself before any model code runs;
- isolation probed once (:func:`isolation`): ``unshare`` with new network, PID and mount
  namespaces (plus a user namespace when not root), falling back to fewer namespaces, then
  none. With a PID namespace, killing the run kills every process it started, even ones that
  called ``setsid``. As root the harness also drops to a uid of its own (``BASE_UID + k``, held
  by a lock file while the program runs, so concurrent runs and processes never share one),
  so ``RLIMIT_NPROC`` applies (root ignores it), root's files are out of reach, and every
  leftover process of that uid can be killed;
- a wall-clock deadline after which the whole process group is killed (``start_new_session``
  + ``os.killpg``); stdout/stderr go to a file capped by ``RLIMIT_FSIZE``, and at most
  ``max_output`` bytes of it are read back.
"""
from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HARNESS = str(Path(__file__).with_name("code_harness.py"))
BASE_UID = 61000  # sandbox uids for root parents: BASE_UID .. +4095, one per running program (no passwd entry needed)
_RESULT_CAP = 1 << 20  # bytes of verdict lines read back; a flood beyond is ignored


@dataclass
class SandboxLimits:
    """Per-run limits (the ``code`` reward's options of the same names)."""

    timeout: float = 5.0
    """Wall-clock seconds before the process group is killed."""
    cpu_seconds: int = 4
    memory_mb: int = 512
    file_size_mb: int = 8
    open_files: int = 64
    processes: int = 16
    max_output: int = 4096
    """Bytes of the program's stdout/stderr kept in the result (for logs)."""


@dataclass
class RunResult:
    """The verdict of one run: ``passed`` of ``total`` tests; ``status`` says why it ended."""

    passed: int = 0
    total: int = 0
    status: str = "ok"  # ok | timeout | error: ... | crashed
    output: str = ""
    seconds: float = 0.0


@functools.lru_cache(maxsize=None)
def isolation() -> tuple[str, tuple[str, ...], bool]:
    """``(name, command prefix, private_tmp)``: the strongest namespace set that works here.

    Probed once per process by running ``python -c pass`` under each candidate."""
    unshare = shutil.which("unshare")
    candidates: list[tuple[str, tuple[str, ...], bool]] = []
    if unshare and sys.platform.startswith("linux"):
        user = () if os.geteuid() == 0 else ("--user", "--map-root-user")
        pid = ("--pid", "--fork", "--kill-child", "--mount-proc")
        candidates += [
            ("net+pid+mount" + ("" if not user else "+user"), (unshare, *user, "--net", *pid), True),
            ("net" + ("" if not user else "+user"), (unshare, *user, "--net"), False),
        ]
    for name, prefix, private_tmp in candidates:
        try:
            done = subprocess.run([*prefix, sys.executable, "-I", "-c", "pass"], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30, env=_clean_env("/"))
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            return name, prefix, private_tmp
    return "none", (), False


def _clean_env(home: str) -> dict[str, str]:
    # Nothing from the trainer's environment (tokens, keys, proxies) reaches the program.
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1",
            "PYTHONDONTWRITEBYTECODE": "1"}


def run_program(code: str, tests: str, entry_point: str | None, limits: SandboxLimits, slot: int = 0) -> RunResult:
    """Run ``code`` then ``tests`` in a sandboxed child; never raises for anything the code does."""
    start = time.monotonic()
    _, prefix, private_tmp = isolation()
    try:
        uid, uid_lock = _claim_uid(slot) if os.geteuid() == 0 else (None, -1)
    except OSError as exc:
        return RunResult(status=f"error: sandbox {exc}")
    workdir = tempfile.mkdtemp(prefix="rftgym-code-")
    nonce = secrets.token_hex(16)
    result = RunResult()
    read_fd = write_fd = -1
    try:
        if uid is not None:
            os.chown(workdir, uid, uid)
        os.chmod(workdir, 0o700)
        job = {"code": code, "tests": tests, "entry_point": entry_point, "nonce": nonce, "uid": uid,
               "private_tmp": private_tmp, "limits": asdict(limits)}
        with open(os.path.join(workdir, "job.json"), "w", encoding="utf-8") as f:
            json.dump(job, f)
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        with open(os.path.join(workdir, ".output"), "wb") as output:
            if uid is not None:
                os.chown(output.name, uid, uid)
            proc = subprocess.Popen([*prefix, sys.executable, "-I", HARNESS, str(write_fd)], cwd=workdir,
                                    env=_clean_env(workdir), stdin=subprocess.DEVNULL, stdout=output,
                                    stderr=subprocess.STDOUT, pass_fds=(write_fd,), close_fds=True,
                                    start_new_session=True)
        os.close(write_fd)
        write_fd = -1
        lines, timed_out = _collect(proc, read_fd, start + limits.timeout)
        _kill_group(proc)
        if timed_out:
            result.status = "timeout"
            lines += _drain(read_fd)
        _parse(lines, nonce, result)
        result.output = _head(os.path.join(workdir, ".output"), limits.max_output)
    except OSError as exc:  # the sandbox itself failed (fds, disk): a failed run, not a crash
        result.status = f"error: sandbox {type(exc).__name__}: {exc}"
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)
        if uid is not None:
            kill_uid(uid)
            os.close(uid_lock)  # releases the uid for the next run, here or in another process
        _remove(workdir)
    result.seconds = time.monotonic() - start
    return result


_UID_RANGE = 4096
_UID_LOCKS = os.path.join(tempfile.gettempdir(), "rftgym-sandbox-uids")


def _claim_uid(slot: int) -> tuple[int, int]:
    """A sandbox uid no other run (in this or any other rftgym process) is using, held by an
    ``flock`` until the returned fd is closed; ``kill_uid`` then cannot hit another run."""
    import fcntl

    os.makedirs(_UID_LOCKS, mode=0o700, exist_ok=True)
    for k in range(_UID_RANGE):
        uid = BASE_UID + (slot + k) % _UID_RANGE
        fd = os.open(os.path.join(_UID_LOCKS, str(uid)), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return uid, fd
    raise OSError("no free sandbox uid")


def _collect(proc: subprocess.Popen, fd: int, deadline: float) -> tuple[list[bytes], bool]:
    """(verdict bytes, timed out): reads until the harness exits or the deadline passes,
    reading as it goes so a chatty program cannot fill the pipe and stall the harness."""
    import select

    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return chunks, True
        ready, _, _ = select.select([fd], [], [], min(remaining, 0.05))
        if ready and size < _RESULT_CAP:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                data = b""
            chunks.append(data)
            size += len(data)
        if proc.poll() is not None:
            if size < _RESULT_CAP:
                chunks += _drain(fd)
            return chunks, False


def _drain(fd: int) -> list[bytes]:
    out = b""
    while len(out) < _RESULT_CAP:
        try:
            data = os.read(fd, 65536)
        except (BlockingIOError, OSError):
            break
        if not data:
            break
        out += data
    return [out]


def _kill_group(proc: subprocess.Popen) -> None:
    # The harness leads its own session: this reaches it and every child that stayed in the
    # group. (With a PID namespace, its death takes down everything else it started.)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def kill_uid(uid: int) -> None:
    """Kill every process running as ``uid`` (root parents: the slot's leftovers that escaped
    the process group with ``setsid``). ``kill -1`` from that uid reaches exactly those."""
    for attempt in range(20):
        if attempt:
            time.sleep(0.05)  # a dying PID namespace takes a moment to reap its members
        try:
            subprocess.run(["kill", "-KILL", "-1"], user=uid, group=uid, extra_groups=[], env=_clean_env("/"),
                           cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=10)
        except (OSError, subprocess.SubprocessError):
            return
        if not _uid_alive(uid):
            return


def _uid_alive(uid: int) -> bool:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    with open(f"/proc/{entry}/stat", "rb") as f:
                        if f.read().rpartition(b")")[2].split()[0] != b"Z":  # zombies hold nothing
                            return True
            except (OSError, IndexError):
                continue
    return False


def _parse(chunks: list[bytes], nonce: str, result: RunResult) -> None:
    passed: set[int] = set()
    for raw in b"".join(chunks).splitlines():
        try:
            tag, kind, value = json.loads(raw)
        except (ValueError, TypeError):
            continue
        if tag != nonce:
            continue  # not the harness's line
        if kind == "total" and isinstance(value, int):
            result.total = value
        elif kind == "pass" and isinstance(value, int):
            passed.add(value)
        elif kind == "error" and result.status == "ok":
            result.status = f"error: {value}"
    result.passed = len({i for i in passed if 0 <= i < result.total})


def _head(path: str, limit: int) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return ""


def _remove(workdir: str) -> None:
    def unlock(func, path, _exc):  # a program may leave read-only dirs behind
        try:
            os.chmod(os.path.dirname(path), 0o700)
            os.chmod(path, 0o700)
            func(path)
        except OSError:
            pass

    shutil.rmtree(workdir, onerror=unlock)
