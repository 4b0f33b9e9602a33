"""Loading the policy (and its tokenizer) with transformers, with one-line errors."""
from __future__ import annotations

from pathlib import Path

import torch

from ..config import EMBEDDED_MODEL, ModelConfig
from ..errors import RftgymError
from .tiny_model import embedded_model_path
from .tool_model import TOOL_MODEL_DIR, TOOL_MODEL_NAME

DTYPES = {"auto": torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_model_path(name_or_path: str) -> str:
    """``embedded`` → the tiny arithmetic model rftgym ships; ``embedded-tool`` → the tiny
    tool-use model of ``rftgym/ToolArithmetic-v0``; anything else as given."""
    if name_or_path == EMBEDDED_MODEL:
        return str(embedded_model_path())
    if name_or_path == TOOL_MODEL_NAME:
        if not (TOOL_MODEL_DIR / "model.safetensors").exists():
            raise RftgymError(f"the embedded tool model is missing from {TOOL_MODEL_DIR}; "
                              f"build it with: python scripts/build_tool_model.py")
        return str(TOOL_MODEL_DIR)
    return name_or_path


def load_policy(cfg: ModelConfig):
    """``(model, tokenizer)`` for the policy; fp32 master weights unless ``model.dtype`` says otherwise."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(cfg.name_or_path)
    hint = ("pass --model PATH pointing to a local directory saved with save_pretrained "
            "(config.json + weights + tokenizer), or omit --model for the embedded tiny model")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    except Exception as exc:
        where = "local directory" if Path(path).exists() else "hub id (no network, or no such model)"
        raise RftgymError(f"model {cfg.name_or_path!r} could not be loaded as a {where}: "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}; {hint}") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[cfg.dtype],
                                                     trust_remote_code=cfg.trust_remote_code)
    except ValueError as exc:
        raise RftgymError(f"model {cfg.name_or_path!r} is not a causal language model "
                          f"(AutoModelForCausalLM refused it: {str(exc).splitlines()[0]})") from None
    except Exception as exc:
        raise RftgymError(f"model {cfg.name_or_path!r} could not be loaded: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}; {hint}") from None
    if cfg.gradient_checkpointing:
        # transformers 5 renamed it (the old name warns); older releases only have the old one
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
        model.config.use_cache = False
    return model, tokenizer
