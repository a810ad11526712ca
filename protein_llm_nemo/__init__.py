"""protein-llm-nemo: teach Qwen3 language models to read proteins on megatron-core."""

__version__ = "0.1.0"

# Importing `hf` registers the HF ProteinLLM classes with transformers' Auto classes, lazily (it imports
# neither torch nor transformers).
from protein_llm_nemo import hf as hf  # noqa: E402
