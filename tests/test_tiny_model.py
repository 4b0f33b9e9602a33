"""The embedded tiny base model: character tokenizer, config, and the shipped artefact's behaviour."""
from __future__ import annotations

import json
import threading
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rftgym.envs.tasks.arithmetic import ArithmeticTask
from rftgym.runner.tiny_model import (
    EMBEDDED_DIR,
    REQUIRED_FILES,
    build_char_tokenizer,
    build_tiny_model,
    count_parameters,
    embedded_model_path,
    greedy_accuracy,
    pretrain_arithmetic,
)

TEXTS = ["37+45=82", "  two  spaces\tand a tab\n", "Answer: \\boxed{42}.", "a"]


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny; one thread avoids OpenMP spin-waiting when the CPU is shared (2 cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer():
    return build_char_tokenizer()


def check_tokenizer(tok) -> None:
    assert tok.pad_token == "<pad>" and tok.pad_token_id == 0
    assert tok.eos_token == "<eos>" and tok.pad_token_id != tok.eos_token_id
    assert tok.bos_token == "<bos>" and tok.unk_token == "<unk>"
    assert tok.padding_side == "left"
    for text in TEXTS:
        ids = tok(text)["input_ids"]
        assert len(ids) == len(text)  # one token per character, no BOS/EOS added
        assert tok.bos_token_id not in ids
        assert tok.decode(ids) == text
    assert tok.batch_decode([tok(t)["input_ids"] for t in TEXTS]) == TEXTS


def test_tokenizer_round_trip(tokenizer, tmp_path):
    check_tokenizer(tokenizer)
    batch = tokenizer(["1+1=", "99+99="], padding=True, return_tensors="pt")
    assert batch["input_ids"][0, :2].tolist() == [0, 0]  # left padding
    assert batch["attention_mask"][0].tolist() == [0, 0, 1, 1, 1, 1]
    assert tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True) == ["1+1=", "99+99="]
    eos = tokenizer.eos_token_id
    assert tokenizer.decode([*tokenizer("82")["input_ids"], eos, 0], skip_special_tokens=True) == "82"
    assert tokenizer("é")["input_ids"] == [tokenizer.unk_token_id]
    tokenizer.save_pretrained(tmp_path)
    check_tokenizer(AutoTokenizer.from_pretrained(tmp_path))


def test_model_from_config(tokenizer, tmp_path):
    model = build_tiny_model(tokenizer, seed=0)
    assert 0.9e6 <= count_parameters(model) <= 1.1e6
    assert model.config.tie_word_embeddings and model.config.vocab_size == len(tokenizer)
    assert model.config.pad_token_id == 0 and model.config.eos_token_id == tokenizer.eos_token_id
    again = build_tiny_model(tokenizer, seed=0)
    assert torch.equal(model.model.embed_tokens.weight, again.model.embed_tokens.weight)  # seeded
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    # Saved next to a model config, AutoTokenizer must still give back the character tokenizer.
    check_tokenizer(AutoTokenizer.from_pretrained(tmp_path))


def test_shipped_model_loads_and_is_in_band():
    assert all((EMBEDDED_DIR / name).is_file() for name in REQUIRED_FILES), "run scripts/build_embedded_model.py"
    assert embedded_model_path(log=None) == EMBEDDED_DIR  # shipped files are used as-is, nothing is built
    info = json.loads((EMBEDDED_DIR / "build_info.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(EMBEDDED_DIR, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(EMBEDDED_DIR)
    check_tokenizer(tok)
    assert model.dtype == torch.float32
    assert count_parameters(model) == info["parameters"]
    rows = ArithmeticTask(digits=2, split="test").rows(100)
    accuracy = greedy_accuracy(model, tok, rows)
    # Clearly below the ceiling (RL needs headroom) and where the build left it.
    assert abs(accuracy - info["heldout_greedy_accuracy_first100"]) <= 0.10
    low, high = info["recipe"]["band"]
    assert low - 0.10 <= accuracy <= high + 0.10
    # Plain generate() stops at EOS thanks to the saved generation config.
    enc = tok(["12+30="], return_tensors="pt", add_special_tokens=False)
    out = model.generate(**enc, do_sample=False, max_new_tokens=6)
    assert tok.eos_token_id in out[0, enc["input_ids"].shape[1]:].tolist()


def test_pretrain_stops_in_band(tokenizer):
    model = build_tiny_model(tokenizer, seed=0)
    before = model.model.norm.weight.clone()
    # A band that any accuracy lands in: training stops at the first evaluation.
    result = pretrain_arithmetic(model, tokenizer, steps=20, batch_size=8, eval_every=5, eval_prompts=20,
                                 band=(0.0, 1.0), num_threads=None, log=None)
    assert result["landed"] and result["steps"] == 5 and len(result["history"]) == 1
    assert not torch.equal(before, model.model.norm.weight)


def test_fallback_build_is_locked_and_done_once(tmp_path, monkeypatch):
    """Concurrent first uses build once; a read-only package dir builds into the user cache."""
    from rftgym.runner import tiny_model

    calls = []

    def fake_build(out_dir, log=None, overwrite=True, **recipe):
        assert not overwrite  # an on-demand build never replaces a complete directory
        calls.append(out_dir)
        time.sleep(0.2)  # long enough for the other thread to reach the lock
        out_dir.mkdir(parents=True)
        for name in REQUIRED_FILES:
            (out_dir / name).write_text("{}")
        return {}

    package = tmp_path / "pkg" / "assets"
    package.mkdir(parents=True)
    monkeypatch.setattr(tiny_model, "EMBEDDED_DIR", package / "tiny-arith")
    monkeypatch.setattr(tiny_model, "CACHE_DIR", tmp_path / "cache" / "tiny-arith")
    monkeypatch.setattr(tiny_model, "build_embedded_model", fake_build)
    results = []
    threads = [threading.Thread(target=lambda: results.append(tiny_model.embedded_model_path(log=None)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [package / "tiny-arith"] * 2 and len(calls) == 1

    monkeypatch.setattr(tiny_model, "EMBEDDED_DIR", tmp_path / "readonly" / "tiny-arith")
    (tmp_path / "readonly").mkdir()
    monkeypatch.setattr(tiny_model.os, "access", lambda path, mode: False)
    assert tiny_model.embedded_model_path(log=None) == tmp_path / "cache" / "tiny-arith"
    assert len(calls) == 2


def test_pretrain_rewinds_when_it_overshoots(tokenizer, monkeypatch):
    from rftgym.runner import tiny_model

    scripted = iter([0.1, 0.9, 0.3, 0.5])  # steps 5, 10 (overshoot), then 6 and 8 after the rewind to 5
    monkeypatch.setattr(tiny_model, "greedy_accuracy", lambda *args, **kwargs: next(scripted))
    model = build_tiny_model(tokenizer, seed=0)
    result = pretrain_arithmetic(model, tokenizer, steps=50, batch_size=4, eval_every=5, eval_prompts=5,
                                 band=(0.45, 0.55), num_threads=None, log=None)
    assert result["landed"] and result["steps"] == 8 and result["eval_accuracy"] == 0.5
    assert [h["step"] for h in result["history"]] == [5, 10, 6, 8]
