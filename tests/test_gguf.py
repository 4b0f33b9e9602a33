"""GGUF input: ``--model file.gguf`` loads through transformers; ``final/`` is a safetensors folder.

The GGUF is written here with the ``gguf`` package from a tiny random Llama (llama.cpp's
tensor names and q/k permutation, a byte-level BPE tokenizer with a chat template), so the
loaded model can be compared with the one it was written from.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rftgym.config import ModelConfig
from rftgym.errors import RftgymError
from rftgym.runner.models import gguf_file, load_policy, save_pretrained_model

gguf = pytest.importorskip("gguf")

H, LAYERS, HEADS, KV_HEADS, FFN = 32, 2, 4, 2, 64
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _byte_symbols() -> list[str]:
    """GPT-2's byte-to-unicode alphabet (the base vocabulary of a byte-level BPE)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, n = keep[:], 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return [chr(c) for c in chars]


def _permute(w: torch.Tensor, heads: int) -> torch.Tensor:
    # llama.cpp stores q/k rows interleaved for its RoPE; transformers undoes this on load
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path: Path, arch: str = "llama"):
    """A tiny random ``LlamaForCausalLM`` and the GGUF written from it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokens = _byte_symbols() + ["Ġt", "he"] + SPECIALS
    merges = ["Ġ t", "h e"]
    config = LlamaConfig(vocab_size=len(tokens), hidden_size=H, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                         num_key_value_heads=KV_HEADS, intermediate_size=FFN, max_position_embeddings=64,
                         rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=len(tokens) - 3,
                         eos_token_id=len(tokens) - 1)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    sd = {k: v.detach().float() for k, v in model.state_dict().items()}
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny")
    w.add_context_length(64)
    w.add_embedding_length(H)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_dimension_count(H // HEADS)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([1] * (len(tokens) - 3) + [3] * 3)
    w.add_token_merges(merges)
    w.add_bos_token_id(config.bos_token_id)
    w.add_eos_token_id(config.eos_token_id)
    w.add_pad_token_id(len(tokens) - 3)
    w.add_chat_template(TEMPLATE)
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"].numpy())
    w.add_tensor("output_norm.weight", sd["model.norm.weight"].numpy())
    w.add_tensor("output.weight", sd["lm_head.weight"].numpy())
    names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for i in range(LAYERS):
        for hf, gg in names.items():
            t = sd[f"model.layers.{i}.{hf}.weight"]
            if gg == "attn_q":
                t = _permute(t, HEADS)
            elif gg == "attn_k":
                t = _permute(t, KV_HEADS)
            w.add_tensor(f"blk.{i}.{gg}.weight", t.contiguous().numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf"
    return path, write_tiny_gguf(path)


def test_a_gguf_file_or_its_folder_loads_as_the_model_it_was_written_from(tiny_gguf):
    path, original = tiny_gguf
    assert gguf_file(str(path)) == (str(path.parent), path.name)
    assert gguf_file(str(path.parent)) == (str(path.parent), path.name)
    model, tokenizer = load_policy(ModelConfig(name_or_path=str(path)))
    ids = torch.tensor([[5, 9, 40, 77, 3]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, original(input_ids=ids).logits, atol=1e-5, rtol=1e-5)
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)


def test_final_of_a_gguf_model_is_a_normal_safetensors_folder(tiny_gguf, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, original = tiny_gguf
    model, tokenizer = load_policy(ModelConfig(name_or_path=str(path)))
    out = tmp_path / "final"
    save_pretrained_model(model, out)
    tokenizer.save_pretrained(out)
    assert (out / "model.safetensors").exists() and not list(out.glob("*.gguf"))
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    AutoTokenizer.from_pretrained(out)
    ids = torch.tensor([[5, 9, 40, 77, 3]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, original(input_ids=ids).logits, atol=1e-5, rtol=1e-5)


def test_an_unsupported_gguf_architecture_is_one_line(tmp_path):
    path = tmp_path / "odd.gguf"
    w = gguf.GGUFWriter(str(path), "rwkv6")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", torch.zeros(4, 4).numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(RftgymError) as err:
        load_policy(ModelConfig(name_or_path=str(path)))
    assert "\n" not in str(err.value) and "odd.gguf" in str(err.value) and "GGUF" in str(err.value)


def test_a_folder_with_several_ggufs_asks_for_one(tmp_path):
    (tmp_path / "a.gguf").write_bytes(b"")
    (tmp_path / "b.gguf").write_bytes(b"")
    with pytest.raises(RftgymError, match="several GGUF files"):
        gguf_file(str(tmp_path))


def test_the_converted_tokenizer_is_cached_by_content_and_a_damaged_entry_is_rebuilt(tiny_gguf, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    from rftgym.runner import gguf_cache

    path, _ = tiny_gguf
    monkeypatch.setenv("RFTGYM_CACHE", str(tmp_path / "cache"))
    calls: list[dict] = []

    def load(folder, **kwargs):
        calls.append({"folder": folder, **kwargs})
        return AutoTokenizer.from_pretrained(folder, **kwargs)

    first = gguf_cache.gguf_tokenizer(str(path.parent), path.name, load)
    second = gguf_cache.gguf_tokenizer(str(path.parent), path.name, load)
    assert "gguf_file" in calls[0] and "gguf_file" not in calls[1]  # the second load read the cache
    entry = Path(calls[1]["folder"])
    assert entry.parent == tmp_path / "cache" / "gguf-tokenizers" and entry.name == gguf_cache.file_digest(path)
    text = "the cat"
    assert second(text)["input_ids"] == first(text)["input_ids"]
    assert second.chat_template == first.chat_template and second.eos_token == first.eos_token

    (entry / "tokenizer.json").write_text("{not json")  # damaged: rebuilt from the GGUF, not trusted
    with pytest.warns(UserWarning, match="rebuilding the cached GGUF tokenizer"):
        third = gguf_cache.gguf_tokenizer(str(path.parent), path.name, load)
    assert "gguf_file" in calls[-1] and third(text)["input_ids"] == first(text)["input_ids"]
    assert (entry / "tokenizer_config.json").exists()

    monkeypatch.setenv("RFTGYM_CACHE", "off")
    calls.clear()
    gguf_cache.gguf_tokenizer(str(path.parent), path.name, load)
    assert "gguf_file" in calls[0]
