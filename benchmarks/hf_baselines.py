"""The two HF baselines of `sft_throughput.py`: HF `transformers.Qwen3ForCausalLM` + `peft` LoRA + the HF mlp
bridge (`hf.modeling.ProteinLLMForCausalLM.embed_inputs` -> `inputs_embeds`), torch AdamW (LoRA lr 2e-4,
bridge 1e-3, wd 0.01), clip 1.0, warmup + cosine, `model(labels=...)` loss on response tokens.

- `PaddedReference`: the reference's batching: shuffled, sort-free token-budget batches padded to the
  longest (`batch_size * longest <= budget`), 2D `attention_mask`.
- `PaddingFree`: what TRL's `SFTTrainer` with `packing=True` (its best-fit-decreasing strategy trains
  padding-free) feeds the model, with transformers' `DataCollatorWithFlattening` semantics: the samples of
  a pack concatenated into one `[1, sum(lengths)]` row, no padding, `position_ids` restarting at 0 per
  sample, the first label of every sample -100 (a sample's last token never predicts the next one's
  first), no `attention_mask`. Ours' packs, in ours' order. The attention: with the flash-attention kernels
  transformers turns such `position_ids` into `cu_seqlens`, but those kernels are CUDA-only, and
  `flex_attention` has no backward on CPU (torch 2.13). With `sdpa` transformers 5.x itself
  (`masking_utils.create_causal_mask`, when no 2D mask and no cache are given) finds the restarts in
  `position_ids` and hands SDPA a dense block-diagonal causal mask `[1, 1, T, T]`: attention stays within
  each sample, at the cost of a full `T x T` attention per layer. `loss_equivalence` checks it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch

IGNORE_INDEX = -100
HF_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class HFSide:
    """Model, LoRA, optimizer and scheduler shared by both HF baselines; subclasses pick the batching."""

    def __init__(self, args, arch, bridge_config, examples, embed, lora_config, device, dtype, attn="sdpa"):
        from peft import LoraConfig, inject_adapter_in_model

        from protein_llm_nemo.conversion.spec import ProteinLLMSpec, hf_protein_llm_config
        from protein_llm_nemo.hf.modeling import ProteinLLMForCausalLM

        config = hf_protein_llm_config(ProteinLLMSpec(arch, bridge_config), dtype=dtype)
        config.text_config._attn_implementation = attn
        torch.manual_seed(args.seed)  # both HF sides start from the same weights
        model = ProteinLLMForCausalLM(config)
        model.requires_grad_(False)
        model.language_model = inject_adapter_in_model(
            LoraConfig(
                r=lora_config.rank,
                lora_alpha=lora_config.alpha,
                lora_dropout=lora_config.dropout,
                target_modules=HF_TARGETS,
                bias="none",
            ),
            model.language_model,
        )
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name)
        bridge_params = list(model.bridge.parameters()) + list(model.protein_token_embeddings.parameters())
        for p in bridge_params:
            p.requires_grad_(True)
        self.model = model.to(device=device, dtype=dtype).train()
        lora_params = [p for n, p in model.named_parameters() if "lora_" in n]
        self.num_lora = sum(p.numel() for p in lora_params)
        self.num_bridge = sum(p.numel() for p in bridge_params)
        self.num_parameters = sum(p.numel() for p in model.parameters())
        decay = [p for p in bridge_params if p.ndim > 1]
        no_decay = [p for p in bridge_params if p.ndim <= 1]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": lora_params, "lr": 2e-4, "weight_decay": 0.01},
                {"params": decay, "lr": 1e-3, "weight_decay": 0.01},
                {"params": no_decay, "lr": 1e-3, "weight_decay": 0.0},
            ],
            betas=(0.9, 0.999),
            eps=1e-8,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: min(1.0, (s + 1) / 2) * 0.5 * (1 + math.cos(math.pi * min(s, 1000) / 1000)),
        )
        self.examples, self.embed, self.device = examples, embed, device
        self.grad_accum = args.grad_accum

    def next_indices(self) -> list[list[int]]:
        """Example indices of each micro-batch of the next optimizer step."""
        raise NotImplementedError

    def loss(self, indices: Sequence[int]) -> tuple[torch.Tensor, int, int]:
        """(mean response-token loss, real tokens, token slots) of one micro-batch."""
        raise NotImplementedError

    def embeddings(self, examples):
        sequences = [s for ex in examples for s in ex.sequences]
        return self.embed(sequences) if sequences else (None, None)

    def step(self) -> tuple[int, int, float]:
        real = slots = 0
        losses = []
        for indices in self.next_indices():
            loss, n, width = self.loss(indices)
            (loss / self.grad_accum).backward()
            losses.append(float(loss.detach()))
            real += n
            slots += width
        torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return real, slots, sum(losses) / len(losses)


class PaddedReference(HFSide):
    """Token-budget padded batches (the reference's scheme), right padding, 2D attention mask."""

    def __init__(self, args, arch, bridge_config, examples, embed, lora_config, device, dtype):
        from protein_llm_nemo.data.packing import token_budget_batches

        super().__init__(args, arch, bridge_config, examples, embed, lora_config, device, dtype)
        order = list(range(len(examples)))
        random.Random(args.seed).shuffle(order)
        lengths = [len(examples[i]) for i in order]
        self.batches = [[order[i] for i in b] for b in token_budget_batches(lengths, args.tokens)]
        self.position = 0

    def next_indices(self) -> list[list[int]]:
        out = [self.batches[(self.position + i) % len(self.batches)] for i in range(self.grad_accum)]
        self.position += self.grad_accum
        return out

    def loss(self, indices: Sequence[int]) -> tuple[torch.Tensor, int, int]:
        return padded_loss(self.model, [self.examples[i] for i in indices], self.embeddings, self.device)


class PaddingFree(HFSide):
    """Best-fit-decreasing packs flattened into one unpadded row each (`DataCollatorWithFlattening`)."""

    def __init__(self, args, arch, bridge_config, examples, embed, lora_config, device, dtype, seed, shuffle):
        from protein_llm_nemo.data.packing import PackingConfig, pack_examples
        from protein_llm_nemo.training.batches import GlobalBatchSampler

        super().__init__(args, arch, bridge_config, examples, embed, lora_config, device, dtype)
        self.packs = pack_examples(examples, PackingConfig(max_tokens=args.tokens))
        # ours' sampler with ours' seed: step k of both sides trains on the same packs
        self.sampler = GlobalBatchSampler(len(self.packs), args.grad_accum, 1, seed=seed, shuffle=shuffle)

    def next_indices(self) -> list[list[int]]:
        return [self.packs[mb[0]] for mb in self.sampler.next_microbatches()]

    def loss(self, indices: Sequence[int]) -> tuple[torch.Tensor, int, int]:
        return flat_loss(self.model, [self.examples[i] for i in indices], self.embeddings, self.device)


def padded_loss(model, examples, embeddings, device) -> tuple[torch.Tensor, int, int]:
    from protein_llm_nemo.tokenizer import collate_samples

    chat = collate_samples([ex.sample for ex in examples])  # right padding to the longest
    emb, mask = embeddings(examples)
    ids = chat.input_ids.to(device)
    out = model.language_model(
        inputs_embeds=model.embed_inputs(ids, emb, mask),
        attention_mask=chat.attention_mask.to(device),
        labels=chat.hf_labels().to(device),
        use_cache=False,
    )
    return out.loss, sum(len(ex) for ex in examples), ids.numel()


def flatten(examples) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`DataCollatorWithFlattening` semantics: `[1, T]` input_ids, position_ids (0 at every sample start)
    and unshifted HF labels (response tokens, -100 at every sample's first token)."""
    ids: list[int] = []
    positions: list[int] = []
    labels: list[int] = []
    for ex in examples:
        sample = ex.sample
        ids += sample.input_ids
        positions += range(len(sample))
        trained = [t if m else IGNORE_INDEX for t, m in zip(sample.input_ids, sample.loss_mask, strict=True)]
        labels += [IGNORE_INDEX] + trained[1:]
    return tuple(torch.tensor(x, dtype=torch.long)[None] for x in (ids, positions, labels))


def flat_loss(model, examples, embeddings, device, packed: bool = True) -> tuple[torch.Tensor, int, int]:
    """`packed=False` drops `position_ids` (one causal sequence over the whole row): only for the check
    that sample boundaries change the loss."""
    ids, positions, labels = (t.to(device) for t in flatten(examples))
    emb, mask = embeddings(examples)
    out = model.language_model(
        inputs_embeds=model.embed_inputs(ids, emb, mask),
        position_ids=positions if packed else None,
        labels=labels,
        use_cache=False,
    )
    return out.loss, ids.numel(), ids.numel()


@torch.no_grad()
def loss_equivalence(side: HFSide, indices: Sequence[int]) -> dict[str, float]:
    """Loss of the same samples, same weights, dropout off: padded batch vs flattened row (and, to show
    that the boundaries matter, the flattened row attended as one sequence)."""
    examples = [side.examples[i] for i in indices]
    was_training = side.model.training
    side.model.eval()
    try:
        padded = float(padded_loss(side.model, examples, side.embeddings, side.device)[0])
        flat = float(flat_loss(side.model, examples, side.embeddings, side.device)[0])
        crossing = float(flat_loss(side.model, examples, side.embeddings, side.device, packed=False)[0])
    finally:
        side.model.train(was_training)
    return {
        "samples": len(examples),
        "padded": padded,
        "padding_free": flat,
        "abs_diff": abs(padded - flat),
        "without_boundaries": crossing,
    }
