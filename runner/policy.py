"""The policy: a causal LM and its tokenizer; sampling and per-token log-probs.

Knows nothing about rewards or algorithms. Sampling is a KV-cache loop that
(1) runs each distinct prompt's prefill once and shares it across its G completions, and
(2) drops finished rows from the batch (and the cache) so no decode compute is spent on them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..envs.formatting import Conversation, chat_messages
from ..errors import RftgymError
from .distributed import DistInfo, any_rank
from .kv_cache import reserved_cache
# completion_logprobs and _shared_prompt_logits live in .logprobs; importable from here as before
from .logprobs import _cache_kwarg, _position_ids, _shared_prompt_logits, causal_lm, completion_logprobs  # noqa: F401
from .parallel import is_sharded


@dataclass
class Samples:
    """Sampled completions for ``len(prompts) * group_size`` rows, groups contiguous."""

    prompt_ids: torch.Tensor       # [N, P] left-padded
    prompt_mask: torch.Tensor      # [N, P]
    completion_ids: torch.Tensor   # [N, T] right-padded with pad_token_id
    completion_mask: torch.Tensor  # [N, T] 1 on generated tokens incl. EOS
    logp: torch.Tensor             # [N, T] sampling log-probs (logits / temperature), 0 on padding
    texts: list[str]               # N decoded completions (without EOS/pad)


def _filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Top-k then nucleus filtering of ``[n, V]`` logits (masked entries set to -inf)."""
    if top_k > 0 and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        remove = cumulative - sorted_logits.softmax(-1) >= top_p  # keep the token that crosses top_p
        remove_unsorted = torch.zeros_like(remove).scatter(-1, order, remove)
        logits = logits.masked_fill(remove_unsorted, float("-inf"))
    return logits


def sample_categorical(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One index per row of ``probs`` ``[n, V]`` (rows sum to 1 up to rounding), by inverse CDF.

    ``torch.multinomial`` draws V exponentials per row (40 ms a step for 32 rows of a 49k
    vocabulary on one CPU thread); the inverse CDF draws one uniform per row. The CDF is summed
    in float64, and the first index whose CDF exceeds ``u · total`` has positive mass, so a
    filtered (zero-probability) token is never drawn.
    """
    cdf = probs.cumsum(-1, dtype=torch.float64)                                      # [n, V]
    u = torch.rand((probs.size(0), 1), dtype=torch.float64, device=probs.device, generator=generator)
    idx = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)                       # [n, 1]
    return idx.squeeze(-1).clamp_(max=probs.size(-1) - 1)


def resolve_chat_template(setting: bool | str, tokenizer, model_name: str = "the model") -> bool:
    """``model.chat_template``: ``auto`` applies the template when the tokenizer has one
    (a chat model); ``true`` requires one; ``false`` feeds prompts as plain text."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if setting == "auto":
        return has
    if setting and not has:
        raise RftgymError(f"model.chat_template=true but the tokenizer of {model_name!r} has no chat template; "
                          f"use model.chat_template=auto or false")
    return bool(setting)


def end_of_turn_ids(tokenizer) -> list[int]:
    """The special token(s) the chat template puts after an assistant turn (``<|im_end|>``,
    ``<|eot_id|>``, ``<end_of_turn>``, …): a chat model's completion ends there, whatever
    ``eos_token`` says."""
    marker = "rftgym-end-of-turn-probe"
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"},
                                              {"role": "assistant", "content": marker}], tokenize=False)
    except Exception:
        return []
    if marker not in text:
        return []
    special = set(tokenizer.all_special_ids)
    tail = tokenizer(text.split(marker, 1)[1], add_special_tokens=False)["input_ids"]
    return [next(t for t in tail if t in special)] if any(t in special for t in tail) else []


class Policy:
    """A causal LM plus tokenizer on a device, with sampling and log-prob helpers."""

    def __init__(self, model: torch.nn.Module, tokenizer, device: torch.device | str = "cpu",
                 autocast_dtype: torch.dtype | None = None, chat_template: bool | str = False,
                 system_prompt: str | None = None, model_name: str = "the model") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.autocast_dtype = autocast_dtype
        self.system_prompt = system_prompt
        self.chat_template = resolve_chat_template(chat_template, tokenizer, model_name)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        self.pad_id = int(tokenizer.pad_token_id)
        if self.chat_template:
            self._check_template(model_name)
        self.eos_ids = self._eos_ids()
        self._cache_arg = _cache_kwarg(self._unwrapped)
        self._prompt_cache: dict[tuple[bool, str], list[int]] = {}

    @property
    def _unwrapped(self) -> torch.nn.Module:
        return causal_lm(self.model)

    def _check_template(self, model_name: str) -> None:
        """Render one prompt now, so a template that cannot (no system role, bad Jinja) fails
        before training with one line naming the model and the setting."""
        try:
            self.format_prompt("What is 1 + 1?")
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise RftgymError(f"model {model_name!r}: its tokenizer's chat template failed to render a prompt"
                              f"{' with the env system_prompt' if self.system_prompt else ''} "
                              f"({type(exc).__name__}: {first}); set model.chat_template=false to feed "
                              f"prompts as plain text") from None

    def _eos_ids(self) -> list[int]:
        ids = set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        gen = getattr(self._unwrapped, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None)
        if isinstance(eos, int):
            ids.add(eos)
        elif isinstance(eos, (list, tuple)):
            ids.update(int(e) for e in eos)
        if self.chat_template:
            ids.update(end_of_turn_ids(self.tokenizer))
        return sorted(ids)

    def autocast(self):
        """bf16 autocast where configured (CUDA by default), a no-op context otherwise."""
        if self.autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    # -- tokenisation ---------------------------------------------------------------------------
    def format_prompt(self, prompt: str) -> str:
        """The text the model reads: the chat template over the prompt's turns (a plain prompt
        is the user turn, after the env's system prompt) when it applies, else the prompt."""
        if not self.chat_template:
            return str(prompt)
        messages = chat_messages(prompt, self.system_prompt)
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode_prompts(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ``[B, P]`` ids and mask; token ids are cached per prompt."""
        rows = []
        for prompt in prompts:
            key = (isinstance(prompt, Conversation), str(prompt))
            ids = self._prompt_cache.get(key)
            if ids is None:
                # a rendered template already holds its special tokens (BOS included)
                ids = self.tokenizer(self.format_prompt(prompt), add_special_tokens=not self.chat_template)["input_ids"]
                if not ids:
                    raise ValueError(f"prompt {prompt[:40]!r} tokenizes to nothing")
                if len(self._prompt_cache) > 100_000:
                    self._prompt_cache.clear()
                self._prompt_cache[key] = ids
            rows.append(ids)
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r):] = 1
        return ids.to(self.device), mask.to(self.device)

    def decode(self, completion_ids: torch.Tensor, completion_mask: torch.Tensor) -> list[str]:
        """Completion texts without EOS and padding."""
        eos = set(self.eos_ids)
        rows = [[t for t, m in zip(ids, mask) if m and t not in eos]
                for ids, mask in zip(completion_ids.tolist(), completion_mask.tolist())]
        # One batched call: a fast tokenizer decodes the whole batch in Rust.
        return self.tokenizer.batch_decode(rows, skip_special_tokens=True)

    # -- sampling -------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, prompts: Sequence[str], group_size: int = 1, max_new_tokens: int = 16,
               temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, greedy: bool = False,
               generator: torch.Generator | None = None) -> Samples:
        """Sample ``group_size`` completions for each of ``prompts`` (rows ``i*G … i*G+G-1``)."""
        model = self._unwrapped
        was_training = model.training
        model.eval()
        try:
            with self.autocast():
                return self._sample(model, prompts, group_size, max_new_tokens, temperature, top_p, top_k,
                                    greedy, generator)
        finally:
            model.train(was_training)

    @torch.no_grad()
    def sample_encoded(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, max_new_tokens: int = 16,
                       temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, greedy: bool = False,
                       generator: torch.Generator | None = None) -> Samples:
        """:meth:`sample` (one completion each) from already tokenized, left-padded contexts
        ``[B, P]`` (a multi-turn transcript, whose tokens must not be re-tokenized)."""
        model = self._unwrapped
        was_training = model.training
        model.eval()
        try:
            with self.autocast():
                return self._sample(model, None, 1, max_new_tokens, temperature, top_p, top_k, greedy, generator,
                                    encoded=(prompt_ids.to(self.device), prompt_mask.to(self.device)))
        finally:
            model.train(was_training)

    def _sample(self, model, prompts, G, max_new_tokens, temperature, top_p, top_k, greedy, generator,
                encoded=None) -> Samples:
        prompt_ids, prompt_mask = encoded if encoded is not None else self.encode_prompts(prompts)  # [B, P]
        B, P = prompt_ids.shape
        N = B * G
        reserved = reserved_cache(model, P + max_new_tokens)
        given = {self._cache_arg: reserved} if reserved is not None else {}
        out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=_position_ids(prompt_mask),
                    use_cache=True, logits_to_keep=1, **given)
        cache = out.get("cache") if out.get("cache") is not None else out.get("past_key_values")
        logits = out.logits[:, -1].float()                      # [B, V]
        if G > 1:  # the prompt's prefill is shared by its G completions
            cache.batch_repeat_interleave(G)
            logits = logits.repeat_interleave(G, 0)             # [N, V]
        attn = prompt_mask.repeat_interleave(G, 0)              # [n_active, P + t]
        next_pos = prompt_mask.sum(-1, keepdim=True).repeat_interleave(G, 0)  # [n_active, 1]

        tokens = torch.full((N, max_new_tokens), self.pad_id, dtype=torch.long, device=self.device)
        logps = torch.zeros((N, max_new_tokens), dtype=torch.float32, device=self.device)
        lengths = torch.full((N,), max_new_tokens, dtype=torch.long, device=self.device)
        active = torch.arange(N, device=self.device)            # original row of each active row
        eos = torch.tensor(self.eos_ids or [-1], device=self.device)
        lockstep = _lockstep(model)
        for t in range(max_new_tokens):
            scaled = logits / temperature
            logprobs = scaled.log_softmax(-1)                   # the sampling distribution's log-probs
            if greedy:
                tok = scaled.argmax(-1)
            else:
                filtered = _filter_logits(scaled, top_k, top_p)
                probs = logprobs.exp() if filtered is scaled else filtered.softmax(-1)
                tok = sample_categorical(probs, generator)
            tokens[active, t] = tok
            logps[active, t] = logprobs.gather(-1, tok[:, None]).squeeze(-1)
            done = torch.isin(tok, eos)
            lengths[active[done]] = t + 1
            if t == max_new_tokens - 1:
                break
            keep = (~done).nonzero().squeeze(-1)
            if lockstep and not any_rank(keep.numel() > 0, lockstep):
                break  # every rank is done
            if keep.numel() == 0:
                if lockstep:  # sharded weights: keep joining the other ranks' forwards until they finish
                    _idle_decode(model, t, max_new_tokens, self.pad_id, self.device, lockstep)
                break
            if keep.numel() < active.numel():  # compact: finished rows leave the batch and the cache
                cache.batch_select_indices(keep)
                active, tok, attn, next_pos = active[keep], tok[keep], attn[keep], next_pos[keep]
            attn = torch.cat([attn, attn.new_ones((attn.size(0), 1))], dim=1)
            out = model(input_ids=tok[:, None], attention_mask=attn, position_ids=next_pos,
                        use_cache=True, **{self._cache_arg: cache})
            cache = out.get("cache") if out.get("cache") is not None else out.get("past_key_values")
            logits = out.logits[:, -1].float()
            next_pos = next_pos + 1

        del out, cache, logits  # the KV cache goes now, not when the caller's frame ends (before the update)
        T = int(lengths.max().item()) if N else 0
        completion_ids = tokens[:, :T]
        completion_mask = (torch.arange(T, device=self.device)[None, :] < lengths[:, None]).long()
        completion_ids = completion_ids.masked_fill(completion_mask == 0, self.pad_id)
        logp = logps[:, :T] * completion_mask
        return Samples(prompt_ids=prompt_ids.repeat_interleave(G, 0), prompt_mask=prompt_mask.repeat_interleave(G, 0),
                       completion_ids=completion_ids, completion_mask=completion_mask, logp=logp,
                       texts=self.decode(completion_ids, completion_mask))


def _lockstep(model: torch.nn.Module):
    """The job's ``DistInfo`` when ``model`` is FSDP-sharded over several ranks, else None.

    A sharded forward is a collective, so every rank must run the same number of them: the
    decode loop then stops only when all ranks are done, not when this rank is.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return None
    return DistInfo(dist.get_rank(), dist.get_world_size()) if is_sharded(model) else None


def _idle_decode(model: torch.nn.Module, t: int, max_new_tokens: int, pad_id: int, device: torch.device, info) -> None:
    """Mirror the busy ranks' decode steps from step ``t`` with 1-row dummy forwards.

    A busy rank runs, per step: the "still active" all-reduce, then the decode forward (none
    after the last step). This rank, whose all-reduce at ``t`` already said "someone is active",
    runs the same forwards on a throw-away pad token until the all-reduce says all are done.
    """
    dummy = torch.full((1, 1), pad_id, dtype=torch.long, device=device)
    while True:
        model(input_ids=dummy, use_cache=False)
        t += 1
        if t == max_new_tokens - 1 or not any_rank(False, info):
            return
