"""rftgym's math checker vs Hugging Face math-verify, side by side on the same labelled cases.

    python benchmarks/math_reward.py [--table] [--show-errors] [--limit N] [--quick]

Tables (each scored by both checkers in this one process, on the same inputs):
  external  third-party cases from public answer-checker test suites (``data/math_external.jsonl``,
            source named per case; math-verify's own suite is reported apart, it favours math-verify)
  smollm2   real SmolLM2-135M-Instruct completions, labelled by hand (``data/math_smollm2.jsonl``)
  self      the old self-written cases (``math_cases.ALL_CASES``), written alongside the checker.
rftgym: the public ``rftgym.rewards.math.verify(gold, prediction)`` per call, and the batched reward
``rftgym.get_reward("math")(prompts=[""]*n, completions=preds, answer=golds)`` in batches of 64
(a cold first pass, then a warm pass where its verdict cache may answer). math-verify 0.9.0 on its
defaults (its own parse/verify timeouts): ``verify(parse(gold_wrapped), parse(prediction))``, the
gold wrapped in ``$…$`` unless it already carries ``$`` or ``\\boxed`` (its README asks for
delimited gold). Prints a table on stderr and one JSON line last on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
BATCH = 64


def load_tables(limit: int = 0) -> dict[str, list[dict]]:
    tables: dict[str, list[dict]] = {}
    for name, fn in (("external", "math_external.jsonl"), ("smollm2", "math_smollm2.jsonl")):
        path = os.path.join(HERE, "data", fn)
        rows = []
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    if line.strip():
                        r = json.loads(line)
                        rows.append(dict(gold=r["gold"], prediction=r.get("prediction", r.get("completion")),
                                         label=bool(r["label"]), source=r.get("source", "smollm2")))
        tables[name] = rows
    from math_cases import ALL_CASES
    tables["self"] = [dict(gold=c.gold, prediction=c.prediction, label=bool(c.expected), source=c.category)
                      for c in ALL_CASES]
    if limit:
        tables = {k: v[:limit] for k, v in tables.items()}
    return tables


def source_group(src: str) -> str:
    return src.split("@")[0].split(" ")[0] + (" (own suite)" if "Math-Verify" in src else "")


def wrap_gold(gold: str) -> str:
    return gold if ("$" in gold or "\\boxed" in gold) else f"${gold}$"


def run_math_verify(rows):
    from math_verify import parse, verify
    out, t0 = [], time.perf_counter()
    for r in rows:
        try:
            ok = bool(verify(parse(wrap_gold(r["gold"])), parse(r["prediction"])))
        except Exception:  # noqa: BLE001 - a raise (timeout included) is a False verdict
            ok = False
        out.append(ok)
    return out, time.perf_counter() - t0


def run_rftgym_verify(rows):
    from rftgym.rewards.math import verify
    out, t0 = [], time.perf_counter()
    for r in rows:
        try:
            ok = bool(verify(r["gold"], r["prediction"]))
        except Exception:  # noqa: BLE001
            ok = False
        out.append(ok)
    return out, time.perf_counter() - t0


def run_rftgym_batched(reward, rows):
    out, t0 = [], time.perf_counter()
    for i in range(0, len(rows), BATCH):
        b = rows[i:i + BATCH]
        scores = reward(prompts=[""] * len(b), completions=[r["prediction"] for r in b], answer=[r["gold"] for r in b])
        out.extend(bool(s) and s > 0.5 for s in scores)
    return out, time.perf_counter() - t0


def acc(rows, verdicts):
    return sum(v == r["label"] for r, v in zip(rows, verdicts))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: first 8 cases of each table")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--table", action="store_true", help="readable table on stdout too (before the JSON)")
    ap.add_argument("--show-errors", action="store_true")
    args = ap.parse_args(argv)
    tables = load_tables(8 if args.quick and not args.limit else args.limit)
    err = sys.stderr

    import rftgym
    reward = rftgym.get_reward("math")
    t0 = time.perf_counter()
    reward(prompts=[""], completions=["\\boxed{x^2+1}"], answer=["1+x^2"])  # starts the pool
    warmup_s = time.perf_counter() - t0

    summary: dict = {"tables": {}, "pool_warmup_s": round(warmup_s, 2)}
    lines = []
    for name, rows in tables.items():
        if not rows:
            summary["tables"][name] = {"n": 0}
            continue
        n = len(rows)
        mv, mv_t = run_math_verify(rows)
        rv, rv_t = run_rftgym_verify(rows)
        rb_cold, rb_cold_t = run_rftgym_batched(reward, rows)
        rb_warm, rb_warm_t = run_rftgym_batched(reward, rows)
        t = {"n": n,
             "rftgym_accuracy": round(acc(rows, rb_cold) / n, 4),
             "rftgym_verify_accuracy": round(acc(rows, rv) / n, 4),
             "math_verify_accuracy": round(acc(rows, mv) / n, 4),
             "rftgym_batched_cold_cases_per_s": round(n / rb_cold_t, 1),
             "rftgym_batched_warm_cases_per_s": round(n / rb_warm_t, 1),
             "rftgym_verify_cases_per_s": round(n / rv_t, 1),
             "math_verify_cases_per_s": round(n / mv_t, 1),
             "batched_cold_speed_ratio": round(mv_t / rb_cold_t, 2),
             "verify_per_call_time_ratio": round(rv_t / mv_t, 2),
             "per_source": {}}
        groups = defaultdict(list)
        for i, r in enumerate(rows):
            groups[source_group(r["source"]) if name != "self" else r["source"]].append(i)
        for g, idx in groups.items():
            t["per_source"][g] = {"n": len(idx),
                                  "rftgym": sum(rb_cold[i] == rows[i]["label"] for i in idx),
                                  "math_verify": sum(mv[i] == rows[i]["label"] for i in idx)}
        summary["tables"][name] = t
        lines.append(f"== {name}: n={n}  rftgym {t['rftgym_accuracy']:.3f} (verify() {t['rftgym_verify_accuracy']:.3f})"
                     f"  math-verify {t['math_verify_accuracy']:.3f}  | cases/s: batched cold {t['rftgym_batched_cold_cases_per_s']}"
                     f" warm {t['rftgym_batched_warm_cases_per_s']}, verify() {t['rftgym_verify_cases_per_s']},"
                     f" math-verify {t['math_verify_cases_per_s']}  (batched/mv {t['batched_cold_speed_ratio']}x,"
                     f" verify() time/mv time {t['verify_per_call_time_ratio']})")
        for g, s in t["per_source"].items():
            lines.append(f"   {g:<60} n={s['n']:<4} rftgym {s['rftgym']}/{s['n']}  math-verify {s['math_verify']}/{s['n']}")
        if args.show_errors:
            for r, a, v, b in zip(rows, rb_cold, rv, mv):
                if a != r["label"] or b != r["label"] or v != r["label"]:
                    lines.append(f"   label={r['label']!s:<5} rftgym={a!s:<5} verify()={v!s:<5} math-verify={b!s:<5} "
                                 f"gold={r['gold'][:50]!r} pred={r['prediction'][-80:]!r} [{r['source'][:40]}]")
    close = getattr(reward, "close", None)
    if callable(close):
        close()
    text = "\n".join(lines)
    print(text, file=err)
    if args.table:
        print(text)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
