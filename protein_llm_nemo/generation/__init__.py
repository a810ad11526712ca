"""Generation on the megatron policy: batched, KV-cached sampling at any TP/PP/DP layout (see `engine.py`)."""

from protein_llm_nemo.generation.engine import generate
from protein_llm_nemo.generation.prompts import Prompt
from protein_llm_nemo.generation.rollouts import Rollouts, Sample
from protein_llm_nemo.generation.sampling import SamplingParams

__all__ = ["Prompt", "Rollouts", "Sample", "SamplingParams", "generate"]
