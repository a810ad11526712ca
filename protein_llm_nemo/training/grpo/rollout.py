"""Rollouts for a GRPO step: records -> generation prompts -> `num_generations` completions per prompt from the
policy being trained (`protein_llm_nemo.generation`) -> rewards from the reward registry, every component kept.

    groups = collect_groups(model, records, prompt_builder, sampling, reward_fn, tokenizer)

A `Group` is one prompt and its G samples: token ids, generation log-probs, stop reasons, rewards and their
components. Dynamic sampling (`dynamic_sampling.py`) decides which groups train.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.generation import Prompt, SamplingParams, generate

__all__ = ["Group", "PromptBuilder", "collect_groups"]


@dataclass
class Group:
    """One prompt's samples. `rewards [G]`, `components` name -> `[G]`, `format_ok [G]`."""

    record: ProteinRecord
    prompt_ids: list[int]
    sequences: list[str]
    completions: list[list[int]]
    generation_logprobs: list[list[float]]
    stop_reasons: list[str]
    texts: list[str]
    rewards: torch.Tensor
    components: dict[str, torch.Tensor] = field(default_factory=dict)
    format_ok: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return len(self.completions)

    @property
    def zero_variance(self) -> bool:
        return bool(self.rewards.max() <= self.rewards.min())

    @property
    def truncated(self) -> torch.Tensor:
        """`[G]` True where the length limit cut the sample (overlong: masked out of the loss)."""
        return torch.tensor([reason == "length" for reason in self.stop_reasons])


class PromptBuilder:
    """Records -> generation prompt ids, formatted exactly as SFT formats the user turn (same chat template,
    system prompt and protein placeholders), so the policy continues the format it was trained on."""

    def __init__(self, tokenizer: Any, bridge_config: Any, system_prompt: str | None = "default") -> None:
        from protein_llm_nemo.data.formatting import FormattingConfig, RecordFormatter
        from protein_llm_nemo.tokenizer import ChatFormatter, ChatFormatterConfig

        chat_config = (
            ChatFormatterConfig()
            if system_prompt == "default"
            else ChatFormatterConfig(system_prompt=system_prompt)
        )
        self.chat = ChatFormatter(tokenizer, chat_config)
        self.records = RecordFormatter(
            self.chat, FormattingConfig(bridge=bridge_config.name, num_slots=max(bridge_config.num_slots, 1))
        )
        self.uses_encoder = bridge_config.uses_encoder

    def __call__(self, record: ProteinRecord) -> tuple[list[int], list[str]]:
        """(prompt ids, the proteins its placeholders stand for: none for the text bridge)."""
        from protein_llm_nemo.tokenizer import USER_ROLE

        ids = self.chat.format_prompt([{"role": USER_ROLE, "content": self.records.user_text(record)}])
        return ids, list(record.sequences) if self.uses_encoder else []


RewardFn = Callable[[ProteinRecord, str], Any]  # -> RewardResult(total, components, parsed_answer, format_ok)
EmbedFn = Callable[[list[str]], tuple[torch.Tensor, torch.Tensor] | None]


def collect_groups(
    model: Any,
    records: Sequence[ProteinRecord],
    build_prompt: PromptBuilder,
    sampling: SamplingParams,
    reward_fn: RewardFn,
    tokenizer: Any,
    embed: EmbedFn | None = None,
) -> list[Group]:
    """Generate `sampling.n` completions per record with the policy and score them. Every rank of the model
    layout calls it with the same records (the generation engine shards them over data parallelism and
    gathers the completions, so every rank holds every group and scores it identically)."""
    prompts = []
    for record in records:
        ids, sequences = build_prompt(record)
        if sequences and embed is not None:
            embeddings, mask = embed(sequences)
            prompts.append(Prompt(ids, embeddings=embeddings, mask=mask))
        else:
            prompts.append(Prompt(ids, sequences=sequences))
    rollouts = generate(model, prompts, sampling)
    groups: list[Group] = []
    for index, record in enumerate(records):
        samples = [s for s in rollouts if s.prompt_index == index]
        texts = [tokenizer.decode(s.token_ids, skip_special_tokens=True).strip() for s in samples]
        results = [reward_fn(record, text) for text in texts]
        names = sorted({name for r in results for name in r.components})
        groups.append(
            Group(
                record=record,
                prompt_ids=list(prompts[index].input_ids),
                sequences=list(record.sequences) if model.bridge_config.uses_encoder else [],
                completions=[list(s.token_ids) for s in samples],
                generation_logprobs=[list(s.logprobs) for s in samples],
                stop_reasons=[s.stop_reason for s in samples],
                texts=texts,
                rewards=torch.tensor([float(r.total) for r in results]),
                components={
                    name: torch.tensor([float(r.components.get(name, 0.0)) for r in results])
                    for name in names
                },
                format_ok=torch.tensor([bool(r.format_ok) for r in results]),
            )
        )
    return groups
