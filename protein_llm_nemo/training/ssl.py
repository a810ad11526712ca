"""Continued pre-training: `run_ssl(SSLConfig()) -> TrainResult`, every rank calls it.

Biology text (records with task "ssl_text", or an existing megatron `.bin/.idx` prefix) -> megatron
`IndexedDataset` -> `GPTDataset` fixed-length samples -> the language model (text bridge: no encoder, no
proteins), full or LoRA. Same loop, optimizer, checkpoints and metrics as SFT. What tokenizing read and kept
(record lines, documents, each dropped one by reason) is logged and written as the ``data`` entry of
``metrics.jsonl``; it is kept beside the ``.bin/.idx`` so a run reusing them reports it too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch.distributed as dist

from protein_llm_nemo.runtime import get_logger, initialize_distributed, setup_logging
from protein_llm_nemo.training.batches import TextBatches
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
from protein_llm_nemo.training.config import SSLConfig
from protein_llm_nemo.training.loop import LoopParts, Session
from protein_llm_nemo.training.result import TrainResult
from protein_llm_nemo.training.sft import log_data_report
from protein_llm_nemo.training.step import make_forward_step

logger = get_logger(__name__)


def indexed_prefix(path: str, name: str, cache_dir: str | None, tokenizer) -> tuple[str, dict[str, Any]]:
    """`path` itself when it is a `.bin/.idx` prefix; else tokenize its records into `cache_dir/name`
    (rank 0 writes, the others wait). Returns the prefix and the report of how it was built: the counts
    of reading and tokenizing (``read``, ``records``), read back from beside the prefix when it was built
    by an earlier run; for a prefix given as input, only its path."""
    from protein_llm_nemo.data import ReasonCounter, read_records
    from protein_llm_nemo.data.indexed import indexed_report_path, write_indexed_text

    if Path(path + ".bin").is_file() and Path(path + ".idx").is_file():
        return path, _stored_report(path, indexed_report_path(path))
    if cache_dir is None:
        raise ValueError(
            f"{path} is not a megatron .bin/.idx prefix; set data.cache_dir to tokenize its records there"
        )
    prefix = Path(cache_dir) / name
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0 and not (Path(str(prefix) + ".idx").is_file()):
        read = ReasonCounter()
        write_indexed_text(read_records(path, read), tokenizer, prefix, read=read)
    if dist.is_initialized():
        dist.barrier()
    report = _stored_report(str(prefix), indexed_report_path(prefix))
    report["source"] = path
    return str(prefix), report


def _stored_report(prefix: str, report_path: Path) -> dict[str, Any]:
    if not report_path.is_file():
        return {
            "prefix": prefix,
            "counts": f"unknown: no {report_path.name} (not built by write_indexed_text)",
        }
    return json.loads(report_path.read_text(encoding="utf-8"))


def run_ssl(config: SSLConfig) -> TrainResult:
    """Continue pre-training the language model on biology text; every rank calls this."""
    return setup_ssl(config).run()


def setup_ssl(config: SSLConfig) -> Session:
    from megatron.core import parallel_state

    from protein_llm_nemo.bridges import get_bridge_config
    from protein_llm_nemo.data.indexed import gpt_dataset
    from protein_llm_nemo.tokenizer import load_tokenizer

    setup_logging(config.logging.level)
    if not config.data.train_path:
        raise ValueError("data.train_path is required (ssl_text records or a megatron .bin/.idx prefix)")
    if config.model.freeze_language_model and config.lora is None:
        raise ValueError("SSL with a frozen language model and no LoRA trains nothing")
    initialize_distributed(config.parallel, seed=config.train.seed)
    tokenizer = load_tokenizer(config.model.tokenizer)
    arch = resolve_arch(config.model)
    text_bridge = get_bridge_config("text")
    model = build_model(
        arch, text_bridge, config.model, config.lora, config.checkpoint.load_language_model_from
    )
    log_parameter_counts(model)
    model_chunks, optimizer, scheduler = build_training(
        model, config.optimizer, config.scheduler, config.train
    )

    data = config.data
    dp_rank = parallel_state.get_data_parallel_rank()
    dp_size = parallel_state.get_data_parallel_world_size()
    train_prefix, train_report = indexed_prefix(data.train_path, "train", data.cache_dir, tokenizer)
    data_report = {"train": train_report}
    train_set = gpt_dataset(
        train_prefix, data.seq_length, config.train.max_steps * data.global_batch_size, data.seed
    )
    train_data = TextBatches(
        train_set, data.seq_length, data.micro_batch_size, data.global_batch_size, dp_rank, dp_size
    )
    valid_data = None
    if data.valid_path:
        valid_prefix, data_report["valid"] = indexed_prefix(
            data.valid_path, "valid", data.cache_dir, tokenizer
        )
        valid_set = gpt_dataset(valid_prefix, data.seq_length, None, data.seed)
        valid_data = TextBatches(valid_set, data.seq_length, data.micro_batch_size, 0, dp_rank, dp_size)

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
        export_header=export_header(arch, text_bridge, model, config.lora, source="ssl"),
    )
    return Session(config, model, parts, start_step)
