"""The real-model side of ``grpo_vs_trl.py --model smollm2|PATH``: one converted model folder,
conversational word problems, and the workload of issue 16 (8 prompts × 4 completions × 48 tokens).

The model (a GGUF, a package name such as ``smollm2``, or a folder) is converted once by the
parent into a safetensors folder, so neither child pays the GGUF dequantization and both load
the same weights and tokenizer. Prompts are TRL's conversational rows
(``{"prompt": [{"role": "user", ...}], "answer": ...}``): TRL applies the tokenizer's chat
template to them, and rftgym does the same (``model.chat_template: auto``) — one template,
applied identically, with ``add_generation_prompt``.
"""
from __future__ import annotations

import json
from pathlib import Path

from _common import Workload

WORD_PROBLEMS = Path(__file__).resolve().parent.parent / "examples" / "data" / "word_problems_train.jsonl"
SYSTEM = "Solve the math word problem. Reply briefly and end with: The answer is <number>."


def is_real(model: str | None) -> bool:
    """Whether ``--model`` names a real model rather than the tiny ``warm``/``random`` one."""
    return model not in (None, "warm", "random")


def real_workload(work: Workload) -> Workload:
    """Issue 16's workload on the real model (the flags given still apply after this)."""
    work.prompts_per_step, work.group_size, work.max_new_tokens = 8, 4, 48
    work.steps, work.warmup, work.lr = 5, 1, 1e-6
    work.extra["real_model"] = True
    return work


def convert_model(name: str, out: Path) -> dict:
    """Load ``name`` as ``rftgym train --model`` would and save a plain safetensors folder."""
    import time

    from rftgym.config import ModelConfig
    from rftgym.runner.models import load_policy, save_pretrained_model

    t0 = time.perf_counter()
    # No checkpointing: it would save ``use_cache: false`` into the folder both children load.
    model, tokenizer = load_policy(ModelConfig(name_or_path=name, gradient_checkpointing=False))
    save_pretrained_model(model, out)
    tokenizer.save_pretrained(out)
    return {"model": name, "parameters": sum(p.numel() for p in model.parameters()),
            "convert_s": round(time.perf_counter() - t0, 1), "chat_template": bool(tokenizer.chat_template)}


def write_conversations(path: Path, n: int) -> Path:
    """``n`` word problems as conversational rows, in file order (both sides read them in order)."""
    rows = [json.loads(line) for line in WORD_PROBLEMS.read_text(encoding="utf-8").splitlines() if line.strip()]
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            row = rows[i % len(rows)]
            prompt = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": row["question"]}]
            fh.write(json.dumps({"prompt": prompt, "answer": row["answer"]}) + "\n")
    return path
