"""A decoding KV cache with room reserved up front, so a decode step writes one position.

transformers' ``DynamicLayer`` grows by ``torch.cat``: every decode step copies each layer's
whole cache, O(T²) bytes over T steps (1.2 s of a 15 s sampling phase for SmolLM2-135M, 32
rows × 48 tokens, one CPU thread). :class:`ReservedLayer` keeps a buffer with room for the
prompt and every new token and returns views of its filled part, so a step copies one
position per layer. Used by the sampler only (no gradients flow through it); layers of other
kinds (sliding windows, quantized, linear attention) are left as transformers made them.
"""
from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer


class ReservedLayer(DynamicLayer):
    """A :class:`DynamicLayer` whose keys/values are views of a ``[B, H, capacity, D]`` buffer."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self._k: torch.Tensor | None = None   # [B, H, capacity, D]
        self._v: torch.Tensor | None = None
        self._len = 0

    def _views(self) -> None:
        self.keys, self.values = self._k[..., :self._len, :], self._v[..., :self._len, :]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = key_states.shape[-2]
        if self._k is None or self._len + n > self._k.shape[-2]:
            self._reserve(key_states, value_states, max(self.capacity, self._len + n))
        self._k[..., self._len:self._len + n, :] = key_states
        self._v[..., self._len:self._len + n, :] = value_states
        self._len += n
        self._views()
        return self.keys, self.values

    def _reserve(self, key_states: torch.Tensor, value_states: torch.Tensor, size: int) -> None:
        """A buffer for ``size`` positions holding what is cached so far (rare: capacity outgrown)."""
        def grown(old: torch.Tensor | None, new: torch.Tensor) -> torch.Tensor:
            buf = new.new_empty((*new.shape[:2], size, new.shape[-1]))
            if old is not None and self._len:
                buf[..., :self._len, :] = old[..., :self._len, :]
            return buf

        self._k, self._v = grown(self._k, key_states), grown(self._v, value_states)

    def get_seq_length(self) -> int:
        return self._len

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self._len:
            self._k, self._v = self._k.repeat_interleave(repeats, 0), self._v.repeat_interleave(repeats, 0)
            self._views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self._len:
            self._k, self._v = self._k[indices], self._v[indices]
            self._views()

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.batch_select_indices(beam_idx.to(self._k.device) if self._k is not None else beam_idx)

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative count of tokens to remove, got {tokens_to_remove}")
        if tokens_to_remove and self._len:
            self._len = max(0, self._len + tokens_to_remove)
            self._views()

    def reset(self) -> None:
        self._k = self._v = self.keys = self.values = None
        self._len = 0
        self.is_initialized = False


def reserved_cache(model: torch.nn.Module, capacity: int) -> DynamicCache | None:
    """A ``DynamicCache`` for ``model`` whose full-attention layers reserve ``capacity`` positions;
    None when transformers cannot build one from the model's config (the model then makes its own)."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    try:
        cache = DynamicCache(config=config)
    except Exception:  # noqa: BLE001 - configs transformers cannot map to layer types: keep its default
        return None
    if not cache.layers:
        return None
    cache.layers = [ReservedLayer(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache
