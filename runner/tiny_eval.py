"""Supervised batches and held-out metrics for the tiny character-level models (greedy
accuracy, pass@k, teacher-forced answer probability): used to build and to check them."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch



def _answer_of(text: str) -> str:
    """The generated answer: the decoded completion up to EOS (special tokens already skipped), stripped."""
    return text.strip()


@torch.no_grad()
def greedy_accuracy(model, tokenizer, rows: Sequence[dict], batch_size: int = 256,
                    max_new_tokens: int | None = None) -> float:
    """Fraction of ``rows`` whose greedy completion (up to EOS) equals the answer exactly."""
    if not rows:
        return 0.0
    if max_new_tokens is None:  # longest answer + EOS + one spare, so a missing EOS still fails
        max_new_tokens = max(len(r["answer"]) for r in rows) + 2
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        enc = tokenizer([r["prompt"] for r in chunk], return_tensors="pt", padding=True,
                        padding_side="left", add_special_tokens=False)
        out = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        correct += sum(_answer_of(t) == r["answer"] for t, r in zip(texts, chunk))
    model.train(was_training)
    return correct / len(rows)


@torch.no_grad()
def pass_at_k(model, tokenizer, rows: Sequence[dict], k: int = 8, temperature: float = 1.0,
              seed: int = 0, batch_size: int = 128) -> dict[str, float]:
    """Sampling at ``temperature`` (no top-k/top-p): pass@k and mean per-sample accuracy over ``rows``."""
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    max_new_tokens = max(len(r["answer"]) for r in rows) + 2
    any_correct = 0
    sample_correct = 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        enc = tokenizer([r["prompt"] for r in chunk], return_tensors="pt", padding=True,
                        padding_side="left", add_special_tokens=False)
        out = model.generate(**enc, do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                             num_return_sequences=k, max_new_tokens=max_new_tokens,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        for i, row in enumerate(chunk):
            hits = sum(_answer_of(t) == row["answer"] for t in texts[i * k:(i + 1) * k])
            any_correct += hits > 0
            sample_correct += hits
    model.train(was_training)
    return {f"pass@{k}": any_correct / len(rows), "sample_accuracy": sample_correct / (k * len(rows))}


def _supervised_batch(tokenizer, rows: Sequence[dict]) -> dict[str, torch.Tensor]:
    """``prompt + answer + <eos>`` right-padded, with labels only on the answer and EOS tokens.

    Right padding keeps every sequence at positions 0.. ; RoPE makes attention depend only on relative
    positions, so left-padded generation sees the same model.
    """
    eos = tokenizer.eos_token_id
    seqs, labels = [], []
    for r in rows:
        p = tokenizer(r["prompt"], add_special_tokens=False)["input_ids"]
        a = tokenizer(r["answer"], add_special_tokens=False)["input_ids"] + [eos]
        seqs.append(p + a)
        labels.append([-100] * len(p) + a)
    width = max(len(s) for s in seqs)
    pad = tokenizer.pad_token_id
    return {
        "input_ids": torch.tensor([s + [pad] * (width - len(s)) for s in seqs]),
        "attention_mask": torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs]),
        "labels": torch.tensor([l + [-100] * (width - len(l)) for l in labels]),
    }


@torch.no_grad()
def mean_answer_probability(model, tokenizer, rows: Sequence[dict], batch_size: int = 256) -> float:
    """Mean over ``rows`` of p(answer + EOS | prompt), teacher-forced."""
    was_training = model.training
    model.eval()
    probs: list[float] = []
    for start in range(0, len(rows), batch_size):
        batch = _supervised_batch(tokenizer, rows[start:start + batch_size])
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        labels = batch["labels"][:, 1:]
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        mask = labels != -100
        tok = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
        probs.extend(tok.sum(-1).exp().tolist())
    model.train(was_training)
    return float(np.mean(probs))
