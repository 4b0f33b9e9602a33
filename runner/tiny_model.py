"""The embedded tiny base model that ``rftgym train`` starts from with no arguments and no network.

A ~1M-parameter Llama-style causal LM with a character-level tokenizer, warmed up by supervised
training on the arithmetic task's *train* split until its greedy held-out accuracy lands in a band
clearly below the ceiling (about 50% on 2-digit addition), so that RL from a 0/1 reward has visible
headroom. The model is shipped in ``assets/tiny-arith/`` (built by ``scripts/build_embedded_model.py``);
building it on first use, under a file lock, is only the fallback when those files are missing.
"""
from __future__ import annotations

import copy
import fcntl
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .tiny_eval import _answer_of, _supervised_batch, greedy_accuracy, mean_answer_probability, pass_at_k  # noqa: F401

PAD, EOS, BOS, UNK = "<pad>", "<eos>", "<bos>", "<unk>"
SPECIAL_TOKENS = (PAD, EOS, BOS, UNK)  # ids 0..3, in this order
# Printable ASCII (space..tilde) plus newline and tab: enough for prompts, answers and chat-ish text.
CHARACTERS = tuple(chr(c) for c in range(32, 127)) + ("\n", "\t")

EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "assets" / "tiny-arith"
CACHE_DIR = Path.home() / ".cache" / "rftgym" / "tiny-arith"
# A directory holding all of these is a usable embedded model.
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "build_info.json")

# The recipe of the shipped model; scripts/build_embedded_model.py and the on-demand fallback share it.
DEFAULT_BUILD: dict[str, Any] = dict(
    seed=0, digits=2, max_steps=8000, batch_size=64, lr=1e-3, warmup_steps=50,
    eval_every=25, eval_prompts=None, band=(0.40, 0.60), num_threads=1,
    slip_rate=0.5, slip_offset=1, min_steps=5000,
)
"""The shipped recipe. ``slip_rate``: the base imitates a sloppy demonstrator whose answer is off
by ``slip_offset`` in that fraction of its examples (drawn per example). Measured: a base merely
*under-trained* to ~46% greedy accuracy topped out near 77% under GRPO (its errors are confident
units-digit mistakes, so sampling rarely finds the right answer); a base that has learned the sums
but is unsure whether to trust them (p(correct) ≈ p(slip) ≈ 0.5, pass@8 ≈ 1) starts as low and is
what verifiable-reward RL is for: it removes the demonstrator's mistakes. ``min_steps`` keeps the
band check from accepting a model before it has learned the arithmetic."""


# --------------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------------

def build_char_tokenizer(model_max_length: int = 128):
    """A character-level ``PreTrainedTokenizerFast``: one token per character, exact round-trip.

    Special tokens ``<pad>`` (id 0), ``<eos>``, ``<bos>``, ``<unk>``; pad differs from eos because
    transformers' sequence classifiers pool at the rightmost non-pad token. No BOS is added, padding
    is on the left (for batched generation), and decoding joins characters without spaces.
    """
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    # BPE with no merges splits every word into single characters; with no pre-tokenizer the whole
    # text is one "word", so spaces and newlines are ordinary characters and survive decoding.
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    core.decoder = decoders.Fuse()  # concatenate tokens as-is (the default would insert spaces)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD, eos_token=EOS, bos_token=BOS, unk_token=UNK,
        padding_side="left", truncation_side="left",
        clean_up_tokenization_spaces=False, model_max_length=model_max_length,
    )
    assert tokenizer.pad_token_id == 0 and tokenizer.pad_token_id != tokenizer.eos_token_id
    return tokenizer


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------

def tiny_config(vocab_size: int, **overrides: Any):
    """A ~1M-parameter ``LlamaConfig`` (d=128, 4 layers, 4 heads / 2 KV heads, MLP 512, tied embeddings).

    Llama rather than Qwen2 (the same block without QKV biases) because transformers 5's
    ``AutoTokenizer`` forces ``Qwen2Tokenizer`` on any directory whose config says ``qwen2``, which
    would replace this character tokenizer with a byte-level one; for ``llama`` it honours the saved
    ``tokenizer_class``. ``max_position_embeddings`` only sizes RoPE (no learned positions), so 128
    costs nothing. Special-token ids default to the character tokenizer's layout (pad 0, eos 1, bos 2).
    """
    from transformers import LlamaConfig

    params: dict[str, Any] = dict(
        vocab_size=vocab_size, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=512, max_position_embeddings=128,
        tie_word_embeddings=True, rms_norm_eps=1e-6, rope_theta=10000.0,
        pad_token_id=0, eos_token_id=1, bos_token_id=2, use_cache=True,
    )
    params.update(overrides)
    return LlamaConfig(**params)


def build_tiny_model(tokenizer, seed: int = 0, **overrides: Any):
    """A freshly initialised ``LlamaForCausalLM`` for ``tokenizer`` (fp32, from config, no downloads)."""
    from transformers import LlamaForCausalLM

    ids = dict(pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
               bos_token_id=tokenizer.bos_token_id)
    config = tiny_config(len(tokenizer), **{**ids, **overrides})
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).float()
    # Saved alongside the weights, so plain ``model.generate`` stops at EOS and pads with <pad>.
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def count_parameters(model: torch.nn.Module) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------------------------------
# Supervised warm-up
# --------------------------------------------------------------------------------------------------

def pretrain_arithmetic(
    model,
    tokenizer,
    steps: int = 3000,
    batch_size: int = 64,
    lr: float = 1e-3,
    digits: int = 2,
    seed: int = 0,
    band: tuple[float, float] = (0.45, 0.58),
    eval_every: int = 25,
    eval_prompts: int | None = None,
    warmup_steps: int = 50,
    num_threads: int | None = 2,
    log: Callable[[str], None] | None = print,
    slip_rate: float = 0.0,
    slip_offset: int = 1,
    min_steps: int = 0,
) -> dict[str, Any]:
    """Supervised training on TRAIN-split problems until greedy held-out accuracy lands in ``band``.

    Loss is on the answer and EOS only. Held-out greedy accuracy is measured every ``eval_every``
    steps on the first ``eval_prompts`` test-split rows (all ~1000 by default: a subset's sampling
    noise would stop on lucky evaluations, and the whole split costs ~0.3 s). Accuracy can climb
    steeply, so when an evaluation overshoots the band the model, optimizer and RNGs go back to the
    last evaluation below it and training replays with evaluations twice as often (down to every
    step) until one lands inside; if even single steps jump over it, the state below is kept.
    With ``slip_rate`` > 0 each demonstration's answer is off by ``slip_offset`` with that
    probability (imperfect demonstrations); the band only counts from ``min_steps`` on.
    Returns a summary (steps, seconds, accuracy, landed) and leaves the chosen weights in ``model``.
    """
    from rftgym.envs.tasks.arithmetic import ArithmeticTask

    if num_threads:
        torch.set_num_threads(num_threads)
    low, high = band
    log = log or (lambda _msg: None)
    train_task = ArithmeticTask(digits=digits, split="train")
    eval_rows = ArithmeticTask(digits=digits, split="test").rows(eval_prompts)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / max(1, warmup_steps)))
    # Snapshot of everything that determines the rest of training, taken at each evaluation below the band.
    def snapshot(step: int, accuracy: float) -> dict[str, Any]:
        return {"step": step, "accuracy": accuracy, "model": copy.deepcopy(model.state_dict()),
                "optim": copy.deepcopy(optimizer.state_dict()), "sched": copy.deepcopy(schedule.state_dict()),
                "rng": copy.deepcopy(rng.bit_generator.state), "torch_rng": torch.get_rng_state()}

    saved = snapshot(0, 0.0)
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    step, accuracy, landed = 0, 0.0, False
    model.train()
    while step < steps:
        rows = [train_task.sample(rng) for _ in range(batch_size)]
        if slip_rate > 0:
            slips = rng.random(batch_size) < slip_rate
            rows = [{**r, "answer": str(int(r["answer"]) + slip_offset)} if slip else r
                    for r, slip in zip(rows, slips)]
        batch = _supervised_batch(tokenizer, rows)
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        step += 1
        if step % eval_every or step < min_steps:
            continue
        accuracy = greedy_accuracy(model, tokenizer, eval_rows)
        history.append({"step": step, "loss": round(loss.item(), 4), "accuracy": accuracy,
                        "seconds": round(time.perf_counter() - started, 1)})
        log(f"step {step:5d}  loss {loss.item():.4f}  held-out greedy accuracy {accuracy:.3f}  "
            f"({time.perf_counter() - started:.0f}s, eval every {eval_every})")
        if low <= accuracy <= high:
            landed = True
            break
        if accuracy < low:
            saved = snapshot(step, accuracy)
        elif eval_every > 1:  # overshot: rewind to the last state below the band, look closer
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optim"])
            schedule.load_state_dict(saved["sched"])
            rng.bit_generator.state = saved["rng"]
            torch.set_rng_state(saved["torch_rng"])
            step = saved["step"]
            eval_every = max(1, eval_every // 2)
            log(f"overshot the band {band}; back to step {step}, evaluating every {eval_every}")
        else:  # it jumps over the band even step by step: keep the last state below it
            model.load_state_dict(saved["model"])
            step, accuracy = saved["step"], saved["accuracy"]
            break
    model.eval()
    return {"steps": step, "seconds": time.perf_counter() - started, "eval_accuracy": accuracy,
            "landed": landed, "history": history}


# --------------------------------------------------------------------------------------------------
# Building and locating the embedded model
# --------------------------------------------------------------------------------------------------

def build_embedded_model(out_dir: str | os.PathLike, log: Callable[[str], None] | None = print,
                         overwrite: bool = True, **recipe: Any) -> dict[str, Any]:
    """Build the embedded model with ``DEFAULT_BUILD`` (overridable) and save it to ``out_dir``.

    Writes model (safetensors, fp32), tokenizer and ``build_info.json`` into a temporary sibling
    directory and renames it into place, so ``out_dir`` is either absent or complete. With
    ``overwrite=False`` a complete ``out_dir`` that appeared meanwhile (say, files copied in by hand
    during an on-demand build) is kept and this build is dropped.
    """
    from rftgym.envs.tasks.arithmetic import ArithmeticTask

    params = {**DEFAULT_BUILD, **recipe}
    out_dir = Path(out_dir)
    tokenizer = build_char_tokenizer()
    model = build_tiny_model(tokenizer, seed=params["seed"])
    result = pretrain_arithmetic(
        model, tokenizer, steps=params["max_steps"], batch_size=params["batch_size"], lr=params["lr"],
        digits=params["digits"], seed=params["seed"], band=tuple(params["band"]),
        eval_every=params["eval_every"], eval_prompts=params["eval_prompts"],
        warmup_steps=params["warmup_steps"], num_threads=params["num_threads"], log=log,
        slip_rate=params["slip_rate"], slip_offset=params["slip_offset"], min_steps=params["min_steps"],
    )
    # Final numbers on the whole held-out split (and its first 100 rows, which the tests re-check).
    test_rows = ArithmeticTask(digits=params["digits"], split="test").rows()
    info: dict[str, Any] = {
        "recipe": {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()},
        "parameters": count_parameters(model),
        "steps": result["steps"],
        "train_seconds": round(result["seconds"], 1),
        "landed_in_band": result["landed"],
        "heldout_prompts": len(test_rows),
        "heldout_greedy_accuracy": greedy_accuracy(model, tokenizer, test_rows),
        "heldout_greedy_accuracy_first100": greedy_accuracy(model, tokenizer, test_rows[:100]),
        "heldout_mean_p_correct": mean_answer_probability(model, tokenizer, test_rows),
        **{f"heldout_{k}_T1": v for k, v in pass_at_k(model, tokenizer, test_rows, k=8, seed=params["seed"]).items()},
        "history": result["history"],
        "torch": torch.__version__,
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
        # mkdtemp (and the safetensors writer) make owner-only files; the model is meant to be shared.
        os.chmod(tmp, 0o755)
        for file in tmp.iterdir():
            os.chmod(file, 0o644)
        if _complete(out_dir) and not overwrite:
            if log:
                log(f"rftgym: {out_dir} appeared while building; keeping it")
        else:
            if out_dir.exists():
                shutil.rmtree(out_dir)
            os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info


def _complete(path: Path) -> bool:
    return all((path / name).is_file() for name in REQUIRED_FILES)


def embedded_model_path(log: Callable[[str], None] | None = print) -> Path:
    """The directory of the embedded base model, building it once (under a file lock) if it is missing.

    Normally the shipped ``assets/tiny-arith`` is returned as-is. If it is incomplete, one process
    builds it (a couple of minutes on 2 CPU cores) while concurrent ones wait on the lock and then
    reuse the result; when the package directory is read-only it is built in ``~/.cache/rftgym``.
    """
    if _complete(EMBEDDED_DIR):
        return EMBEDDED_DIR
    if _complete(CACHE_DIR):
        return CACHE_DIR
    writable = EMBEDDED_DIR.parent.is_dir() and os.access(EMBEDDED_DIR.parent, os.W_OK)
    target = EMBEDDED_DIR if writable else CACHE_DIR
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target.parent / f".{target.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        try:
            if not _complete(target):  # another process may have built it while we waited
                if log:
                    log(f"rftgym: building the embedded tiny model into {target} (one-off, ~2-3 min on CPU)")
                build_embedded_model(target, log=log, overwrite=False)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target
