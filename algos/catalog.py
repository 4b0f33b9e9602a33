"""The algorithms rftgym ships, as lazy references (registered by the built-in plugin).

``dr_grpo``, ``dapo`` and ``gspo`` are GRPO with the variant's defaults (``algos/grpo.py``).
"""

BUILTIN_ALGORITHMS: dict[str, str] = {
    "grpo": "rftgym.algos.grpo:GRPO",
    "dr_grpo": "rftgym.algos.grpo:DrGRPO",
    "dapo": "rftgym.algos.grpo:DAPO",
    "gspo": "rftgym.algos.grpo:GSPO",
    "ppo": "rftgym.algos.ppo:PPO",
    "rloo": "rftgym.algos.rloo:RLOO",
    "reinforce": "rftgym.algos.reinforce:REINFORCE",
}
