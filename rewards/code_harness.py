"""The program the ``code`` reward's sandboxed child runs: limit itself, then run code + tests.

Run as ``python -I code_harness.py RESULT_FD`` by ``code_sandbox`` with the job in
``job.json`` in its working directory. It never imports rftgym (``-I`` drops PYTHONPATH) and
is never imported by rftgym: this is the only place where model output is executed, and it
is a separate, resource-limited interpreter.

Order matters: read the job and delete its file, hide the shared temp directories (own mount
namespace only), lower the resource limits, drop to the sandbox uid (root parents only), and
only then run the completion. Each test's verdict is written to RESULT_FD as it finishes,
prefixed by a per-run nonce, so a program that hangs in its third test keeps the two passes.
"""
from __future__ import annotations

import ast
import json
import os
import resource
import sys


def _mount_private_tmp() -> None:
    # Only works inside a fresh mount namespace where we are (namespace) root; elsewhere the
    # call fails with EPERM and nothing changes. cwd keeps pointing at the real work dir.
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.mount.argtypes = (ctypes.c_char_p,) * 3 + (ctypes.c_ulong, ctypes.c_char_p)
    except (OSError, AttributeError):
        return
    for target in (b"/tmp", b"/var/tmp", b"/dev/shm", b"/run/lock"):
        if os.path.isdir(target):
            libc.mount(b"tmpfs", target, b"tmpfs", 0, b"size=8m,mode=1777")


def _limit(limits: dict) -> None:
    def lower(which: int, value: int) -> None:
        soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass

    lower(resource.RLIMIT_CPU, int(limits["cpu_seconds"]))
    lower(resource.RLIMIT_AS, int(limits["memory_mb"]) * 1024 * 1024)
    lower(resource.RLIMIT_FSIZE, int(limits["file_size_mb"]) * 1024 * 1024)
    lower(resource.RLIMIT_NOFILE, int(limits["open_files"]))
    lower(resource.RLIMIT_NPROC, int(limits["processes"]))
    lower(resource.RLIMIT_CORE, 0)


def _drop_privileges(uid: int | None) -> None:
    if uid is None:
        return
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)  # irreversible: the completion cannot regain root


def _test_units(tests: str, entry_point: str | None) -> tuple[list[ast.stmt], list[ast.Module]]:
    """(setup statements, one module per test). Top-level asserts are tests; ``test_*``
    functions are called one by one; HumanEval's ``check(candidate)`` is one test."""
    tree = ast.parse(tests)
    setup: list[ast.stmt] = []
    units: list[ast.Module] = []
    for node in tree.body:
        if isinstance(node, ast.Assert):
            units.append(ast.Module(body=[node], type_ignores=[]))
            continue
        setup.append(node)
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            units.append(ast.parse(f"{node.name}()"))
        elif isinstance(node, ast.FunctionDef) and node.name == "check" and entry_point:
            units.append(ast.parse(f"check({entry_point})"))
    return setup, units


def main() -> None:
    out = int(sys.argv[1])
    with open("job.json", encoding="utf-8") as f:
        job = json.load(f)
    os.remove("job.json")
    nonce = job["nonce"]
    # Bound now, so a completion that monkeypatches os.write or json.dumps cannot forge passes.
    write, dumps = os.write, json.dumps

    def report(kind: str, value: object) -> None:
        try:
            write(out, (dumps([nonce, kind, value]) + "\n").encode())
        except OSError:
            pass

    if job.get("private_tmp"):
        _mount_private_tmp()
    _limit(job["limits"])
    _drop_privileges(job.get("uid"))
    try:
        setup, units = _test_units(job["tests"], job.get("entry_point"))
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        report("error", "tests do not parse")
        return
    report("total", len(units))
    if not units:
        return
    namespace: dict = {"__name__": "__main__"}
    try:
        code = compile(job["code"], "<completion>", "exec")  # safe: only in the sandboxed child
        exec(code, namespace)  # safe: the sandboxed child, resource-limited, separate uid/namespaces
        exec(compile(ast.Module(body=setup, type_ignores=[]), "<tests>", "exec"), namespace)  # safe: sandboxed child
    except BaseException as exc:  # noqa: BLE001 - SystemExit included: every test then fails
        report("error", f"{type(exc).__name__} before the tests")
        return
    for i, unit in enumerate(units):
        try:
            exec(compile(unit, "<tests>", "exec"), namespace)  # safe: sandboxed child only
            report("pass", i)
        except BaseException:  # noqa: BLE001 - a failing or exiting test is a failed test
            report("fail", i)


if __name__ == "__main__":
    main()
