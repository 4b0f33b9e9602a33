#!/usr/bin/env python
"""Build the embedded tool-use base model shipped in ``assets/tiny-tool-arith/``.

Supervised training of the ~1M-parameter character model on demonstrated
``rftgym/ToolArithmetic-v0`` episodes, where the demonstrator calls the calculator only some
of the time (``--p-tool``) and otherwise guesses (``rftgym.runner.tool_model``). Saves model,
tokenizer and ``build_info.json`` (held-out greedy/sampled accuracy and tool-use rate).

    python scripts/build_tool_model.py                 # rebuilds assets/tiny-tool-arith/
    python scripts/build_tool_model.py --out /tmp/tool --steps 500
"""
from __future__ import annotations

import argparse
import json

from rftgym.runner.tool_model import TOOL_BUILD, TOOL_MODEL_DIR, train_tool_model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(TOOL_MODEL_DIR), help="output directory (default: the shipped assets)")
    parser.add_argument("--seed", type=int, default=TOOL_BUILD["seed"])
    parser.add_argument("--steps", type=int, default=TOOL_BUILD["steps"])
    parser.add_argument("--p-tool", type=float, default=TOOL_BUILD["p_tool"], help="demonstrator's tool-use rate")
    parser.add_argument("--eval-every", type=int, default=TOOL_BUILD["eval_every"])
    parser.add_argument("--threads", type=int, default=TOOL_BUILD["num_threads"])
    parser.add_argument("--init", default=None, help="continue from this earlier build's weights")
    args = parser.parse_args(argv)
    info = train_tool_model(args.out, seed=args.seed, steps=args.steps, p_tool=args.p_tool,
                            eval_every=args.eval_every, num_threads=args.threads, init=args.init)
    print(json.dumps({k: v for k, v in info.items() if k != "history"}, indent=2))


if __name__ == "__main__":
    main()
