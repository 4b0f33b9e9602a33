"""The rewards rftgym ships, as lazy references (registered by the built-in plugin)."""

BUILTIN_REWARDS: dict[str, str] = {
    "math": "rftgym.rewards.math:MathReward",
    "exact_match": "rftgym.rewards.format:ExactMatchReward",
    "format": "rftgym.rewards.format:FormatReward",
    "length": "rftgym.rewards.format:LengthReward",
    "reward_model": "rftgym.rewards.reward_model:RewardModelReward",
    "countdown": "rftgym.envs.tasks.countdown:CountdownReward",
    "code": "rftgym.rewards.code:CodeReward",
    "reasoning_gym": "rftgym.rewards.reasoning_gym:ReasoningGymReward",
    "reward_model_rank": "rftgym.rewards.reward_model_rank:RewardModelRankReward",
}

GROUP_REWARDS: frozenset[str] = frozenset({"reward_model_rank"})
"""Built-ins that score one prompt's group of completions per call (registered with ``group=True``)."""
