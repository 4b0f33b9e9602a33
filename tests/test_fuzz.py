"""Fuzzing answer extraction and parsing with hypothesis: no crash, no hang, no code execution.

Random unicode and LaTeX-ish strings (with Python payloads mixed in) go through the math
reward's extraction, parent-side precheck, worker-side parser (in-process here, with sympy's
string evaluator booby-trapped), ``verify`` end to end through the worker pool, the dataset
answer extraction, and the countdown parser. Every call must finish under a generous bound,
no exception may escape the public entry points, and no file may appear. Sized for CI:
derandomized, no example database, a few hundred examples in all (< 30 s).
"""
from __future__ import annotations

import inspect
import os
import signal
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rftgym.answers import ANSWER_FORMATS, extract_answer
from rftgym.envs.tasks import countdown
from rftgym.rewards.math import check as math_check, extract as math_extract, parse as math_parse
from rftgym.rewards.math import MathReward, completion_text, verify

BOUND_S = 5.0  # per call in the parent: the real cost is milliseconds; this only catches hangs
VERIFY_BOUND_S = 60.0  # verify() waits for a worker: its own 5 s limit plus a cold start on a busy machine

PAYLOADS = ["__import__('os').system('touch PWNED')", "open('PWNED','w').write('x')", "exec('1')",
            "eval('2+2')", "lambda: 1", "globals()", "().__class__.__bases__[0].__subclasses__()",
            "Symbol('x')", "Integer(1)", "sympify('1')", "x.__class__"]
LATEX = ["\\boxed{", "\\fbox{", "}", "{", "\\frac", "\\dfrac", "\\sqrt", "^", "_", "1", "23", "0.5", "9" * 30,
         "x", "y", "$", "$$", "\\$", "####", "The answer is ", "answer: ", "\\left(", "\\right)", "(", ")",
         "[", "]", "\\{", "\\}", "\\%", "%", ",", ".", "\\pi", "\\infty", "\\text{", "\\mathrm{", "\\cup",
         "\\cap", "=", "\\le", "<", "\\begin{pmatrix}", "\\end{pmatrix}", "&", "\\\\", "-", "+", "*", "/", "**",
         "e", "E", "1e999", "10^{10^{10}}", "!", "\\cdot", "\\times", " ", "\n", "\\binom", "\\log", "\\sin",
         "\\circ", "°", " or ", "i", "\\lim", "\\int", "\\sum", "\\prod", "\\mathbf", "\\neq", "\\pm", "\\in",
         "\\mathbb{R}", "\\emptyset", "\\ln", "\\det", "\\over", "\\,", "1,000", "1,5", "½", "−", "×", "√",
         "٣", "３", "\x00", "\ud7ff", "<answer>", "</answer>", *PAYLOADS]

latexish = st.lists(st.sampled_from(LATEX), max_size=24).map("".join)
texts = st.one_of(st.text(max_size=200), latexish,
                  st.tuples(st.text(max_size=40), latexish, st.text(max_size=40)).map("".join))

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])  # fixtures hold across examples


@pytest.fixture(autouse=True)
def no_files_appear(tmp_path, monkeypatch):
    """Every test runs in an empty directory that must still be empty afterwards."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield
    assert sorted(os.listdir(cwd)) == [], "fuzzing created files"


def _timed(fn, *args, bound: float = BOUND_S):
    t0 = time.perf_counter()
    result = fn(*args)
    elapsed = time.perf_counter() - t0
    assert elapsed < bound, f"{getattr(fn, '__name__', type(fn).__name__)} took {elapsed:.1f}s on {args!r:.200}"
    return result


@FUZZ
@given(texts)
def test_extraction_never_raises_or_hangs(text):
    for strategies in (math_extract.STRATEGIES, *[(s,) for s in math_extract.STRATEGIES], ("whole",), ("last_math",)):
        found = _timed(math_extract.extract, text, strategies)
        assert found is None or (isinstance(found.text, str) and found.strategy in (*strategies, "boxed"))
    assert isinstance(_timed(math_extract.unwrap_gold, text), str)
    for fmt in ANSWER_FORMATS:
        got = _timed(extract_answer, text, fmt)
        assert got is None or isinstance(got, str)
    assert isinstance(completion_text([{"role": "assistant", "content": text}]), str)


@FUZZ
@given(texts, texts)
def test_precheck_never_raises_or_hangs(gold, pred):
    prepared = _timed(math_check.precheck, gold, pred, math_check.CheckOptions())
    assert prepared.verdict in (True, False, None)


class _Evaluated(BaseException):
    """Raised if sympy is asked to evaluate a string: a BaseException, so no handler swallows it."""


class _Slow(BaseException):
    """The in-process parse ran past its bound (the worker pool kills such checks in real runs)."""


@pytest.fixture
def trapped_eval(monkeypatch):
    """sympify/parse_expr on a string end in ``eval_expr``: make reaching it fail the test."""
    import sympy.parsing.sympy_parser as sympy_parser

    real = sympy_parser.eval_expr

    def eval_expr(code, local_dict, global_dict):
        # sympy modules imported lazily (sympy.physics.units on a first simplify) sympify their
        # own constant strings at import time: that is library code, not model text.
        if any("importlib._bootstrap" in f.filename for f in inspect.stack(0)):
            return real(code, local_dict, global_dict)
        raise _Evaluated(f"sympy evaluated a string: {code!r:.200}")

    monkeypatch.setattr(sympy_parser, "eval_expr", eval_expr)

    def alarm(signum, frame):
        raise _Slow

    previous = signal.signal(signal.SIGALRM, alarm)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


@settings(FUZZ, max_examples=100)
@given(gold=st.one_of(st.sampled_from(["\\frac{1}{2}", "x^2-1", "[1,2)", "\\{1,2\\}", "3", "10\\%"]), latexish),
       pred=st.one_of(latexish, st.sampled_from(PAYLOADS)))
def test_worker_parser_never_evaluates_model_text(trapped_eval, gold, pred):
    # check_parsed is what a worker runs on every answer the parent could not decide.
    signal.setitimer(signal.ITIMER_REAL, 10.0)
    try:
        verdict, reason = math_check.check_parsed(gold, pred, math_check.CheckOptions())
        assert isinstance(verdict, bool) and isinstance(reason, str)
        for text in (gold, pred):
            math_parse.parse_answer(text)
    except _Slow:
        pass  # a slow sympy path: in a run the pool's time limit kills it (test_math_pool covers that)
    except (_Evaluated, AssertionError):
        raise
    except Exception:  # noqa: BLE001 - a worker answers (False, "error: …") for these; only eval matters here
        pass
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def test_sympy_trap_is_armed(trapped_eval):
    import sympy

    with pytest.raises(_Evaluated):
        sympy.sympify("1+1")
    with pytest.raises(_Evaluated):
        sympy.Number("12")  # what latex2sympy2_extended calls on number tokens, overridden by math_parse
    assert math_parse.safe_number("1,234.5") == sympy.Rational(24690, 20)


@settings(FUZZ, max_examples=40)
@given(gold=st.one_of(st.sampled_from(["42", "\\frac{1}{2}", "x+1", "\\sqrt{2}"]), texts), pred=texts)
def test_verify_end_to_end_returns_a_bool_in_bounded_time(gold, pred):
    assert _timed(verify, gold, pred, bound=VERIFY_BOUND_S) in (True, False)


def test_payloads_are_not_executed_by_the_reward():
    reward = MathReward(workers=1, timeout=5)
    try:
        completions = [f"The answer is {p}" for p in PAYLOADS] + [f"\\boxed{{{p}}}" for p in PAYLOADS]
        scores = _timed(reward, None, completions, ["1"] * len(completions), bound=VERIFY_BOUND_S)
    finally:
        reward.close()
    assert scores == [0.0] * len(completions)
    assert not Path("PWNED").exists()


@FUZZ
@given(text=texts, numbers=st.lists(st.integers(min_value=0, max_value=10**6), max_size=6),
       target=st.integers(min_value=-10**6, max_value=10**6))
def test_countdown_parser_never_raises_or_hangs(text, numbers, target):
    expression = _timed(countdown.extract_expression, text)
    assert isinstance(expression, str)
    try:
        tree = _timed(countdown.parse, expression)
    except countdown.ExpressionError:
        tree = None
    if tree is not None:
        assert all(isinstance(n, int) for n in countdown.literals(tree))
    assert _timed(countdown.check_solution, expression, numbers, target) in (True, False)
    reward = countdown.CountdownReward()
    (score,) = _timed(reward, [""], [text], [numbers], [target])
    assert score in (0.0, reward.format_score, 1.0)


ADVERSARIAL = {
    "nested boxes": "\\boxed{" * 20_000,
    "nested boxes, scanned whole": "\\boxed{" * 11_000,
    "unclosed fbox": "\\fbox {" * 11_000 + "}",
    "unclosed answer tags": "<answer>" * 20_000 + "1+2",
    "answer tags": "<answer>1</answer>" * 5_000,
    "braces": "{" * 50_000 + "}" * 50_000,
    "dollars": "$" * 40_000,
    "digits": "9" * 200_000,
    "hashes": "#### " * 20_000,
    "answer is": "the answer is " * 10_000,
    "parens": "(" * 10_000 + "1" + ")" * 10_000,
    "power tower": "\\boxed{" + "9^{" * 200 + "9" + "}" * 201,
    "factorial": "\\boxed{99999999!}",
    "huge exponent": "\\boxed{10^{10^{10^{10}}}}",
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_adversarial_inputs_finish_quickly(name):
    text = ADVERSARIAL[name]
    _timed(math_extract.extract, text)
    _timed(math_check.precheck, "7", text[-5000:], math_check.CheckOptions())
    _timed(countdown.CountdownReward(), [""], [text], [[1, 2]], [3])
    for fmt in ANSWER_FORMATS:
        _timed(extract_answer, text, fmt)
    assert _timed(verify, "7", text, bound=VERIFY_BOUND_S) is False


# -- static security checks over rftgym's own source ------------------------------------------------

PACKAGE = Path(__file__).resolve().parents[1]
FORBIDDEN_CALLS = {"eval", "exec", "compile", "sympify", "parse_expr", "eval_expr", "unsafe_load", "__import__"}


def _sources() -> list[Path]:
    skip = {"tests", "benchmarks", "examples", "scripts", "build", ".git"}
    return [p for p in PACKAGE.rglob("*.py") if not skip & set(p.relative_to(PACKAGE).parts)]


def _calls(path: Path):
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            yield node, owner, name


SAFE_MARK_ALLOWED = {"rewards/code_harness.py"}  # runs only as the sandboxed child interpreter


def _marked_safe(path: Path, node) -> bool:
    line = path.read_text(encoding="utf-8").splitlines()[node.lineno - 1]
    return "# safe:" in line and path.relative_to(PACKAGE).as_posix() in SAFE_MARK_ALLOWED


def test_only_the_sandbox_harness_may_mark_evaluation_safe():
    marked = [p.relative_to(PACKAGE).as_posix() for p in _sources() if "# safe:" in p.read_text(encoding="utf-8")]
    assert set(marked) <= SAFE_MARK_ALLOWED, marked


def test_no_source_evaluates_strings_or_unpickles():
    import ast

    found = []
    for path in _sources():
        for node, owner, name in _calls(path):
            where = f"{path.relative_to(PACKAGE)}:{node.lineno}"
            bare = isinstance(node.func, ast.Name) or owner == "builtins"
            # model.eval(), re.compile(), torch.compile() are methods, not Python's eval/compile
            if name in FORBIDDEN_CALLS and (bare or name not in ("eval", "exec", "compile", "__import__")):
                if _marked_safe(path, node):  # the code reward's sandboxed child, and nothing else
                    continue
                found.append(f"{where}: {owner + '.' if owner else ''}{name}()")
            if owner in ("pickle", "marshal", "dill") and name in ("load", "loads"):
                found.append(f"{where}: {owner}.{name}()")
            if owner == "yaml" and name == "load":
                found.append(f"{where}: yaml.load() (use yaml.safe_load)")
            if owner == "torch" and name == "load":
                kw = {k.arg: k.value for k in node.keywords}
                if not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                    found.append(f"{where}: torch.load() without weights_only=True")
            for k in node.keywords:
                if k.arg == "trust_remote_code" and isinstance(k.value, ast.Constant) and k.value.value is True:
                    found.append(f"{where}: trust_remote_code=True")
                if k.arg == "shell" and isinstance(k.value, ast.Constant) and k.value.value is True:
                    found.append(f"{where}: shell=True")
    assert len(_sources()) > 50
    assert not found, "\n".join(found)


def test_trust_remote_code_is_off_by_default():
    from rftgym.config import RunConfig

    assert RunConfig().model.trust_remote_code is False


def test_plugin_autoload_can_be_disabled(make_dist, monkeypatch):
    """``RFTGYM_LOAD_PLUGINS=`` (empty): no installed third-party plugin is imported at all."""
    import sys

    from rftgym.plugins.manager import get_manager

    fake = make_dist("raise SystemExit('this plugin must not be imported')\n", dist="evilplugin", entry_point="evil")
    monkeypatch.setenv("RFTGYM_LOAD_PLUGINS", "")
    manager = get_manager()
    manager.load_entry_points()
    assert fake.module not in sys.modules and "evil" not in manager.plugins
