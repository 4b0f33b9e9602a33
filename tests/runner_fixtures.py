"""Shared builders for runner tests: a tiny random char-level model and a small prompt file."""
from __future__ import annotations

import json
from pathlib import Path

TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
            intermediate_size=64)


def build_tiny_model_dir(path: Path, seed: int = 0) -> Path:
    """Save a ~30k-parameter random Qwen2 model with the embedded char tokenizer to ``path``."""
    from rftgym.runner.tiny_model import build_char_tokenizer, build_tiny_model

    tokenizer = build_char_tokenizer()
    model = build_tiny_model(tokenizer, seed=seed, **TINY)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_prompt_file(path: Path, n: int = 40) -> Path:
    """A jsonl file of ``{"question": "a+b=", "answer": "c"}`` rows."""
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            a, b = i % 7, (3 * i) % 5
            fh.write(json.dumps({"question": f"{a}+{b}=", "answer": str(a + b), "source": "test"}) + "\n")
    return path


def run_config(model_dir: Path, data_file: Path, output_dir: Path, **overrides) -> dict:
    """A fast run config (dict form) on the prompt file: exact-match plus length rewards."""
    config = {
        "model": {"name_or_path": str(model_dir)},
        "env": {"id": "rftgym/PromptDataset-v0",
                "kwargs": {"data_files": str(data_file), "prompt_column": "question"},
                "eval_kwargs": {}},
        # exact match is all-zero on a random model; the length reward gives the groups variance
        "rewards": [{"name": "exact_match"},
                    {"name": "length", "weight": 1.0, "options": {"max_length": 4, "cache_length": 3}}],
        "rollout": {"prompts_per_step": 2, "max_new_tokens": 4},
        "algo": {"name": "grpo", "group_size": 4},
        "train": {"max_steps": 3, "lr": 1e-3},
        "eval": {"every": 2, "num_prompts": 6, "batch_size": 4},
        "logging": {"progress": False, "samples_every": 1},
        "save_every": 2,
        "output_dir": str(output_dir),
    }
    for key, value in overrides.items():
        node = config
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return config


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
