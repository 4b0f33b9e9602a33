"""The algorithms rftgym ships, as lazy references (registered by the built-in plugin)."""

BUILTIN_ALGORITHMS: dict[str, str] = {
    "grpo": "rftgym.algos.grpo:GRPO",
    "ppo": "rftgym.algos.ppo:PPO",
    "rloo": "rftgym.algos.rloo:RLOO",
    "reinforce": "rftgym.algos.reinforce:REINFORCE",
}
