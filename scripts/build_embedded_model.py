#!/usr/bin/env python
"""Build the embedded tiny base model shipped in ``assets/tiny-arith/``.

Trains the ~1M-parameter character-level model (``rftgym.runner.tiny_model``) on the arithmetic
task's train split until greedy held-out accuracy on 2-digit addition lands in the target band
(about 50%), then saves model (safetensors, fp32), tokenizer and ``build_info.json``. Deterministic
for a given seed on a given machine; a few minutes on 2 CPU cores.

    python scripts/build_embedded_model.py            # rebuilds assets/tiny-arith/
    python scripts/build_embedded_model.py --out /tmp/tiny --seed 1
"""
from __future__ import annotations

import argparse
import json

from rftgym.runner.tiny_model import DEFAULT_BUILD, EMBEDDED_DIR, build_embedded_model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(EMBEDDED_DIR), help="output directory (default: the shipped assets)")
    parser.add_argument("--seed", type=int, default=DEFAULT_BUILD["seed"])
    parser.add_argument("--max-steps", type=int, default=DEFAULT_BUILD["max_steps"])
    parser.add_argument("--band", type=float, nargs=2, default=DEFAULT_BUILD["band"], metavar=("LOW", "HIGH"),
                        help="target held-out greedy accuracy band")
    parser.add_argument("--threads", type=int, default=DEFAULT_BUILD["num_threads"])
    args = parser.parse_args(argv)
    info = build_embedded_model(args.out, seed=args.seed, max_steps=args.max_steps, band=tuple(args.band),
                                num_threads=args.threads)
    summary = {k: v for k, v in info.items() if k not in ("history", "recipe")}
    print(json.dumps(summary, indent=2))
    if not info["landed_in_band"]:
        raise SystemExit(f"warning: accuracy did not land in the band {args.band}; see {args.out}/build_info.json")


if __name__ == "__main__":
    main()
