"""The schema of ``rftgym train-rm``: one dataclass, checked like the run config.

``--set key=value`` and the Python keywords of ``train_reward_model`` go through the same
``from_dict`` as ``rftgym train``'s config (unknown key → the closest one; wrong type → the
expected one), then :meth:`RewardModelTrainConfig.validate` checks the ranges.
"""
from __future__ import annotations

from dataclasses import dataclass

from .schema import check


@dataclass
class RewardModelTrainConfig:
    """A Bradley–Terry reward-model run. Defaults are the measured recipe (DESIGN.md, "Rewards")."""

    data: str | None = None
    """Preference data (file, saved dataset directory or hub name); null: built-in arithmetic pairs."""
    model: str | None = None
    """Backbone: null (a fresh tiny model), ``embedded``, a local path or a hub id."""
    output_dir: str = "runs/reward-model"
    """Run directory (config.yaml, metrics.jsonl, checkpoints/, final/)."""
    max_steps: int = 1500
    """Optimizer steps."""
    lr: float = 1e-4
    """AdamW learning rate (lr >= 3e-4 collapsed to a constant score in the measurements)."""
    batch_size: int = 64
    """Pairs per step."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping by global norm (0 disables)."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up steps."""
    center_coef: float = 0.0
    """Weight of the reward-centering term ``mean((r_c + r_r)²)``."""
    eval_fraction: float = 0.05
    """Share of the pairs held out when the data has no test split."""
    eval_every: int = 50
    """Evaluate every N steps (also at step 0 and at the end); 0: only at the end."""
    eval_batch_size: int = 256
    """Pairs per evaluation forward."""
    save_every: int = 500
    """Checkpoint every N steps (0: none)."""
    keep_checkpoints: int = 2
    """How many recent checkpoints to keep."""
    max_length: int = 512
    """Tokens per text (left-truncated: the score is read at the last token)."""
    chat_template: bool = False
    """Render plain-string pairs with the chat template; pass the same to the ``reward_model`` reward."""
    num_pairs: int = 20000
    """Built-in training pairs (no ``data``)."""
    eval_pairs: int = 1000
    """Built-in held-out pairs (no ``data``)."""
    seed: int = 0
    """Seeds the head, a fresh backbone, the split and the batch order."""
    device: str = "auto"
    """``auto``, ``cpu``, ``cuda``, ``cuda:N``."""
    threads: int = 0
    """torch CPU threads (0: automatic, the cores not busy with other work; see train.threads)."""
    quiet: bool = False
    """No progress bars."""
    overwrite: bool = False
    """Replace an existing run in ``output_dir``."""
    resume: bool = False
    """Continue from the newest checkpoint in ``output_dir``."""

    def validate(self) -> None:
        """Raise ConfigError naming the key when a value is out of range."""
        for key, low in (("max_steps", 0), ("batch_size", 1), ("eval_every", 0), ("save_every", 0),
                         ("keep_checkpoints", 1), ("max_length", 2), ("num_pairs", 1), ("eval_pairs", 1),
                         ("eval_batch_size", 1), ("warmup_steps", 0)):
            check(getattr(self, key) >= low, key, getattr(self, key), f"an integer >= {low}")
        check(self.lr > 0, "lr", self.lr, "a number > 0")
        check(0 <= self.eval_fraction < 1, "eval_fraction", self.eval_fraction, "a number in [0, 1)")
        check(self.max_grad_norm >= 0, "max_grad_norm", self.max_grad_norm, "a number >= 0")
        check(not (self.overwrite and self.resume), "overwrite", self.overwrite,
              "false together with resume=true (resume continues a run, overwrite discards it)")
