"""GPU smoke run: a short GRPO run on a ~0.5B-parameter model built from a config (no hub access).

Run through ``benchmarks/gpu_smoke.sh`` (which checks the machine first). Steps:

1. build a Qwen2-style decoder (Llama class: the Qwen2 block without QKV biases — transformers
   would swap a ``qwen2`` directory's tokenizer for its byte-level one) with d=1024, 24 layers,
   16 heads / 4 KV heads, MLP 4096, tied embeddings and a 151,936-token vocabulary (Qwen2's),
   ≈ 0.52B parameters, random weights, saved to a temporary directory;
2. ``python -m rftgym train --device cuda`` (bf16 autocast, fp32 master weights) for a few steps;
3. the same run with LoRA adapters (``model.lora.r=16`` on every linear layer, peft);
4. print one JSON line: GPU name, parameters, sampling and training tokens/s, peak memory, and
   the same figures of the LoRA run under ``lora_r16``.

Why the large vocabulary: the LM head and the ``[N, T, V]`` logits of the log-prob pass are a
large share of an RL step's time and memory on real models; a character vocabulary would hide
them. The tokenizer is the character one plus synthetic tokens up to that size (prompts still
encode to characters, every sampled id decodes). A random model rarely samples EOS, so every
completion runs to ``max_new_tokens``: the token counts, hence the rates, are fixed by the config.

``SMOKE_TINY=1``: the same path with a tiny config on the CPU (to test this script anywhere).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TINY = os.environ.get("SMOKE_TINY") == "1"
MODEL = (dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              intermediate_size=128, vocab_size=512) if TINY else
         dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=4,
              intermediate_size=4096, vocab_size=151_936))
# GRPO: 16 prompts × 8 completions × 128 new tokens per step; micro-batches bound the logits' memory.
RUN = (dict(steps=2, prompts=2, group=2, new_tokens=8, micro=2, device="cpu") if TINY else
       dict(steps=int(os.environ.get("SMOKE_STEPS", "5")), prompts=16, group=8, new_tokens=128, micro=32,
            device="cuda"))
TRAIN_TIMEOUT_S = 240  # the whole script must finish in under 5 minutes


def build_tokenizer(vocab_size: int):
    """The character tokenizer with synthetic tokens ``<x…>`` filling the vocabulary up to ``vocab_size``."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    from rftgym.runner.tiny_model import BOS, CHARACTERS, EOS, PAD, SPECIAL_TOKENS, UNK

    base = SPECIAL_TOKENS + CHARACTERS
    vocab = {tok: i for i, tok in enumerate(base)}
    vocab.update({f"<x{i}>": i for i in range(len(base), vocab_size)})
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))  # no merges: encodes to characters
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, eos_token=EOS, bos_token=BOS,
                                   unk_token=UNK, padding_side="left", clean_up_tokenization_spaces=False,
                                   model_max_length=4096)


def build_model(folder: Path) -> int:
    """Save the random model and its tokenizer to ``folder``; return the parameter count."""
    import torch
    from transformers import AutoModelForCausalLM

    from rftgym.runner.tiny_model import tiny_config

    tokenizer = build_tokenizer(MODEL["vocab_size"])
    config = tiny_config(max_position_embeddings=4096, **MODEL)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return params


def train(model_dir: Path, out: Path, extra: tuple[str, ...] = ()) -> tuple[list[dict], float]:
    """The GRPO run (``extra``: more ``--set`` flags); returns its train metric lines and wall seconds."""
    cmd = [sys.executable, "-m", "rftgym", "train", "--device", RUN["device"], "--model", str(model_dir),
           "--reward", "exact_match", "--max-steps", str(RUN["steps"]), "--save-every", "0",
           "--output-dir", str(out), "--overwrite",
           "--set", f"rollout.prompts_per_step={RUN['prompts']}", "--set", f"algo.group_size={RUN['group']}",
           "--set", f"rollout.max_new_tokens={RUN['new_tokens']}", "--set", f"train.micro_batch_size={RUN['micro']}",
           "--set", "eval.every=0", "--set", "logging.progress=false", *extra]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TRAIN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"gpu_smoke: the training run took over {TRAIN_TIMEOUT_S}s; lower SMOKE_STEPS") from None
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"gpu_smoke: rftgym train failed (exit {proc.returncode}); command: {' '.join(cmd)}")
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [x for x in lines if "time/update" in x], wall


def device_name() -> str:
    import torch

    if TINY or not torch.cuda.is_available():
        return "cpu (SMOKE_TINY)"
    return torch.cuda.get_device_name(0)


def main() -> None:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rftgym-gpu-smoke-") as tmp:
        model_dir, out = Path(tmp) / "model", Path(tmp) / "run"
        params = build_model(model_dir)
        built = time.perf_counter() - t0
        print(f"gpu_smoke: built a {params / 1e6:.0f}M-parameter model in {built:.0f}s; training "
              f"{RUN['steps']} GRPO steps on {RUN['device']}", file=sys.stderr, flush=True)
        lines, wall = train(model_dir, out)
        # The same run with LoRA adapters (r=16 on every linear layer; needs peft), bf16 autocast as above.
        lora_lines, lora_wall = train(model_dir, Path(tmp) / "run-lora",
                                      ("--set", "model.lora.r=16", "--set", "train.lr=1e-4"))
    print(json.dumps({
        "benchmark": "gpu_smoke", "gpu": device_name(), "params_m": round(params / 1e6, 1),
        "sequences_per_step": RUN["prompts"] * RUN["group"], "max_new_tokens": RUN["new_tokens"],
        **summary(lines, wall), "lora_r16": summary(lora_lines, lora_wall),
        "total_wall_s": round(time.perf_counter() - t0, 1)}))


def summary(lines: list[dict], wall: float) -> dict:
    """Medians over the timed steps (the first compiles kernels and warms the allocator)."""
    timed = lines[1:] or lines
    med = lambda key: statistics.median(x[key] for x in timed)  # noqa: E731
    peak = max((x.get("memory/peak_allocated_gb", 0.0) for x in lines), default=0.0)
    return {"steps": len(lines), "steps_timed": len(timed), "completion_tokens_per_step": med("completion/tokens"),
            "sample_tokens_per_s": round(med("completion/tokens") / med("time/sample"), 1),
            "train_tokens_per_s": round(med("completion/tokens") / med("time/update"), 1),
            "step_s": round(med("time/sample") + med("time/prepare") + med("time/score") + med("time/update"), 3),
            "peak_allocated_gb": round(peak, 2), "peak_rss_gb": round(max(x.get("memory/peak_rss_gb", 0.0) for x in lines), 2),
            "train_wall_s": round(wall, 1)}


if __name__ == "__main__":
    main()
