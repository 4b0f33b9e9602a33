"""LoRA adapters through peft: wrapping, the adapters-off reference, and the merged export.

With ``model.lora.r > 0`` the policy is a ``peft.PeftModel``: the base weights are frozen and
only the adapters train (the optimizer sees only parameters that require gradients). The
KL reference is the same model with its adapters switched off (:class:`AdaptersDisabled`), so
there is no second copy of the weights; at step 0 the adapters' B matrices are zero and the
two are the same function.
"""
from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any, Callable

from torch import nn

from ..errors import RftgymError

ADAPTER_DIR = "adapter"


def _peft():
    try:
        import peft
    except ImportError:
        raise RftgymError("model.lora.r > 0 needs peft: pip install 'rftgym[lora]' (or pip install peft)") from None
    return peft


def is_peft(model: Any) -> bool:
    """Whether ``model`` (not wrapped) is a peft model."""
    return callable(getattr(model, "get_base_model", None)) and hasattr(model, "peft_config")


def lora_config(cfg: Any, task_type: str | None):
    """The ``peft.LoraConfig`` of ``model.lora`` (``target_modules`` null: every linear layer but the head)."""
    peft = _peft()
    return peft.LoraConfig(r=int(cfg.r), lora_alpha=float(cfg.alpha), lora_dropout=float(cfg.dropout),
                           target_modules=list(cfg.target_modules) if cfg.target_modules else "all-linear",
                           bias="none", task_type=task_type)


def apply_lora(model: nn.Module, cfg: Any, model_name: str, task_type: str | None = "CAUSAL_LM") -> nn.Module:
    """``model`` wrapped with fresh LoRA adapters of ``cfg`` (``model.lora``); one clear line when
    peft refuses the options or the architecture."""
    peft = _peft()
    try:
        with warnings.catch_warnings():  # peft reads transformers' deprecated checkpointing flag
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            wrapped = peft.get_peft_model(model, lora_config(cfg, task_type))
    except (ValueError, TypeError, NotImplementedError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        targets = cfg.target_modules or "all linear layers"
        raise RftgymError(f"model.lora (target_modules={targets}) cannot be applied to {model_name!r} "
                          f"({type(model).__name__}): {first}; layers found: {', '.join(linear_names(model)) or 'none'}"
                          ) from None
    return wrapped


def linear_names(model: nn.Module) -> list[str]:
    """The distinct short names of the model's linear layers (what ``target_modules`` may list)."""
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear) and name})


class AdaptersDisabled:
    """The LoRA policy with its adapters off: the frozen reference π_ref, no second copy.

    :func:`rftgym.runner.logprobs.completion_logprobs` runs ``target`` inside
    ``forward_context()``; calling it directly does the same.
    """

    def __init__(self, peft_model: nn.Module) -> None:
        self.target = peft_model
        self.forward_context: Callable = peft_model.disable_adapter

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.forward_context():
            return self.target(*args, **kwargs)

    def eval(self) -> "AdaptersDisabled":
        return self  # the policy's mode is the trainer's (dropout is off everywhere)

    def to(self, *args: Any, **kwargs: Any) -> "AdaptersDisabled":
        return self  # it has no weights of its own


def merged_copy(peft_model: nn.Module) -> nn.Module:
    """A plain transformers model with the adapters merged into its weights (the policy is untouched)."""
    return copy.deepcopy(peft_model).merge_and_unload()


def save_adapter(peft_model: nn.Module, out_dir: str | Path, base_name: str | None = None) -> None:
    """``out_dir`` holds the adapter as peft saves it (``PeftModel.from_pretrained(base, out_dir)``)."""
    if base_name:
        for config in peft_model.peft_config.values():
            config.base_model_name_or_path = base_name
    peft_model.save_pretrained(str(out_dir))
