"""rftgym's math checker vs Hugging Face math-verify, side by side on the same labelled cases.

    pip install --no-deps math-verify   # benchmark-only; its deps (latex2sympy2_extended) are ours
    python benchmarks/math_reward.py [--quick]

Accuracy: the share of cases (``math_cases.ALL_CASES``) where the verdict equals the label.
Throughput: cases per second over one pass, math-verify single-process on its defaults
(``verify(parse("$gold$"), parse(prediction))``, the gold wrapped in ``$…$`` as its docs
advise), rftgym as a training run uses it (parent fast path + worker pool, cold verdict cache;
pool start-up is reported apart). Prints per-category accuracy, disagreements, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from math_cases import ALL_CASES, Case  # noqa: E402


def run_math_verify(cases: list[Case]) -> tuple[list[bool], float]:
    """math-verify's verdicts and elapsed seconds."""
    from math_verify import parse, verify

    verdicts = []
    start = time.perf_counter()
    for case in cases:
        try:
            ok = bool(verify(parse(f"${case.gold}$"), parse(case.prediction)))
        except Exception:  # noqa: BLE001 - math-verify raising is a wrong verdict, as for us
            ok = False
        verdicts.append(ok)
    return verdicts, time.perf_counter() - start


def run_rftgym(cases: list[Case]) -> tuple[list[bool], float, float, dict]:
    """rftgym's verdicts, elapsed seconds, pool start-up seconds and its stats."""
    from rftgym.rewards.math import _answer_of
    from rftgym.rewards.math_verifier import MathVerifier

    verifier = MathVerifier()
    t0 = time.perf_counter()
    verifier.start()
    startup = time.perf_counter() - t0
    try:
        start = time.perf_counter()
        pairs, index = [], []
        verdicts = [False] * len(cases)
        for i, case in enumerate(cases):
            found = _answer_of(case.prediction)
            if found is not None and not found.hedge:
                pairs.append((case.gold, found.text))
                index.append(i)
        for i, ok in zip(index, verifier.verify_many(pairs)):
            verdicts[i] = ok
        elapsed = time.perf_counter() - start
        return verdicts, elapsed, startup, verifier.stats
    finally:
        verifier.close()


def main(argv: list[str] | None = None) -> dict:
    """Run both checkers and print the comparison; returns the summary dict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: two cases per category")
    args = parser.parse_args(argv)
    cases = ALL_CASES
    if args.quick:
        seen: dict[str, int] = defaultdict(int)
        cases = [c for c in ALL_CASES if (seen.__setitem__(c.category, seen[c.category] + 1) or seen[c.category] <= 2)]

    mv, mv_time = run_math_verify(cases)
    ours, our_time, startup, stats = run_rftgym(cases)

    per_cat: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for case, a, b in zip(cases, ours, mv):
        row = per_cat[case.category]
        row[0] += a == case.expected
        row[1] += b == case.expected
        row[2] += 1
    print(f"{'category':<16} {'rftgym':>8} {'math-verify':>12} {'n':>4}")
    for cat, (a, b, n) in per_cat.items():
        print(f"{cat:<16} {a / n:>8.3f} {b / n:>12.3f} {n:>4}")
    for case, a, b in zip(cases, ours, mv):
        if a != case.expected or b != case.expected:
            print(f"  expected={case.expected!s:<5} rftgym={a!s:<5} math-verify={b!s:<5} "
                  f"gold={case.gold[:40]!r} pred={case.prediction[:60]!r}")
    print(f"rftgym pool start-up {startup:.2f}s (excluded), stats {stats}")

    n = len(cases)
    summary = {
        "rftgym_accuracy": round(sum(a == c.expected for c, a in zip(cases, ours)) / n, 4),
        "math_verify_accuracy": round(sum(b == c.expected for c, b in zip(cases, mv)) / n, 4),
        "rftgym_cases_per_s": round(n / our_time, 1),
        "math_verify_cases_per_s": round(n / mv_time, 1),
        "throughput_ratio": round(mv_time / our_time, 2),
        "n_cases": n,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
