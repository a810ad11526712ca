"""`protein-llm generate --checkpoint`: answers from a megatron training (or converted) checkpoint, on the
megatron policy itself at this process group's TP/PP layout, with no export round trip.

    torchrun --nproc-per-node 2 -m protein_llm_nemo.cli generate --checkpoint runs/sft-mlp/step_0000020 \\
        --tensor-model-parallel-size 2 --input questions.jsonl --output answers.jsonl

Every rank builds its shard of the model, encodes the batch's proteins with the checkpoint's encoder and
runs `generate`; rank 0 writes the answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointGenerator"]


class CheckpointGenerator:
    """The same call interface as the HF backend: `validate(sequences)` and `(prompts, sequences, **sampling)`."""

    def __init__(
        self,
        checkpoint: str,
        tensor_model_parallel_size: int = 1,
        pipeline_model_parallel_size: int = 1,
        tokenizer: str = "offline",
        system_prompt: str | None = None,
        dtype: str | None = None,
    ) -> None:
        from protein_llm_nemo.conversion.checkpoints import load_protein_llm_checkpoint
        from protein_llm_nemo.hf.processing import ProteinLLMProcessor
        from protein_llm_nemo.runtime import ParallelConfig, initialize_distributed
        from protein_llm_nemo.tokenizer import TokenizerConfig, load_tokenizer
        from protein_llm_nemo.training.checkpoint_files import step_folder

        path = Path(checkpoint)
        if not path.exists():
            raise FileNotFoundError(f"--checkpoint {checkpoint}: no such folder")
        path = step_folder(path)  # a run folder: its latest complete step
        initialize_distributed(
            ParallelConfig(
                tensor_model_parallel_size=tensor_model_parallel_size,
                pipeline_model_parallel_size=pipeline_model_parallel_size,
            )
        )
        params_dtype = getattr(torch, dtype) if dtype else None
        self.model, self.spec, _ = load_protein_llm_checkpoint(path, params_dtype)
        self.model.eval()
        self.tokenizer = load_tokenizer(TokenizerConfig(source=tokenizer))
        bridge = self.spec.bridge_config
        self.processor = ProteinLLMProcessor(
            self.tokenizer,
            bridge=bridge.name,
            num_slots=bridge.num_slots if bridge.uses_encoder else 0,
            system_prompt=system_prompt,
        )
        self.encoder = None
        if bridge.uses_encoder and self.spec.encoder:
            from protein_llm_nemo.encoders import build_protein_encoder

            self.encoder = build_protein_encoder(self.spec.encoder, **self.spec.encoder_config)

    def validate(self, sequences: list[str]) -> list[str]:
        return self.processor.validate_sequences(sequences) if sequences else []

    def __call__(self, prompts: list[str], sequences: list[list[str]], **sampling: Any) -> list[str]:
        from protein_llm_nemo.generation import Prompt, SamplingParams, generate

        if any(sequences) and self.spec.bridge_config.uses_encoder and self.encoder is None:
            raise ValueError(f"{self.spec.bridge_config.name!r} checkpoint names no protein encoder")
        rows = []
        for prompt, seqs in zip(prompts, sequences, strict=True):
            ids = self.processor([prompt], proteins=[seqs])["input_ids"][0].tolist()
            as_text = not self.spec.bridge_config.uses_encoder
            rows.append(Prompt(ids, sequences=[] if as_text else seqs))
        params = SamplingParams(
            temperature=sampling["temperature"],
            top_p=sampling["top_p"],
            top_k=sampling["top_k"],
            max_new_tokens=sampling["max_new_tokens"],
            seed=sampling.get("seed", 0),
        )
        rollouts = generate(self.model, rows, params, encoder=self.encoder)
        return [
            self.tokenizer.decode(sample.token_ids, skip_special_tokens=True).strip() for sample in rollouts
        ]
