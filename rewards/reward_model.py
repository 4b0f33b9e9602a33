"""The ``reward_model`` reward: a learned Bradley–Terry scorer used like any other reward.

``rftgym.get_reward("reward_model", path=DIR)`` loads an ``AutoModelForSequenceClassification``
with one label (e.g. ``rftgym train-rm``'s ``final/``) and scores ``prompt + completion`` text.
The text helpers here (:func:`pair_text`, :func:`ensure_pad_token`) are shared with the trainer
(``runner/train_rm.py``, which imports them from here) so that training and scoring see exactly
the same strings.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..devices import resolve_device
from ..errors import RftgymError

log = logging.getLogger("rftgym.rewards")

Message = dict[str, Any]


# --------------------------------------------------------------------------------------------------
# Text shared by training and scoring
# --------------------------------------------------------------------------------------------------

def _is_messages(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(m, dict) and "content" in m for m in value)


def _as_messages(value: Any, role: str) -> list[Message]:
    if _is_messages(value):
        return [dict(m) for m in value]
    return [{"role": role, "content": "" if value is None else str(value)}] if value not in (None, "") else []


def pair_text(tokenizer: Any, prompt: Any, completion: Any, chat_template: bool = False) -> str:
    """The exact string a reward model reads for ``(prompt, completion)``.

    Plain strings are concatenated (TRL's convention, no separator, **no EOS appended**: the
    measured recipe ranked near chance with an appended EOS). Conversational values (lists of
    ``{"role", "content"}`` messages, TRL's conversational format) — or plain strings when
    ``chat_template`` is true — go through the tokenizer's chat template when it has one, else
    their contents are joined with newlines.
    """
    conversational = _is_messages(prompt) or _is_messages(completion)
    if not (conversational or chat_template):
        return ("" if prompt is None else str(prompt)) + ("" if completion is None else str(completion))
    messages = _as_messages(prompt, "user") + _as_messages(completion, "assistant")
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False)
    return "\n".join(str(m["content"]) for m in messages)


def uses_template(tokenizer: Any, prompt: Any, completion: Any, chat_template: bool) -> bool:
    """Whether :func:`pair_text` rendered a chat template (which then holds the BOS itself)."""
    return bool(getattr(tokenizer, "chat_template", None)) and (
        chat_template or _is_messages(prompt) or _is_messages(completion))


def ensure_pad_token(tokenizer: Any, model: Any | None = None, allow_new_token: bool = True) -> int:
    """Give ``tokenizer`` (and ``model.config``) a pad token that differs from EOS; return its id.

    transformers 5's sequence classifiers pool at the rightmost token that is not
    ``pad_token_id``: None fails for batches > 1, and pad == eos would silently skip a trailing
    EOS. Preference order: the existing pad, the model config's pad, UNK, a new ``<|rm_pad|>``
    token (embeddings resized; only when ``allow_new_token``, i.e. before training).
    """
    eos = tokenizer.eos_token_id
    config_pad = getattr(getattr(model, "config", None), "pad_token_id", None)
    pad = tokenizer.pad_token_id
    if pad is None or pad == eos:
        if config_pad is not None and config_pad != eos and config_pad < len(tokenizer):
            tokenizer.pad_token = tokenizer.convert_ids_to_tokens(config_pad)
        elif tokenizer.unk_token_id is not None and tokenizer.unk_token_id != eos:
            tokenizer.pad_token = tokenizer.unk_token
        elif allow_new_token:
            tokenizer.add_special_tokens({"pad_token": "<|rm_pad|>"})
            if model is not None:
                model.resize_token_embeddings(len(tokenizer))
        elif pad is None:  # a trained model with no spare token: EOS is safe as we never append it
            tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.pad_token_id is None:
        raise RftgymError("the reward model's tokenizer has no pad, unk or eos token to pad with")
    if model is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer.pad_token_id


def check_classifier_path(path: str | Path) -> Any:
    """The config at ``path`` if it is a one-label sequence classifier, else a one-line error."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RftgymError(f"reward model path {str(path)!r} is not a model directory or hub id ({first})") from None
    archs = list(getattr(config, "architectures", None) or [])
    if archs and not any(a.endswith("ForSequenceClassification") for a in archs):
        raise RftgymError(f"reward model path {str(path)!r} holds a {archs[0]}, not a sequence-classification "
                          "model; train one with `rftgym train-rm`")
    if config.num_labels != 1:
        raise RftgymError(f"reward model path {str(path)!r} is a classifier with {config.num_labels} labels; "
                          "a reward model needs exactly one (num_labels=1)")
    return config


# --------------------------------------------------------------------------------------------------
# The reward
# --------------------------------------------------------------------------------------------------

class RunningStats:
    """Running mean and variance of every score seen (Chan et al.'s parallel update; resumable)."""

    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0:
            return
        n, mean = values.size, float(values.mean())
        m2 = float(((values - mean) ** 2).sum())
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta ** 2 * self.count * n / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.count) if self.count > 1 else 1.0

    def state_dict(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.count, self.mean, self.m2 = int(state["count"]), float(state["mean"]), float(state["m2"])


class RewardModelReward:
    """Scores ``prompt + completion`` with a learned one-label sequence classifier.

    The model reads the score at the last non-pad token, in eval mode and without gradients,
    in batches of ``batch_size`` (sorted by length so padding is small; results are returned in
    the caller's order and do not depend on the batch size beyond float round-off).

    The reward model brings **its own tokenizer**: completions arrive as text and are
    re-tokenized, so its vocabulary (and chat template) may differ from the policy's.
    ``chat_template=True`` renders plain-string prompt/completion pairs with that chat template
    (conversational message lists always use it when the tokenizer has one) — use whatever the
    reward model was trained on. Texts longer than ``max_length`` tokens keep their end (where
    the score is read).

    ``normalize=True`` keeps a running mean/std of every raw score seen and returns
    ``(score − mean) / std`` (the batch is added to the statistics before it is normalised, so
    repeated calls then differ); ``clip=c`` clamps the returned value to ``[−c, c]``.
    ``state_dict()``/``load_state_dict()`` carry the statistics across a resume.
    """

    def __init__(self, path: str, batch_size: int = 64, device: str = "auto", normalize: bool = False,
                 clip: float | None = None, max_length: int = 512, chat_template: bool = False) -> None:
        if batch_size < 1:
            raise RftgymError(f"reward_model: batch_size must be >= 1, got {batch_size!r}")
        if clip is not None and clip <= 0:
            raise RftgymError(f"reward_model: clip must be > 0 or null, got {clip!r}")
        self.path = str(path)
        self.batch_size = int(batch_size)
        self.device_name = device
        self.normalize = bool(normalize)
        self.clip = None if clip is None else float(clip)
        self.max_length = int(max_length)
        self.chat_template = bool(chat_template)
        self.stats = RunningStats()
        self.model: Any = None
        self.tokenizer: Any = None
        self.device: Any = None

    @classmethod
    def check_options(cls, path: str = "", **_: Any) -> None:
        """Before a run (``--dry-run`` too): a local ``path`` that does not exist fails now,
        not after the policy has loaded. A hub id is ``name`` or ``owner/name``."""
        text = str(path)
        local = text.startswith(("/", ".", "~")) or text.count("/") > 1 or text.endswith("/")
        if local and not Path(text).expanduser().exists():
            hint = (f"; train one with: rftgym train-rm --output-dir {text[:-len('/final')]}"
                    if text.endswith("/final") else "")
            raise RftgymError(f"reward model path {text!r} does not exist{hint}")

    # -- life cycle ---------------------------------------------------------------------------

    def setup(self) -> None:
        """Load the model and tokenizer (the reward wrapper calls this on first use)."""
        if self.model is not None:
            return
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        check_classifier_path(self.path)
        self.device = resolve_device(self.device_name)
        try:
            model = AutoModelForSequenceClassification.from_pretrained(self.path, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(self.path)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RftgymError(f"reward model path {self.path!r} could not be loaded ({first})") from None
        if model.config.num_labels != 1:  # a config without ``architectures`` gets here
            raise RftgymError(f"reward model path {self.path!r} has {model.config.num_labels} labels; need 1")
        ensure_pad_token(tokenizer, model, allow_new_token=False)
        tokenizer.padding_side = "right"  # positions 0.. for every text, whatever the batch
        tokenizer.truncation_side = "left"  # keep the end: the score is read at the last token
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer

    def close(self) -> None:
        """Drop the model (the reward can be set up again)."""
        self.model = self.tokenizer = None
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover - torch is a dependency
            pass

    # -- scoring ------------------------------------------------------------------------------

    def score(self, prompts: Sequence[Any], completions: Sequence[Any]) -> np.ndarray:
        """Raw scores (float64 [N]) of ``prompt + completion``, no normalisation or clipping."""
        import torch

        self.setup()
        texts = [pair_text(self.tokenizer, p, c, self.chat_template) for p, c in zip(prompts, completions)]
        templated = [uses_template(self.tokenizer, p, c, self.chat_template) for p, c in zip(prompts, completions)]
        ids = [self._encode(t, tpl) for t, tpl in zip(texts, templated)]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.empty(len(ids), dtype=np.float64)
        pad = self.tokenizer.pad_token_id
        with torch.no_grad():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start:start + self.batch_size]
                width = max(1, max(len(ids[i]) for i in chunk))
                input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, i in enumerate(chunk):
                    input_ids[row, :len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
                    mask[row, :len(ids[i])] = 1
                logits = self.model(input_ids=input_ids.to(self.device),
                                    attention_mask=mask.to(self.device)).logits
                out[chunk] = logits[:, 0].float().cpu().numpy()
        return out

    def _encode(self, text: str, templated: bool) -> list[int]:
        # A chat template already carries BOS; otherwise let the tokenizer add its usual specials.
        return self.tokenizer(text, add_special_tokens=not templated, truncation=True,
                              max_length=self.max_length)["input_ids"]

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        scores = self.score(prompts, completions)
        if self.normalize:
            self.update_stats(scores)
            scores = (scores - self.stats.mean) / max(self.stats.std, 1e-8)
        if self.clip is not None:
            scores = np.clip(scores, -self.clip, self.clip)
        return [float(s) for s in scores]

    # -- normalisation state ------------------------------------------------------------------

    def update_stats(self, scores: Sequence[float]) -> None:
        """Add raw scores to the running statistics used by ``normalize``."""
        self.stats.update(np.asarray(scores, dtype=np.float64))

    def state_dict(self) -> dict[str, Any]:
        return {"stats": self.stats.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stats.load_state_dict(state["stats"])

    def __repr__(self) -> str:
        return f"RewardModelReward(path={self.path!r}, normalize={self.normalize}, clip={self.clip})"
