"""The GRPO stage on megatron-core: rollouts from the policy being trained, verifiable rewards, group-relative
advantages with dynamic sampling, the clipped policy-gradient loss with a KL to the reference policy, and
gradient routing between LoRA and the bridge.

    result = run_grpo(GRPOConfig(...))          # every rank; see `run.py`

One concern per module: `config`, `rollout`, `dynamic_sampling`, `advantages`, `batching`, `logprobs`,
`reference`, `loss`, `routing`, `step`, `run`.
"""

from protein_llm_nemo.training.grpo.config import GRPOConfig, GRPODataConfig, GRPOSection, RoutingConfig
from protein_llm_nemo.training.grpo.run import GRPOResult, run_grpo, setup_grpo

__all__ = [
    "GRPOConfig",
    "GRPODataConfig",
    "GRPOResult",
    "GRPOSection",
    "RoutingConfig",
    "run_grpo",
    "setup_grpo",
]
