"""The batch of sampled completions that algorithms turn into a loss (see docs/internals.md)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Rollout:
    """N = B·G sequences (groups contiguous): prompt (left-padded) + completion (right-padded).

    Per-token tensors are aligned with ``completion_ids``: ``old_logp[:, t]`` is the sampling
    policy's log π(completion_ids[:, t] | prompt, completion_ids[:, :t]) and ``values[:, t]`` is
    V of the state before token t.
    """

    prompt_ids: Tensor                  # [N, P] long, left-padded
    prompt_mask: Tensor                 # [N, P] 1 on real prompt tokens
    completion_ids: Tensor              # [N, T] long, right-padded
    completion_mask: Tensor             # [N, T] 1 on real completion tokens (incl. EOS)
    old_logp: Tensor                    # [N, T] log-probs under the policy that sampled
    rewards: Tensor                     # [N] sequence rewards
    group_ids: Tensor                   # [N] which prompt each sequence answers
    ref_logp: Tensor | None = None      # [N, T] frozen reference (when the algorithm needs it)
    values: Tensor | None = None        # [N, T] critic values at sampling time (PPO)
    advantages: Tensor | None = None    # [N, T] filled by Algorithm.advantages
    returns: Tensor | None = None       # [N, T] value targets (PPO)
    norm_tokens: float | None = None    # global completion-token count of the optimizer step
    norm_seqs: float | None = None      # global sequence count of the optimizer step
    # The sampling budget (``rollout.max_new_tokens``) the runner sampled this rollout with:
    # Dr. GRPO's constant divisor (as the paper and TRL use it), the same for every minibatch,
    # micro-batch and rank, so the loss does not depend on how the batch is split. It belongs
    # to the rollout, so select()/minibatches() keep it. None (a hand-built rollout): this T.
    norm_len: int | None = None
    # Multi-turn episodes (runner/episodes.py): the completion is the whole transcript after the
    # first prompt, policy turns and env replies interleaved. ``completion_mask`` is 1 on policy
    # tokens only (the trained ones); ``context_mask`` is 1 on every real token, env replies
    # included, and is what the model attends to. None (single-step): the completion mask.
    context_mask: Tensor | None = None  # [N, T] 1 on policy and env tokens
    turn_rewards: Tensor | None = None  # [N, T] each turn's reward at its last policy token; rewards = their sum

    def __len__(self) -> int:
        return self.completion_ids.shape[0]

    def _tensor_fields(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                yield f.name, value

    def select(self, index: Tensor | slice | list[int]) -> "Rollout":
        """The sequences at ``index`` (rows only; T is kept so per-token shapes stay aligned).

        The normalisers are kept: a selection is a micro-batch of the same optimizer step.
        """
        if isinstance(index, list):
            index = torch.as_tensor(index, dtype=torch.long)
        if isinstance(index, Tensor):
            index = index.to(self.completion_ids.device)
        return dataclasses.replace(self, **{name: value[index] for name, value in self._tensor_fields()})

    def to(self, device: torch.device | str) -> "Rollout":
        """The same rollout with every tensor on ``device``."""
        return dataclasses.replace(self, **{name: value.to(device) for name, value in self._tensor_fields()})

    def minibatches(self, n: int, generator: torch.Generator | None = None) -> list["Rollout"]:
        """A shuffled split into ``n`` parts whose sizes differ by at most one.

        Each part is one optimizer step, so its per-step normalisers (``norm_tokens``,
        ``norm_seqs``) are cleared for the runner to set globally, over ranks; ``norm_len``, the
        sampling budget, is the rollout's and is kept. Groups may be split: advantages are
        already computed.
        """
        if not 1 <= n <= len(self):
            raise ValueError(f"cannot split {len(self)} sequences into {n} minibatches")
        perm = torch.randperm(len(self), generator=generator)
        return [dataclasses.replace(self.select(part), norm_tokens=None, norm_seqs=None)
                for part in torch.tensor_split(perm, n)]

    @property
    def input_ids(self) -> Tensor:
        """[N, P+T] prompt then completion, the model's input."""
        return torch.cat([self.prompt_ids, self.completion_ids], dim=1)

    @property
    def attend_mask(self) -> Tensor:
        """[N, T] 1 on every real completion-side token (env replies included): what forwards attend to."""
        return self.completion_mask if self.context_mask is None else self.context_mask

    @property
    def attention_mask(self) -> Tensor:
        """[N, P+T] 1 on real tokens."""
        return torch.cat([self.prompt_mask, self.attend_mask.to(self.prompt_mask.dtype)], dim=1)

    @property
    def num_completion_tokens(self) -> int:
        """Real completion tokens in this rollout (the local ``norm_tokens``)."""
        return int(self.completion_mask.sum().item())
