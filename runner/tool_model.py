"""The embedded tool-use base model for ``rftgym/ToolArithmetic-v0`` (``model: embedded-tool``).

The tiny character-level model of :mod:`.tiny_model`, trained by supervised learning on
demonstrated episodes (``envs/tasks/tool_arithmetic.demonstration``) in which the
demonstrator calls the calculator with probability ``p_tool`` and otherwise guesses. The loss
is on the demonstrator's tokens only (the env's ``<result>`` replies are context, as in RL).
Below one half, greedy decoding guesses, so held-out accuracy starts low; sampling calls the
tool ``p_tool`` of the time and copies its result, so GRPO has a reward signal to follow.
Shipped in ``assets/tiny-tool-arith/`` (built by ``scripts/build_tool_model.py``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import torch

TOOL_MODEL_NAME = "embedded-tool"
TOOL_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "tiny-tool-arith"

TOOL_BUILD: dict[str, Any] = dict(seed=0, p_tool=0.35, steps=2000, batch_size=32, lr=3e-3, warmup_steps=100,
                                  eval_every=500, eval_episodes=64, num_threads=1,
                                  model=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                             num_key_value_heads=1, intermediate_size=256))
"""The shipped recipe; ``p_tool`` is the demonstrator's tool-use rate; ``model``: overrides of
:func:`rftgym.runner.tiny_model.tiny_config` (a smaller model than the arithmetic one: the
task is copying, not computing, and this machine's 2 cores are shared)."""

ROLLOUT = SimpleNamespace(max_new_tokens=32, max_turns=3, max_episode_tokens=96, temperature=1.0, top_p=1.0, top_k=0)


def demo_batch(tokenizer, episodes: list[list[tuple[str, bool]]]) -> dict[str, torch.Tensor]:
    """Right-padded ids with labels on the model-written segments and the EOS that ends each."""
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    seqs, labels = [], []
    for segments in episodes:
        ids, lab = [], []
        for text, by_model in segments:
            piece = tokenizer(text, add_special_tokens=False)["input_ids"]
            if by_model:
                piece = piece + [eos]
            ids += piece
            lab += piece if by_model else [-100] * len(piece)
        seqs.append(ids)
        labels.append(lab)
    width = max(len(s) for s in seqs)
    return {
        "input_ids": torch.tensor([s + [pad] * (width - len(s)) for s in seqs]),
        "attention_mask": torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs]),
        "labels": torch.tensor([l + [-100] * (width - len(l)) for l in labels]),
    }


def evaluate_tool_model(model, tokenizer, episodes: int = 200, seed: int = 1) -> dict[str, float]:
    """Held-out greedy accuracy, sampled (T=1) accuracy and sampled tool-use rate."""
    from ..envs.multiturn import make_episodes
    from .episodes import play
    from .policy import Policy

    policy = Policy(model, tokenizer)
    env = make_episodes("rftgym/ToolArithmetic-v0", episodes, 1, split="test")
    try:
        out = {}
        for name, greedy in (("greedy", True), ("sampled", False)):
            obs, _ = env.reset(seed=seed)
            ep = play(policy, env, list(obs), ROLLOUT, greedy=greedy, on_error="warn")
            out[f"{name}_accuracy"] = float(ep.correct.mean()) if ep.correct is not None else 0.0
            out[f"{name}_tool_rate"] = float(np.mean([t > 1 for t in ep.turns]))
        return out
    finally:
        env.close()


def train_tool_model(out_dir: str | Path, log: Callable[[str], None] | None = print, **recipe: Any) -> dict[str, Any]:
    """Build the tool model with ``TOOL_BUILD`` (overridable) and save it to ``out_dir``."""
    from ..envs.registry import ensure_env
    from ..envs.tasks.tool_arithmetic import demonstration
    from .tiny_model import build_char_tokenizer, build_tiny_model, count_parameters

    cfg = {**TOOL_BUILD, **recipe}
    log = log or (lambda _m: None)
    ensure_env("rftgym/ToolArithmetic-v0")
    torch.set_num_threads(cfg["num_threads"])
    tokenizer = build_char_tokenizer()
    model = build_tiny_model(tokenizer, seed=cfg["seed"], **cfg["model"])
    if cfg.get("init"):  # continue from an earlier build (same architecture)
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(Path(cfg["init"]) / "model.safetensors")), strict=False)
        model.tie_weights()
    rng = np.random.default_rng(cfg["seed"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], betas=(0.9, 0.98), weight_decay=0.01)
    warm, steps = cfg["warmup_steps"], cfg["steps"]
    schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, cosine decay
        optimizer, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + np.cos(np.pi * min(1.0, s / steps))))
    history, started = [], time.perf_counter()
    model.train()
    for step in range(1, steps + 1):
        batch = demo_batch(tokenizer, [demonstration(rng, cfg["p_tool"]) for _ in range(cfg["batch_size"])])
        loss = model(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % cfg["eval_every"] == 0 or step == steps:
            model.eval()
            metrics = evaluate_tool_model(model, tokenizer, cfg["eval_episodes"])
            model.train()
            history.append({"step": step, "loss": round(loss.item(), 4), **metrics,
                            "seconds": round(time.perf_counter() - started, 1)})
            log(json.dumps(history[-1]))
    model.eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    info = {"recipe": cfg, "parameters": count_parameters(model), "train_seconds": round(time.perf_counter() - started, 1),
            "heldout": history[-1] if history else {}, "history": history}
    (out / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
