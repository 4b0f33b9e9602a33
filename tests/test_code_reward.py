"""The sandboxed ``code`` reward: verdicts, bad input, and a batch of hostile programs."""
from __future__ import annotations

import os
import time

import pytest

import rftgym
from rftgym.errors import ConfigError
from rftgym.rewards.code import extract_code
from rftgym.rewards.code_sandbox import BASE_UID, isolation

GOOD = "```python\ndef add(a, b):\n    return a + b\n```"
TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4"]


@pytest.fixture(scope="module")
def code():
    reward = rftgym.get_reward("code", timeout=5.0)
    yield reward
    reward.close()


def test_correct_wrong_partial_and_modes(code):
    half = "def add(a, b):\n    return a + b if a > 0 else 7\n"
    scores = code(["p"] * 4, [GOOD, "def add(a, b):\n    return a - b\n", half, "no code here ```"],
                  tests=[TESTS] * 4)
    assert scores[0] == 1.0 and scores[1] == 0.0
    assert scores[2] == pytest.approx(2 / 3)
    everything = rftgym.get_reward("code", mode="all")
    assert everything(["p"], [half], tests=[TESTS]) == [0.0]
    everything.close()


def test_test_function_and_entry_point(code):
    check = "def check(candidate):\n    assert candidate(2, 3) == 5\n"
    assert code(["p"], [GOOD], tests=[check], entry_point=["add"]) == [1.0]
    assert code(["p"], [GOOD], tests=["def test_a():\n    assert add(1, 1) == 2\n"]) == [1.0]


def test_bad_input_is_a_verdict_or_one_line_error(code):
    assert code(["p"] * 3, [GOOD, "", GOOD], tests=["assert add(1,", TESTS, None]) == [0.0, 0.0, None]
    with pytest.raises(ConfigError, match="'tests'"):
        code(["p"], [GOOD], answer=["3"])


def test_extract_code_prefers_the_last_python_block():
    text = "```\nx = 1\n```\n```python\ny = 2\n```\n```text\nz\n```"
    assert extract_code(text) == "y = 2\n"
    assert extract_code("def f(): pass") == "def f(): pass"
    assert extract_code("```python\ndef f():\n    return 1") == "def f():\n    return 1"


HOSTILE = [
    "while True:\n    pass",
    "import time\ntime.sleep(60)",
    "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
    "import os\nif os.fork() == 0:\n    os.setsid()\n    import time\n    time.sleep(60)\nwhile True: pass",
    "x = bytearray(1 << 34)",
    "x = []\nwhile True:\n    x.append(' ' * 10**6)",
    "print('A' * 10**9)",
    "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)",
    "open('/tmp/rftgym_pwned_{i}', 'w').write('x')\nopen('/root/rftgym_pwned_{i}', 'w').write('x')",
    "open('../rftgym_pwned_{i}', 'w').write('x')",
    "import os\nassert os.environ.get('RFTGYM_SECRET'), 'no secret'\nwhile True: pass",
    "import socket\ns = socket.create_connection(('1.1.1.1', 80), timeout=3)\nwhile True: pass",
    "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(1, signal.SIGKILL)",
    "import os\nos.system('touch /tmp/rftgym_pwned_sys_{i}; sleep 60')",
    "import os\nos.killpg(0, 9)",
    "raise SystemExit(0)",
]


@pytest.mark.slow
def test_hostile_batch_scores_zero_and_leaves_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("RFTGYM_SECRET", "hunter2")
    reward = rftgym.get_reward("code", timeout=5.0)
    programs = [HOSTILE[i % len(HOSTILE)].replace("{i}", str(i)) for i in range(64)]
    tests = ["assert add(1, 2) == 3"] * 64
    before = set(os.listdir("/tmp"))
    start = time.monotonic()
    scores = reward(["p"] * 64, programs, tests=tests)
    elapsed = time.monotonic() - start
    reward.close()
    print(f"hostile batch: {elapsed:.1f}s, isolation {isolation()[0]}")
    assert scores == [0.0] * 64
    assert os.getpid() and not [f for f in set(os.listdir("/tmp")) - before if "rftgym_pwned" in f or f.startswith("rftgym-code-")]
    assert not [p for p in os.listdir("/root") if "rftgym_pwned" in p] if os.access("/root", os.R_OK) else True
    if os.geteuid() == 0:
        time.sleep(1)  # the last PID namespaces finish tearing down
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    uid = os.stat(f"/proc/{entry}").st_uid
                    state = open(f"/proc/{entry}/stat", "rb").read().rpartition(b")")[2].split()[0]
                except (OSError, IndexError):
                    continue
                assert state == b"Z" or not BASE_UID <= uid < BASE_UID + 4096, f"process {entry} left behind"
    assert reward(["p"], [GOOD], tests=[TESTS]) == [1.0]  # the caller carries on


def test_runs_without_namespaces(monkeypatch):
    """Where ``unshare`` is unavailable (e.g. CI runners that forbid user namespaces)."""
    from rftgym.rewards import code_sandbox

    monkeypatch.setattr(code_sandbox, "isolation", lambda: ("none", (), False))
    result = code_sandbox.run_program("def add(a, b):\n    return a + b\n", "\n".join(TESTS), None,
                                      code_sandbox.SandboxLimits(timeout=10))
    assert (result.passed, result.total) == (3, 3)
    loop = code_sandbox.run_program("while True: pass", "assert 1", None, code_sandbox.SandboxLimits(timeout=1))
    assert loop.status == "timeout" and loop.passed == 0
