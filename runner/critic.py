"""The critic for algorithms that need one (PPO): a transformer backbone with a scalar head."""
from __future__ import annotations

import torch
from torch import nn

from .policy import _position_ids


class ValueModel(nn.Module):
    """``V(s)`` for every completion position: a backbone (``AutoModel``) plus ``Linear(hidden, 1)``."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        hidden = backbone.config.hidden_size
        self.value_head = nn.Linear(hidden, 1)
        # A zero head starts every value at 0, so early advantages are the plain returns.
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    @classmethod
    def from_causal_lm(cls, causal_lm: nn.Module) -> "ValueModel":
        """A critic on its own copy of the policy's backbone (the default)."""
        import copy

        base = getattr(causal_lm, causal_lm.base_model_prefix, None) or causal_lm.model
        return cls(copy.deepcopy(base))

    @classmethod
    def from_pretrained(cls, path: str, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False) -> "ValueModel":
        """A critic whose backbone is loaded from ``path`` (``AutoModel``)."""
        from transformers import AutoModel

        return cls(AutoModel.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code))

    def forward(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
                completion_mask: torch.Tensor) -> torch.Tensor:
        """Values ``[N, T]``: entry t is V of the state before completion token t."""
        input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
        mask = torch.cat([prompt_mask, completion_mask], dim=1)
        hidden = self.backbone(input_ids=input_ids, attention_mask=mask, position_ids=_position_ids(mask),
                               use_cache=False).last_hidden_state      # [N, P+T, H]
        T = completion_ids.size(1)
        states = hidden[:, -T - 1:-1]                                   # [N, T, H]: the state before token t
        return self.value_head(states.float()).squeeze(-1) * completion_mask
