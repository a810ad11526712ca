"""`ProteinLLMProcessor`: tokenizer + sequence validation + placeholder expansion for `ProteinLLMForCausalLM`.

    processor = AutoProcessor.from_pretrained(folder)
    inputs = processor("What does this protein do?", proteins=["MKTAYIAKQR"])
    ids = model.generate(**inputs, max_new_tokens=64)
    print(processor.batch_decode(ids[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True))

Each prompt becomes one user turn of the Qwen3 chat template (thinking disabled), exactly as training
formats it (`protein_llm_nemo.tokenizer.ChatFormatter`): embedding bridges append one
`<|protein_start|>` + num_slots x `<|protein_embed|>` + `<|protein_end|>` group per protein and return the
normalised sequences as `protein_sequences` (the model encodes them); the `text` bridge writes the residues
into the prompt. Batches are left-padded for generation.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from transformers import BatchFeature, ProcessorMixin

__all__ = ["ProteinLLMProcessor"]


class ProteinLLMProcessor(ProcessorMixin):
    tokenizer_class = "AutoTokenizer"

    def __init__(
        self,
        tokenizer: Any = None,
        bridge: str = "mlp",
        num_slots: int = 0,
        alphabet: str | None = None,
        max_length: int = 2048,
        system_prompt: str | None = None,
        use_default_system_prompt: bool = True,
        chat_template: str | None = None,
        **kwargs: Any,
    ) -> None:
        from protein_llm_nemo.encoders.config import ESM_ALPHABET

        if bridge != "text" and num_slots < 1:
            raise ValueError(f"the {bridge!r} bridge needs num_slots >= 1, got {num_slots}")
        self.bridge = bridge
        self.num_slots = int(num_slots)
        self.alphabet = alphabet or ESM_ALPHABET
        self.max_length = int(max_length)
        self.system_prompt = system_prompt
        self.use_default_system_prompt = use_default_system_prompt
        super().__init__(tokenizer, chat_template=chat_template)

    # -- pieces ---------------------------------------------------------------------------------
    def validate_sequences(self, sequences: Sequence[str], ids: Sequence[str] | None = None) -> list[str]:
        """Whitespace-stripped, upper-cased sequences; `InvalidSequenceError` (a ValueError) names the bad one."""
        from protein_llm_nemo.encoders.sequences import normalize_sequences

        return normalize_sequences(list(sequences), ids, alphabet=self.alphabet, max_length=self.max_length)

    def user_text(self, prompt: str, sequences: Sequence[str]) -> str:
        """The user turn of one sample: the prompt and its proteins (placeholders, or residues for `text`)."""
        if not sequences:
            return prompt
        if self.bridge == "text":
            from protein_llm_nemo.data.formatting import text_bridge_user_text

            return text_bridge_user_text(prompt, list(sequences))
        from protein_llm_nemo.tokenizer import build_protein_user_text

        return build_protein_user_text(prompt, self.num_slots, len(sequences))

    def _formatter(self):
        from protein_llm_nemo.tokenizer import DEFAULT_SYSTEM_PROMPT, ChatFormatter, ChatFormatterConfig

        system = self.system_prompt
        if system is None and self.use_default_system_prompt:
            system = DEFAULT_SYSTEM_PROMPT
        return ChatFormatter(self.tokenizer, ChatFormatterConfig(system_prompt=system))

    # -- call -------------------------------------------------------------------------------------
    def __call__(
        self,
        text: str | Sequence[str] | None = None,
        proteins: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
        return_tensors: str = "pt",
        **kwargs: Any,
    ) -> BatchFeature:
        """`text`: one prompt or a batch; `proteins`: the sequence(s) of each prompt (a string, a list for
        one prompt, or a list of lists for a batch). Returns `input_ids`, `attention_mask` (left-padded) and,
        for embedding bridges, `protein_sequences` (all proteins of the batch in order)."""
        import torch

        if text is None:
            raise ValueError("pass a prompt (text=...)")
        single = isinstance(text, str)
        prompts = [text] if single else list(text)
        if proteins is None:
            per_prompt: list[list[str]] = [[] for _ in prompts]
        elif isinstance(proteins, str):
            per_prompt = [[proteins]]
        elif single:
            per_prompt = [list(proteins)]
        else:
            per_prompt = [[p] if isinstance(p, str) else list(p) for p in proteins]
        if len(per_prompt) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but proteins for {len(per_prompt)}")
        formatter = self._formatter()
        rows: list[list[int]] = []
        flat: list[str] = []
        for index, (prompt, sequences) in enumerate(zip(prompts, per_prompt, strict=True)):
            ids = [f"prompt {index} protein {i}" for i in range(len(sequences))]
            sequences = self.validate_sequences(sequences, ids) if sequences else []
            flat += sequences
            rows.append(
                formatter.format_prompt([{"role": "user", "content": self.user_text(prompt, sequences)}])
            )
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, row in enumerate(rows):
            input_ids[b, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            attention_mask[b, width - len(row) :] = 1
        data: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.bridge != "text" and flat:
            data["protein_sequences"] = flat
        return BatchFeature(data=data, tensor_type=None)

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "protein_sequences"]


# Registered here too: when this module's own import of transformers loaded the Auto module first, the
# import hook had to wait for this module to finish (see `_registration`).
from protein_llm_nemo.hf import _registration  # noqa: E402

if _registration._PROCESSING in sys.modules:
    _registration.register_processor()
