"""The run configuration's schema: one dataclass tree with its range checks.

Pure data: nothing here knows a registered name. Each algorithm brings its own config
dataclass (``Algorithm.Config``, a subclass of :class:`AlgoConfig`); the composition root
(``rftgym.runner.build``) picks it by ``algo.name``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigError

EMBEDDED_MODEL = "embedded"


@dataclass
class LoraConfig:
    """LoRA adapters (peft) on the policy; ``r: 0`` trains all weights."""

    r: int = 0
    """Adapter rank; 0 disables LoRA (full fine-tuning)."""
    alpha: float = 16.0
    """Scale numerator: the adapter's update is multiplied by ``alpha / r``."""
    dropout: float = 0.0
    """Dropout on the adapter's input (0 keeps π_θ at the update equal to π_old at sampling)."""
    target_modules: list[str] | None = None
    """Module names to adapt (suffixes, as peft matches them); null: every linear layer of the backbone."""


@dataclass
class ModelConfig:
    """The policy model."""

    name_or_path: str = EMBEDDED_MODEL
    """A hub id or local directory for ``AutoModelForCausalLM``; ``embedded`` is the tiny arithmetic model rftgym ships."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Weights dtype; ``auto`` keeps fp32 master weights (bf16 autocast is chosen by ``train.precision``)."""
    trust_remote_code: bool = False
    """Allow a hub model's own Python code to run (off unless you trust the model's author)."""
    gradient_checkpointing: bool | Literal["auto"] = "auto"
    """Recompute each layer's activations in the backward pass instead of keeping them, and return freed host memory layer by layer (less memory, ~1.2× the step time); ``auto``: on for models of 100M parameters or more (TRL's default is on), off for smaller ones."""
    critic: str | None = None
    """Backbone of the critic for algorithms that need one; default: a copy of the policy's backbone."""
    chat_template: bool | Literal["auto"] = "auto"
    """Wrap each prompt in the tokenizer's chat template (with the env's system prompt, if any); ``auto``: when the tokenizer has one."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA adapters instead of full fine-tuning (needs ``rftgym[lora]``, i.e. peft)."""


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
    """Distinct prompts per step, i.e. per rollout (each sampled ``algo.group_size`` times); PPO's
    epochs × minibatches optimizer steps all train on the same rollout."""
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
    max_turns: int = 8
    """Multi-turn envs: most policy turns per episode (an episode still running then is truncated)."""
    max_episode_tokens: int = 256
    """Multi-turn envs: token budget of an episode after its first prompt (policy turns and env replies); truncated beyond."""


@dataclass
class TrainConfig:
    """Optimisation."""

    max_steps: int = 200
    """Steps to run; one step is one rollout (``rollout.prompts_per_step`` prompts sampled, scored,
    then ``algo.epochs`` × ``algo.minibatches`` optimizer steps), whatever the algorithm."""
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
    """Linear learning-rate warm-up over this many steps (rollouts)."""
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
    """CPU threads for torch; 0 = automatic: the cores not busy with other work when the run
    starts (load average), split between the ranks, at least 1 (see benchmarks/README.md)."""


@dataclass
class EvalConfig:
    """Held-out evaluation (greedy pass@1 and mean reward)."""

    every: int = 25
    """Evaluate every N steps (rollouts; also at step 0 and after the last step); 0 disables."""
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
    """Optimizer steps per epoch; the step's rollout is split into this many shuffled minibatches."""

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
    """Checkpoint every N steps (rollouts); 0: only at the end (see ``save_last``)."""
    save_last: bool = True
    """Write a checkpoint at the end of the run, so that a later ``--resume`` with a larger
    ``--max-steps`` continues it; false: only ``final/`` (no resume from the end)."""
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
        # AdamW moves each weight by about lr per step: above 1 a run only destroys the model.
        check(0 < self.train.lr <= 1, "train.lr", self.train.lr, "a number in (0, 1]")
        check(self.seed >= 0, "seed", self.seed, "an integer >= 0")
        check(self.train.threads >= 0, "train.threads", self.train.threads, "an integer >= 0 (0: automatic)")
        check(self.train.warmup_steps >= 0, "train.warmup_steps", self.train.warmup_steps, "an integer >= 0")
        check(self.train.max_grad_norm >= 0, "train.max_grad_norm", self.train.max_grad_norm, "a number >= 0")
        check(self.train.micro_batch_size >= 0, "train.micro_batch_size", self.train.micro_batch_size, "an integer >= 0")
        check(self.train.max_nonfinite_steps >= 1, "train.max_nonfinite_steps", self.train.max_nonfinite_steps, "an integer >= 1")
        check(self.eval.every >= 0, "eval.every", self.eval.every, "an integer >= 0")
        check(self.eval.num_prompts >= 1, "eval.num_prompts", self.eval.num_prompts, "an integer >= 1")
        check(self.save_every >= 0, "save_every", self.save_every, "an integer >= 0")
        check(self.keep_checkpoints >= 1, "keep_checkpoints", self.keep_checkpoints, "an integer >= 1")
        check(self.rollout.max_turns >= 1, "rollout.max_turns", self.rollout.max_turns, "an integer >= 1")
        check(self.rollout.max_episode_tokens >= 2, "rollout.max_episode_tokens", self.rollout.max_episode_tokens,
              "an integer >= 2")
        for i, r in enumerate(self.rewards):
            check(r.timeout is None or r.timeout > 0, f"rewards[{i}].timeout", r.timeout, "a number of seconds > 0, or null")
        # ``rewards: []``: an env that computes its own reward (runner/build.py checks the env)
        check(not self.rewards or any(r.weight != 0 for r in self.rewards), "rewards", [r.name for r in self.rewards],
              "at least one reward with a non-zero weight")
        check(self.resume is False or self.overwrite is False, "overwrite", self.overwrite,
              "false together with resume=true (resume continues a run, overwrite discards it)")
        lora = self.model.lora
        check(lora.r >= 0, "model.lora.r", lora.r, "an integer >= 0 (0 disables LoRA)")
        check(lora.alpha > 0, "model.lora.alpha", lora.alpha, "a number > 0")
        check(0 <= lora.dropout < 1, "model.lora.dropout", lora.dropout, "a number in [0, 1)")
        check(lora.target_modules is None or len(lora.target_modules) > 0, "model.lora.target_modules",
              lora.target_modules, "a non-empty list of module names, or null for every linear layer")
        self.algo.validate()
