"""Completions for evaluation records from a megatron checkpoint or an exported HF folder.

Both backends take records and return, per record, `n` completions (greedy or sampled):

- `MegatronGenerator`: the checkpoint's megatron model at this process group's TP/PP layout (every rank
  of the layout calls `complete` with the same records), prompts formatted exactly as training formats the
  user turn (`training.grpo.rollout.PromptBuilder`), the generation engine (`generation.generate`). A
  sample's random stream is keyed by its prompt's content and its index, so a resumed run samples what an
  uninterrupted one would have.
- `HFGenerator`: `transformers` `generate` through `generation.cli.HFGenerator` (the export's processor
  formats the prompt). Sampling is seeded per call from the batch's record ids: a resumed run, which
  regenerates whole batches, draws the same samples as long as the batch size is the same.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.evaluation.config import EvalConfig, EvalGenerationConfig

__all__ = ["EvalGenerator", "HFEvalGenerator", "MegatronGenerator", "build_generator", "checkpoint_step"]


class EvalGenerator(Protocol):
    """What the runner needs from a backend."""

    writes: bool  # this rank writes predictions and results (rank 0)

    def describe(self) -> dict[str, Any]:
        """kind, path, run (a label), step (None when unknown)."""

    def validate(self, sequences: list[str]) -> list[str]:
        """Normalised sequences, or an `InvalidSequenceError` (a ValueError) naming the bad one."""

    def complete(
        self, records: Sequence[ProteinRecord], n: int, settings: EvalGenerationConfig, greedy: bool
    ) -> list[list[str]]:
        """`n` completions per record, in record order."""


def checkpoint_step(path: Path) -> int | None:
    """The training step of a checkpoint folder (its train_state.json, else a step_NNNN name)."""
    state = path / "train_state.json"
    if state.is_file():
        try:
            return int(json.loads(state.read_text())["step"])
        except (ValueError, KeyError, TypeError):
            pass
    found = re.search(r"step_(\d+)", str(path))
    return int(found.group(1)) if found else None


def _is_rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


class MegatronGenerator:
    def __init__(self, config: EvalConfig, micro_batch_size: int) -> None:
        from protein_llm_nemo.generation.checkpoint_generator import CheckpointGenerator
        from protein_llm_nemo.training.checkpoint import latest_checkpoint
        from protein_llm_nemo.training.grpo.rollout import PromptBuilder

        path = Path(str(config.checkpoint))
        if not path.exists():
            raise FileNotFoundError(f"checkpoint {path}: no such folder")
        self.run_dir = path
        if (path / "latest").is_file():  # a run folder: its latest complete step
            path = latest_checkpoint(path) or path
        else:
            self.run_dir = path.parent
        self.path = path
        self.inner = CheckpointGenerator(
            str(path),
            config.tensor_model_parallel_size,
            config.pipeline_model_parallel_size,
            config.tokenizer,
            dtype=config.dtype,
        )
        self.build_prompt = PromptBuilder(
            self.inner.tokenizer, self.inner.spec.bridge_config, config.generation.system_prompt
        )
        self.micro_batch_size = micro_batch_size
        self.writes = _is_rank0()

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "megatron",
            "path": str(self.path),
            "run": self.run_dir.name,
            "step": checkpoint_step(self.path),
            "bridge": self.inner.spec.bridge_config.name,
        }

    def validate(self, sequences: list[str]) -> list[str]:
        if not sequences:
            return []
        sequences = self.inner.validate(sequences)
        encoder = self.inner.encoder
        if encoder is not None and hasattr(encoder, "prepare"):  # the encoder's own alphabet and length limit
            sequences = encoder.prepare(sequences, [f"protein {i}" for i in range(len(sequences))])
        return sequences

    def complete(
        self, records: Sequence[ProteinRecord], n: int, settings: EvalGenerationConfig, greedy: bool
    ) -> list[list[str]]:
        from protein_llm_nemo.generation import Prompt, SamplingParams, generate

        prompts = []
        for record in records:
            ids, sequences = self.build_prompt(record)
            prompts.append(Prompt(ids, sequences=sequences))
        params = SamplingParams(
            temperature=0.0 if greedy else settings.temperature,
            top_p=settings.top_p,
            top_k=settings.top_k,
            max_new_tokens=settings.max_new_tokens,
            n=n,
            seed=settings.seed,
        )
        rollouts = generate(
            self.inner.model, prompts, params, encoder=self.inner.encoder, batch_size=self.micro_batch_size
        )
        texts: list[list[str]] = [[] for _ in records]
        for sample in rollouts:
            text = self.inner.tokenizer.decode(sample.token_ids, skip_special_tokens=True).strip()
            texts[sample.prompt_index].append(text)
        return texts


class HFEvalGenerator:
    def __init__(self, config: EvalConfig, micro_batch_size: int) -> None:
        from protein_llm_nemo.generation.cli import HFGenerator

        self.path = Path(str(config.model))
        if not self.path.is_dir():
            raise FileNotFoundError(f"model {self.path}: no such folder")
        system_prompt = config.generation.system_prompt
        self.inner = HFGenerator(
            str(self.path), config.device, config.dtype, None if system_prompt == "default" else system_prompt
        )
        if system_prompt is None:  # no system turn, as a run trained with data.system_prompt=None
            self.inner.processor.use_default_system_prompt = False
        self.micro_batch_size = micro_batch_size
        self.writes = _is_rank0()

    def describe(self) -> dict[str, Any]:
        source = None
        conversion = self.path / "conversion.json"
        if conversion.is_file():
            source = json.loads(conversion.read_text()).get("exported_from")
        return {
            "kind": "hf",
            "path": str(self.path),
            "run": self.path.name,
            "step": checkpoint_step(Path(source)) if source else None,
            "exported_from": source,
        }

    def validate(self, sequences: list[str]) -> list[str]:
        return self.inner.validate(sequences)

    def complete(
        self, records: Sequence[ProteinRecord], n: int, settings: EvalGenerationConfig, greedy: bool
    ) -> list[list[str]]:
        import torch

        rows = [record for record in records for _ in range(n)]
        key = "|".join(record.id for record in records).encode()
        torch.manual_seed(settings.seed * 1_000_003 + zlib.crc32(key) + (0 if greedy else 1))
        sampling = {
            "temperature": 0.0 if greedy else settings.temperature,
            "top_p": settings.top_p,
            "top_k": settings.top_k,
            "max_new_tokens": settings.max_new_tokens,
        }
        texts: list[str] = []
        for start in range(0, len(rows), self.micro_batch_size):
            chunk = rows[start : start + self.micro_batch_size]
            texts += self.inner(
                [r.instruction for r in chunk], [list(r.sequences) for r in chunk], **sampling
            )
        return [texts[i * n : (i + 1) * n] for i in range(len(records))]


def build_generator(config: EvalConfig) -> EvalGenerator:
    if config.checkpoint is not None:
        return MegatronGenerator(config, config.data.micro_batch_size)
    return HFEvalGenerator(config, config.data.micro_batch_size)
