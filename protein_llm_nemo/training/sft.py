"""Supervised fine-tuning: `run_sft(SFTConfig()) -> TrainResult`, called on every rank (torchrun or a single
process). Top to bottom: distributed init -> tokenizer -> encoder -> bridge -> model (+LoRA) -> DDP,
optimizer, scheduler -> data (records -> chat formatting with response-only masks -> packs) -> resume ->
`train_loop`.

Data loading counts everything: record lines read, records formatted, examples packed, each kept or
dropped by reason. The counts are checked, logged and written as the ``data`` entry of ``metrics.jsonl``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from protein_llm_nemo.runtime import get_logger, initialize_distributed, setup_logging
from protein_llm_nemo.training.batches import SFTBatches, encoder_embed_fn
from protein_llm_nemo.training.build import (
    build_metrics,
    build_model,
    build_training,
    device,
    export_header,
    log_parameter_counts,
    resolve_arch,
    restore,
)
from protein_llm_nemo.training.config import EncoderSelection, SFTConfig
from protein_llm_nemo.training.loop import LoopParts, Session
from protein_llm_nemo.training.result import TrainResult
from protein_llm_nemo.training.step import make_forward_step

if TYPE_CHECKING:
    from protein_llm_nemo.data.formatting import FormattedExample
    from protein_llm_nemo.training.grpo.config import GRPOConfig

logger = get_logger(__name__)


def build_encoder(selection: EncoderSelection):
    """A live frozen encoder, or, with ``cache_dir``, an embedding-cache reader alone: the encoder never runs,
    and a sequence missing from the cache raises `CacheMissError` (no live fallback)."""
    from protein_llm_nemo.encoders import CachedProteinEncoder, build_protein_encoder

    if selection.cache_dir:
        return CachedProteinEncoder(selection.cache_dir, encoder_name=selection.name or None)
    return build_protein_encoder(selection.name, **selection.overrides)


def build_bridge_config(config: SFTConfig, encoder):
    from protein_llm_nemo.bridges import get_bridge_config, get_bridge_config_class

    overrides = dict(config.bridge.overrides)
    if get_bridge_config_class(config.bridge.name).uses_encoder and encoder is not None:
        overrides.setdefault("encoder_dim", encoder.embedding_dim)
    return get_bridge_config(config.bridge.name, **overrides)


@dataclass
class LoadedExamples:
    """The formatted examples of one record file and the counts of how they were made (`report`)."""

    examples: list[FormattedExample]
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProteinLLMTraining:
    """What SFT and GRPO build alike from their config (`build_protein_llm_training`)."""

    arch: Any
    bridge_config: Any
    encoder: Any  # None for the text bridge
    model: Any
    model_chunks: list
    optimizer: Any
    scheduler: Any


def build_protein_llm_training(config: SFTConfig | GRPOConfig) -> ProteinLLMTraining:
    """The encoder, the ProteinLLM (bridge frozen when asked, parameter counts logged) and its optimizer and
    scheduler."""
    from protein_llm_nemo.bridges import get_bridge_config_class

    uses_encoder = get_bridge_config_class(config.bridge.name).uses_encoder
    encoder = build_encoder(config.encoder) if uses_encoder else None
    arch = resolve_arch(config.model)
    bridge_config = build_bridge_config(config, encoder)
    model = build_model(
        arch, bridge_config, config.model, config.lora, config.checkpoint.load_language_model_from
    )
    if config.bridge.freeze:
        model.freeze(bridge=True)
    log_parameter_counts(model)
    chunks, optimizer, scheduler = build_training(model, config.optimizer, config.scheduler, config.train)
    return ProteinLLMTraining(arch, bridge_config, encoder, model, chunks, optimizer, scheduler)


def load_examples(path: str, tokenizer, bridge_config, config: SFTConfig) -> list[FormattedExample]:
    """Canonical records -> `FormattedExample`s (drops counted and logged, never silent)."""
    return read_examples(path, tokenizer, bridge_config, config).examples


def read_examples(path: str, tokenizer, bridge_config, config: SFTConfig) -> LoadedExamples:
    """Canonical records -> `FormattedExample`s, with the report of what was read (``read``: lines, malformed
    ones dropped by reason) and formatted (``formatting``: records, dropped by reason); both checked."""
    from protein_llm_nemo.data import ReasonCounter, read_records
    from protein_llm_nemo.data.formatting import FormattingConfig, RecordFormatter, SegmentCachingTokenizer
    from protein_llm_nemo.tokenizer import ChatFormatter, ChatFormatterConfig

    system = config.data.system_prompt
    chat_config = ChatFormatterConfig() if system == "default" else ChatFormatterConfig(system_prompt=system)
    chat = ChatFormatter(SegmentCachingTokenizer(tokenizer), chat_config)
    formatter = RecordFormatter(
        chat,
        FormattingConfig(
            bridge=bridge_config.name, num_slots=bridge_config.num_slots, max_tokens=config.data.seq_length
        ),
    )
    read = ReasonCounter()
    examples = list(formatter(read_records(path, read)))
    read.check(f"records read from {path}")
    formatter.counter.check(f"records formatted from {path}")
    report = {"path": path, "read": read.to_dict(), "formatting": formatter.counter.to_dict()}
    logger.info("%s: read %s; formatting %s", path, report["read"], report["formatting"])
    if not examples:
        raise ValueError(
            f"{path}: no trainable examples (read {report['read']}, formatting {report['formatting']})"
        )
    return LoadedExamples(examples, report)


def run_sft(config: SFTConfig) -> TrainResult:
    """Train a ProteinLLM on instruction records (loss on response tokens only); every rank calls this."""
    return setup_sft(config).run()


def setup_sft(config: SFTConfig) -> Session:
    """Build model, optimizer, data and metrics for `config` and restore a checkpoint if there is one."""
    from megatron.core import parallel_state

    from protein_llm_nemo.tokenizer import load_tokenizer

    setup_logging(config.logging.level)
    if not config.data.train_path:
        raise ValueError("data.train_path is required (canonical records: JSONL or an Arrow folder)")
    initialize_distributed(config.parallel, seed=config.train.seed)
    tokenizer = load_tokenizer(config.model.tokenizer)
    built = build_protein_llm_training(config)
    arch, bridge_config, encoder, model = built.arch, built.bridge_config, built.encoder, built.model
    model_chunks, optimizer, scheduler = built.model_chunks, built.optimizer, built.scheduler

    dp_rank = parallel_state.get_data_parallel_rank()
    dp_size = parallel_state.get_data_parallel_world_size()
    embed = encoder_embed_fn(encoder, device(), model.config.params_dtype) if encoder is not None else None
    common = dict(
        seq_length=config.data.seq_length,
        micro_batch_size=config.data.micro_batch_size,
        packing=config.data.packing,
        dp_rank=dp_rank,
        dp_size=dp_size,
        embed=embed,
    )
    train = read_examples(config.data.train_path, tokenizer, bridge_config, config)
    train_data = SFTBatches(
        train.examples,
        global_batch_size=config.data.global_batch_size,
        seed=config.data.seed,
        shuffle=config.data.shuffle,
        **common,
    )
    data_report = {"train": {**train.report, "batching": train_data.counter.to_dict()}}
    valid_data = None
    if config.data.valid_path:
        valid = read_examples(config.data.valid_path, tokenizer, bridge_config, config)
        valid_data = SFTBatches(valid.examples, global_batch_size=0, **common)
        data_report["valid"] = {**valid.report, "batching": valid_data.counter.to_dict()}

    start_step = restore(config.checkpoint, model_chunks, optimizer, scheduler, train_data)
    metrics = build_metrics(config.logging, config.checkpoint, config.train, start_step, config)
    log_data_report(metrics, start_step, data_report)
    parts = LoopParts(
        model_chunks=model_chunks,
        optimizer=optimizer,
        scheduler=scheduler,
        forward_step=make_forward_step(),
        train_data=train_data,
        valid_data=valid_data,
        metrics=metrics,
        device=device(),
        clip_grad=config.optimizer.clip_grad,
        group_grad_norms=not config.optimizer.use_distributed_optimizer,
        export_header=export_header(arch, bridge_config, model, config.lora, encoder, source="sft"),
    )
    return Session(config, model, parts, start_step)


def log_data_report(metrics, step: int, report: dict[str, Any]) -> None:
    """The run's data counts in the log and as the ``data`` entry of ``metrics.jsonl`` (rank 0)."""
    for name, part in report.items():
        logger.info("data %s: %s", name, part)
    metrics.log(step, {"data": report})
