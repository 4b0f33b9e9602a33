"""The run configuration: one dataclass tree, loaded from YAML, overridden with ``--set a.b=v``.

Validation happens before any model is loaded: an unknown key names the closest valid key,
a wrong type names the key, the value and the expected type. Each algorithm brings its own
config dataclass (``Algorithm.Config``), chosen by ``algo.name``.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from .errors import ConfigError, closest

EMBEDDED_MODEL = "embedded"


@dataclass
class ModelConfig:
    """The policy model."""

    name_or_path: str = EMBEDDED_MODEL
    """A hub id or local directory for ``AutoModelForCausalLM``; ``embedded`` is the tiny arithmetic model rftgym ships."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weights dtype; ``auto`` keeps fp32 master weights (bf16 autocast is chosen by ``train.precision``)."""
    trust_remote_code: bool = False
    """Allow a hub model's own Python code to run (off unless you trust the model's author)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass to save memory."""
    critic: str | None = None
    """Backbone of the critic for algorithms that need one; default: a copy of the policy's backbone."""
    chat_template: bool = False
    """Wrap each prompt in the tokenizer's chat template (with ``env`` system prompt, if any)."""


@dataclass
class EnvConfig:
    """The environment: a Gymnasium id under ``rftgym/`` and its keyword arguments."""

    id: str = "rftgym/Arithmetic-v0"
    """A registered env id (see ``rftgym plugins``)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the training env (e.g. ``digits``, ``data_files``, ``prompt_column``)."""
    eval_kwargs: dict[str, Any] = field(default_factory=lambda: {"split": "test"})
    """Overrides of ``kwargs`` for the held-out evaluation env."""


@dataclass
class RewardConfig:
    """One reward of the pipeline."""

    name: str = "math"
    """A registered reward name."""
    weight: float = 1.0
    """Weight in the summed reward; 0 logs the reward without optimising it."""
    options: dict[str, Any] = field(default_factory=dict)
    """Options passed to the reward (``get_reward(name, **options)``)."""
    timeout: float | None = None
    """Seconds one batch may take (in-process rewards; a late batch is a fault, see ``rollout.reward_errors``); null: no limit."""


@dataclass
class RolloutConfig:
    """Sampling of completions."""

    prompts_per_step: int = 32
    """Distinct prompts per optimizer step (each sampled ``algo.group_size`` times)."""
    max_new_tokens: int = 8
    """Longest completion in tokens."""
    temperature: float = 1.0
    """Sampling temperature; log-probs for the loss use the same temperature."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p (1 disables)."""
    top_k: int = 0
    """0 disables top-k."""
    reward_errors: Literal["raise", "warn"] = "raise"
    """A reward that raises/returns NaN/the wrong length: stop with an error, or warn and use ``reward_fallback``."""
    reward_fallback: float = 0.0
    """Value counted (and logged as a fault) for a sample whose reward failed when ``reward_errors=warn``."""


@dataclass
class TrainConfig:
    """Optimisation."""

    max_steps: int = 200
    """Optimizer steps to run."""
    lr: float = 1e-4
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    adam_beta1: float = 0.9
    """AdamW β1."""
    adam_beta2: float = 0.999
    """AdamW β2."""
    adam_eps: float = 1e-8
    """AdamW ε."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up over this many optimizer steps."""
    lr_schedule: Literal["constant", "cosine", "linear"] = "constant"
    """Shape after warm-up."""
    max_grad_norm: float = 1.0
    """Gradient clipping by global norm (0 disables)."""
    micro_batch_size: int = 0
    """Sequences per forward/backward (gradient accumulation); 0 = the whole minibatch at once."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """``auto``: bf16 autocast on CUDA, fp32 on CPU."""
    max_nonfinite_steps: int = 3
    """Consecutive skipped updates (non-finite loss or gradient) before the run aborts."""
    distributed: Literal["ddp", "fsdp"] = "ddp"
    """Under torchrun: replicate the model (DDP) or shard it (FSDP2)."""
    compile: bool = False
    """``torch.compile`` the policy forward."""
    threads: int = 0
    """CPU threads for torch; 0 = one per available core (per rank)."""


@dataclass
class EvalConfig:
    """Held-out evaluation (greedy pass@1 and mean reward)."""

    every: int = 25
    """Evaluate every N steps (also at step 0 and after the last step); 0 disables."""
    num_prompts: int = 200
    """Held-out prompts per evaluation."""
    batch_size: int = 256
    """Prompts per greedy decoding batch."""
    max_new_tokens: int = 0
    """0 = ``rollout.max_new_tokens``."""


@dataclass
class LoggingConfig:
    """Where and how metrics go."""

    progress: bool = True
    """A progress bar on stderr."""
    quiet: bool = False
    """No progress bar and no per-eval lines (CI)."""
    samples_every: int = 10
    """Write a few prompt/completion/reward samples to ``samples.jsonl`` every N steps."""
    samples_per_step: int = 4
    """How many samples each such write holds."""
    tensorboard: bool = False
    """Also write TensorBoard scalars to ``RUN/tensorboard`` (needs ``rftgym[tensorboard]``)."""
    wandb: bool = False
    """Also log to Weights & Biases (needs ``rftgym[wandb]`` and a login)."""
    wandb_project: str = "rftgym"
    """W&B project name."""


@dataclass
class AlgoConfig:
    """Base of every algorithm's config; subclasses add their hyper-parameters."""

    name: str = "grpo"
    """A registered algorithm name (``rftgym plugins``)."""
    group_size: int = 1
    """Completions sampled per prompt."""
    epochs: int = 1
    """μ: passes over each rollout."""
    minibatches: int = 1
    """Optimizer steps per epoch; the rollout is split into this many shuffled minibatches."""

    def validate(self) -> None:
        """Raise ConfigError naming the field when a value is out of range."""
        check(self.group_size >= 1, "algo.group_size", self.group_size, "an integer >= 1")
        check(self.epochs >= 1, "algo.epochs", self.epochs, "an integer >= 1")
        check(self.minibatches >= 1, "algo.minibatches", self.minibatches, "an integer >= 1")


def check(ok: bool, key: str, value: Any, accepted: str) -> None:
    """Raise a ConfigError for ``key`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"config key {key!r} = {value!r} is invalid; expected {accepted}")


@dataclass
class RunConfig:
    """Everything one training run needs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    rewards: list[RewardConfig] = field(default_factory=lambda: [RewardConfig()])
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    output_dir: str = "runs/rftgym"
    """Run directory (config.yaml, metrics.jsonl, samples.jsonl, checkpoints/, final/)."""
    seed: int = 0
    """Seeds python, numpy, torch and the env's prompt order (each rank adds its own offset)."""
    device: str = "auto"
    """``auto`` (CUDA if present, else CPU), ``cpu``, ``cuda``, ``cuda:1``, ..."""
    save_every: int = 50
    """Checkpoint every N steps (0: only at the end)."""
    keep_checkpoints: int = 2
    """How many recent checkpoints to keep (at least 1)."""
    resume: bool = False
    """Continue from the newest complete checkpoint in ``output_dir``."""
    overwrite: bool = False
    """Replace an existing different run in ``output_dir``."""
    plugins: list[str] = field(default_factory=list)
    """Extra plugin modules or ``.py`` files to load."""

    def validate(self) -> None:
        """Range checks that need more than a type (called by :func:`build_config`)."""
        check(self.rollout.prompts_per_step >= 1, "rollout.prompts_per_step", self.rollout.prompts_per_step, "an integer >= 1")
        check(self.rollout.max_new_tokens >= 1, "rollout.max_new_tokens", self.rollout.max_new_tokens, "an integer >= 1")
        check(self.rollout.temperature > 0, "rollout.temperature", self.rollout.temperature, "a number > 0")
        check(0 < self.rollout.top_p <= 1, "rollout.top_p", self.rollout.top_p, "a number in (0, 1]")
        check(self.rollout.top_k >= 0, "rollout.top_k", self.rollout.top_k, "an integer >= 0")
        check(self.train.max_steps >= 0, "train.max_steps", self.train.max_steps, "an integer >= 0")
        check(self.train.lr > 0, "train.lr", self.train.lr, "a number > 0")
        check(self.train.warmup_steps >= 0, "train.warmup_steps", self.train.warmup_steps, "an integer >= 0")
        check(self.train.max_grad_norm >= 0, "train.max_grad_norm", self.train.max_grad_norm, "a number >= 0")
        check(self.train.micro_batch_size >= 0, "train.micro_batch_size", self.train.micro_batch_size, "an integer >= 0")
        check(self.train.max_nonfinite_steps >= 1, "train.max_nonfinite_steps", self.train.max_nonfinite_steps, "an integer >= 1")
        check(self.eval.every >= 0, "eval.every", self.eval.every, "an integer >= 0")
        check(self.eval.num_prompts >= 1, "eval.num_prompts", self.eval.num_prompts, "an integer >= 1")
        check(self.save_every >= 0, "save_every", self.save_every, "an integer >= 0")
        check(self.keep_checkpoints >= 1, "keep_checkpoints", self.keep_checkpoints, "an integer >= 1")
        check(len(self.rewards) >= 1, "rewards", self.rewards, "at least one reward")
        for i, r in enumerate(self.rewards):
            check(r.timeout is None or r.timeout > 0, f"rewards[{i}].timeout", r.timeout, "a number of seconds > 0, or null")
        check(any(r.weight != 0 for r in self.rewards), "rewards", [r.name for r in self.rewards],
              "at least one reward with a non-zero weight")
        check(self.resume is False or self.overwrite is False, "overwrite", self.overwrite,
              "false together with resume=true (resume continues a run, overwrite discards it)")
        self.algo.validate()


# -- generic dataclass <-> dict -----------------------------------------------------------------

def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin is dict:
        return "a mapping"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against ``tp`` (with the few safe coercions YAML needs)."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"config key {key!r} = {value!r} has the wrong type; expected {_type_name(tp)}")
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise bad
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"config key {key!r} = {value!r} is invalid; expected {_type_name(tp)}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise bad
        return from_dict(tp, value, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-5" as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    return value


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix or '(top level)'!r} must be a mapping, got {data!r}")
    fields = _fields(cls)
    kwargs: dict[str, Any] = {}
    if cls is RunConfig and "algo" not in data:
        # The chosen algorithm's own Config supplies the defaults (e.g. GRPO's group_size).
        data = {**data, "algo": {}}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            hint = closest(str(key), fields)
            did = f"; did you mean {(prefix + '.' if prefix else '') + hint!r}?" if hint else ""
            raise ConfigError(f"unknown config key {path!r}{did} valid keys here: {', '.join(fields)}")
        if cls is RunConfig and key == "algo":
            kwargs[key] = algo_config_from_dict(value, path)
        else:
            kwargs[key] = _coerce(value, fields[key], path)
    return cls(**kwargs)


def algo_config_from_dict(data: Any, prefix: str = "algo") -> AlgoConfig:
    """Pick the algorithm's own config dataclass by ``name`` and build it from ``data``."""
    if isinstance(data, AlgoConfig):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix!r} must be a mapping, got {data!r}")
    name = data.get("name", AlgoConfig.name)
    from .api import get_algorithm

    cls = get_algorithm(name)
    config_cls = getattr(cls, "Config", AlgoConfig)
    if not (isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls) and issubclass(config_cls, AlgoConfig)):
        from .errors import PluginError

        raise PluginError(f"algorithm {name!r}: its Config must be a dataclass subclassing rftgym.config.AlgoConfig")
    config = from_dict(config_cls, {**data, "name": name}, prefix)
    return config


def to_dict(obj: Any) -> Any:
    """Plain data (for YAML) from a config dataclass tree."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=value"`` → (["a", "b"], typed value); the value is read as YAML (``1e-5``, ``true``, ``[1,2]``)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.path=value")
    key, _, raw = text.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: the key is empty")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_override(data: dict[str, Any], path: list[str], value: Any, defaults: Any = None) -> None:
    """Set ``data[path[0]][path[1]]... = value``; list items by index (``rewards.0.weight``).

    ``defaults`` is the default tree (``to_dict(RunConfig())``): a list or mapping missing from
    ``data`` starts as its default, so ``rewards.0.weight=0.5`` edits the default reward and
    ``env.eval_kwargs.digits=3`` keeps the default ``split: test``. Index ``len(list)`` appends.
    """
    node: Any = data
    default: Any = defaults
    for i, part in enumerate(path[:-1]):
        if isinstance(node, list):
            idx = _index(part, node, path, allow_append=True)
            if idx == len(node):
                node.append({})
            node = node[idx]
            default = None  # list items have no per-index defaults beyond their dataclass
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"config key {'.'.join(path)!r}: {'.'.join(path[:i])!r} is a value, not a section")
        default = default.get(part) if isinstance(default, dict) else None
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = _deep_copy(default) if isinstance(default, (dict, list)) else {}
        node = nxt
    last = path[-1]
    if isinstance(node, list):
        idx = _index(last, node, path, allow_append=True)
        if idx == len(node):
            node.append(value)
        else:
            node[idx] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"config key {'.'.join(path)!r}: {'.'.join(path[:-1])!r} is a value, not a section")


def _index(part: str, node: list, path: list[str], allow_append: bool = False) -> int:
    try:
        idx = int(part)
    except ValueError:
        idx = -1
    if 0 <= idx < len(node) + (1 if allow_append else 0):
        return idx
    raise ConfigError(f"config key {'.'.join(path)!r}: {part!r} is not an index of a list of {len(node)}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a mapping (with a one-line error when it is not one)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read: {exc}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {first}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping at the top level")
    return data


def build_config(base: RunConfig | dict[str, Any] | str | Path | None = None,
                 overrides: list[str] | None = None, values: dict[str, Any] | None = None) -> RunConfig:
    """The validated RunConfig from a YAML path/dict/RunConfig, ``--set`` overrides and flag values.

    ``values`` maps dotted keys to already-typed values (the CLI's convenience flags).
    """
    if isinstance(base, RunConfig):
        data = to_dict(base)
    elif isinstance(base, (str, Path)):
        data = load_yaml(base)
    else:
        data = dict(base or {})
    data = _deep_copy(data)
    defaults = to_dict(RunConfig())
    defaults.pop("algo")  # an algorithm's defaults depend on its name; its Config supplies them
    for key, value in (values or {}).items():
        apply_override(data, key.split("."), value, defaults)
    for text in overrides or []:
        path, value = parse_override(text)
        apply_override(data, path, value, defaults)
    if data.get("plugins"):
        # The config's own plugins may provide the algorithm, rewards or env it names.
        from .api import load_plugins

        load_plugins(_coerce(data["plugins"], list[str], "plugins"))
    config = from_dict(RunConfig, data)
    config.validate()
    check_names(config)
    return config


def check_names(config: RunConfig) -> None:
    """Fail now, before any model loads, on an unknown reward name/option or env id."""
    from .api import _ensure_env, get_reward

    for reward in config.rewards:
        get_reward(reward.name, **reward.options)  # checks the name and the option names; sets nothing up
    _ensure_env(config.env.id)


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def dump_yaml(config: RunConfig) -> str:
    """The resolved config as YAML (what ``config.yaml`` in the run directory holds)."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)
