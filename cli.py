"""The ``rftgym`` command line (also ``python -m rftgym``)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

from . import __version__
from .errors import RftgymError

# Each command imports what it runs inside itself: torch and transformers (under runner/) load
# only for the commands that need them, so ``--help``, ``plugins`` and ``plot`` stay quick.

DEBUG_ENV = "RFTGYM_DEBUG"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (like every other rftgym error)."""

    def error(self, message: str):  # type: ignore[override]
        where = "" if self.prog == "rftgym" else f"{self.prog.removeprefix('rftgym ')}: "
        self.exit(2, f"rftgym: error: {where}{message} (see {self.prog} --help)\n")


def _add_plugin_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                   help="load a plugin module (dotted name) or a .py file; repeatable")
    p.add_argument("--strict-plugins", action="store_true",
                   help="a third-party plugin that fails to load is an error (env RFTGYM_STRICT_PLUGINS=1)")
    p.add_argument("--debug", action="store_true", help=f"show tracebacks (env {DEBUG_ENV}=1)")


def _add_set_flag(p: argparse.ArgumentParser, help_text: str | None = None) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", dest="overrides",
                   help=help_text or "override any config key, e.g. --set train.lr=1e-4 --set algo.beta=0.04 "
                                     "(value read as YAML)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed so docs and tests can inspect every flag)."""
    parser = _Parser(
        prog="rftgym",
        description="Reinforcement fine-tuning of language models: prompts are Gymnasium bandits, "
                    "rewards and algorithms are plugins chosen by name.")
    parser.add_argument("--version", action="version", version=f"rftgym {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = sub.add_parser("train", help="run RL fine-tuning (no arguments: the embedded GRPO arithmetic demo)",
                           description="Run RL fine-tuning. With no arguments: GRPO on rftgym/Arithmetic-v0 "
                                       "with the math reward, from the tiny model rftgym ships, on the CPU.")
    train.add_argument("--config", metavar="FILE.yaml", help="a YAML run config (see docs/config.md)")
    train.add_argument("--algo", metavar="NAME", help="algorithm by name (grpo, ppo, rloo, reinforce, ...)")
    train.add_argument("--env", metavar="ID", help="Gymnasium env id (default rftgym/Arithmetic-v0; list: rftgym plugins)")
    train.add_argument("--reward", action="append", metavar="NAME[:WEIGHT]",
                       help="reward by name, optionally with a weight; repeatable (replaces the config's rewards)")
    train.add_argument("--model", metavar="PATH_OR_ID", help="policy model: a local directory or a hub id")
    train.add_argument("--output-dir", metavar="DIR",
                       help="run directory: config.yaml, metrics.jsonl, checkpoints/, final/ (default runs/rftgym)")
    train.add_argument("--max-steps", type=int, metavar="N",
                       help="steps to run; one step = one rollout (sampled, scored, then algo.epochs x "
                            "algo.minibatches optimizer steps), the same unit for every algorithm (default 200)")
    train.add_argument("--save-every", type=int, metavar="N", help="checkpoint every N steps (0: only at the end)")
    train.add_argument("--seed", type=int, metavar="N", help="seed of the run (an integer >= 0; default 0)")
    train.add_argument("--device", metavar="DEV", help="auto, cpu, cuda, cuda:1, ...")
    train.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output-dir")
    train.add_argument("--overwrite", action="store_true", help="replace a different run in --output-dir")
    train.add_argument("--quiet", action="store_true", help="no progress bars and no per-eval lines")
    train.add_argument("--dry-run", action="store_true",
                       help="validate the config, print it as YAML and exit without loading any model")
    _add_set_flag(train)
    _add_plugin_flags(train)

    rm = sub.add_parser("train-rm", help="train a Bradley-Terry reward model on preference pairs",
                        description="Train a Bradley-Terry reward model (a one-label sequence classifier) on "
                                    "preference pairs; the model lands in OUTPUT_DIR/final, ready for the "
                                    "reward_model reward (options.path). With no arguments: the built-in "
                                    "arithmetic pairs, 1,500 steps, about 8 minutes on one free CPU core.")
    rm.add_argument("--data", metavar="FILE_OR_DATASET",
                    help="preference data with columns prompt, chosen, rejected [, margin]; default: built-in arithmetic pairs")
    rm.add_argument("--model", metavar="PATH_OR_ID", help="backbone (default: a fresh tiny model with the embedded tokenizer)")
    rm.add_argument("--output-dir", metavar="DIR", default="runs/reward-model",
                    help="run directory; the model is saved to DIR/final (default runs/reward-model)")
    rm.add_argument("--max-steps", type=int, metavar="N", help="optimizer steps (default 1500)")
    rm.add_argument("--seed", type=int, metavar="N", help="seed (default 0)")
    rm.add_argument("--device", metavar="DEV", help="auto, cpu, cuda, cuda:1, ...")
    rm.add_argument("--overwrite", action="store_true", help="replace an existing run in --output-dir")
    rm.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_set_flag(rm, "override a train-rm setting, e.g. --set lr=1e-4 --set batch_size=32 (value read as YAML)")
    _add_plugin_flags(rm)

    ev = sub.add_parser("eval", help="held-out accuracy and mean reward of a model, as one JSON line",
                        description="Greedy pass@1 (eval/accuracy) and mean reward (eval/reward) of a model on "
                                    "an env's held-out split, printed as one JSON line.")
    ev.add_argument("--model", required=True, metavar="DIR", help="a model directory (e.g. RUN/final) or 'embedded'")
    ev.add_argument("--env", default="rftgym/Arithmetic-v0", metavar="ID", help="env id (default %(default)s)")
    ev.add_argument("--reward", action="append", metavar="NAME[:WEIGHT]", help="reward(s); default: math")
    ev.add_argument("--reward-option", action="append", default=[], metavar="NAME.KEY=VALUE",
                    help="an option of reward NAME (value read as YAML), e.g. reward_model.path=RUN/final; repeatable")
    ev.add_argument("--num-prompts", type=int, default=200, metavar="N",
                    help="held-out prompts to evaluate (at most the split's rows; default %(default)s)")
    ev.add_argument("--max-new-tokens", type=int, default=8, metavar="N", help="longest completion (default %(default)s)")
    ev.add_argument("--split", default="test", help="the env's held-out split (default %(default)s)")
    ev.add_argument("--env-kwarg", action="append", default=[], metavar="KEY=VALUE",
                    help="extra env keyword argument (value read as YAML); repeatable")
    ev.add_argument("--device", default="auto", metavar="DEV", help="auto, cpu, cuda, ... (default %(default)s)")
    _add_plugin_flags(ev)

    pl = sub.add_parser("plugins", help="list plugins, their versions, hooks and registered names")
    pl.add_argument("--json", action="store_true", help="machine-readable output")
    _add_plugin_flags(pl)

    plot = sub.add_parser("plot", help="plot reward, accuracy, KL, entropy, length and loss of one or more runs")
    plot.add_argument("runs", nargs="+", metavar="RUN_DIR")
    plot.add_argument("-o", "--output", metavar="FILE.png", help="output image (default: RUN_DIR/metrics.png)")
    plot.add_argument("--debug", action="store_true", help=f"show tracebacks (env {DEBUG_ENV}=1)")
    return parser


def _reward_values(specs: Sequence[str]) -> list[dict[str, Any]]:
    rewards = []
    for spec in specs:
        name, sep, weight = spec.partition(":")
        item: dict[str, Any] = {"name": name}
        if sep:
            try:
                item["weight"] = float(weight)
            except ValueError:
                raise RftgymError(f"--reward {spec!r}: the weight after ':' must be a number") from None
        rewards.append(item)
    return rewards


def train_config_from_args(args: argparse.Namespace):
    """The validated RunConfig that ``rftgym train`` would run (no model is loaded)."""
    from .runner.build import resolve_config

    values: dict[str, Any] = {}
    flag_keys = {"algo": "algo.name", "env": "env.id", "model": "model.name_or_path",
                 "output_dir": "output_dir", "max_steps": "train.max_steps", "save_every": "save_every",
                 "seed": "seed", "device": "device"}
    for flag, key in flag_keys.items():
        value = getattr(args, flag)
        if value is not None:
            values[key] = value
    if args.reward:
        values["rewards"] = _reward_values(args.reward)
    if args.resume:
        values["resume"] = True
    if args.overwrite:
        values["overwrite"] = True
    if args.quiet:
        values["logging.quiet"] = True
    config = resolve_config(args.config, args.overrides, values)
    config.plugins = list(dict.fromkeys([*config.plugins, *args.plugin]))
    return config


def _load_plugins(args: argparse.Namespace) -> None:
    from .runner.build import load_plugins

    load_plugins(getattr(args, "plugin", []), strict=True if getattr(args, "strict_plugins", False) else None)


def cmd_train(args: argparse.Namespace) -> int:
    config = train_config_from_args(args)
    if args.dry_run:
        from .config import dump_yaml

        sys.stdout.write(dump_yaml(config))
        return 0
    from .runner.trainer import train

    result = train(config)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one result line
        print(json.dumps({"output_dir": str(result.output_dir), **result.final_metrics}))
    return 0


def cmd_train_rm(args: argparse.Namespace) -> int:
    from .runner.train_rm import train_reward_model_from_args

    result = train_reward_model_from_args(args)
    print(json.dumps(result))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .config import parse_override
    from .runner.checks import check_model_path
    from .runner.evaluate import evaluate_model

    for flag, value in (("--num-prompts", args.num_prompts), ("--max-new-tokens", args.max_new_tokens)):
        if value < 1:
            raise RftgymError(f"{flag} {value} is invalid; expected an integer >= 1")
    check_model_path(args.model, "--model")

    env_kwargs = {}
    for text in args.env_kwarg:
        path, value = parse_override(text)
        env_kwargs[".".join(path)] = value
    rewards = _reward_values(args.reward or ["math"])
    for text in args.reward_option:
        path, value = parse_override(text) if "=" in text else ([], None)
        names = [r["name"] for r in rewards]
        if len(path) != 2 or path[0] not in names:
            raise RftgymError(f"--reward-option {text!r}: expected NAME.KEY=VALUE with NAME one of the rewards "
                              f"being evaluated ({', '.join(names)})")
        for reward in rewards:
            if reward["name"] == path[0]:
                reward.setdefault("options", {})[path[1]] = value
    result = evaluate_model(args.model, env_id=args.env, rewards=rewards,
                            num_prompts=args.num_prompts, max_new_tokens=args.max_new_tokens,
                            split=args.split, env_kwargs=env_kwargs, device=args.device)
    print(json.dumps(result))
    return 0


def quiet_libraries() -> None:
    """``--quiet``: no progress bars from transformers / huggingface_hub (loading and saving
    weights), and only their errors. Set before they are imported; applied again if they were."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TRANSFORMERS_NO_TQDM"] = "1"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def cmd_plugins(args: argparse.Namespace) -> int:
    from .plugins.manager import get_manager

    manager = get_manager()
    infos = [{**info.as_dict(), "env_tasks": manager.env_tasks(info.name)} for info in manager.plugins.values()]
    if args.json:
        print(json.dumps({"rftgym": __version__, "plugins": infos}, indent=2))
        return 0
    for info in infos:
        version = f" {info['version']}" if info["version"] else ""
        status = f"  FAILED: {info['error']}" if info["error"] else ""
        print(f"{info['name']}{version} ({info['source']}){status}")
        for kind in ("rewards", "algorithms", "advantages", "envs"):
            if info[kind]:
                print(f"  {kind}: {', '.join(info[kind])}")
        for env_id, tasks in info["env_tasks"].items():
            listed = f"({len(tasks)}) {', '.join(tasks)}" if isinstance(tasks, list) else f"unavailable: {tasks}"
            print(f"  tasks of {env_id}: {listed}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from .plot import plot_runs

    out = plot_runs(args.runs, args.output)
    print(out)
    return 0


COMMANDS = {"train": cmd_train, "train-rm": cmd_train_rm, "eval": cmd_eval, "plugins": cmd_plugins, "plot": cmd_plot}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code. Errors are one line on stderr unless --debug."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    debug = getattr(args, "debug", False) or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    if debug:
        os.environ[DEBUG_ENV] = "1"
    if getattr(args, "quiet", False):
        quiet_libraries()
    try:
        if args.command != "plot":
            _load_plugins(args)
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("rftgym: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``rftgym plugins --json | head``): not an error of ours. Point
        # stdout at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except RftgymError as exc:
        if debug:
            raise
        print(f"rftgym: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # anything else still gets one line unless --debug
        if debug:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"rftgym: error: {type(exc).__name__}: {first} (run with --debug for the traceback)", file=sys.stderr)
        return 1
