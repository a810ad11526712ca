"""SSL text -> megatron-core's indexed dataset (``.bin/.idx``) -> megatron-core ``GPTDataset`` samples.

Continued pre-training reads biology text the way Megatron does: documents tokenized once (Qwen3, each
followed by the end-of-document token), stored as an ``IndexedDataset``, and cut into fixed
``sequence_length`` samples (documents concatenated, seeded shuffle) by ``GPTDataset``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from protein_llm_nemo.data.files import AtomicOutputs
from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.report import ReasonCounter, write_json_report
from protein_llm_nemo.tokenizer import QWEN3_PADDED_VOCAB_SIZE

QWEN3_EOD_ID = 151_643  # <|endoftext|>: Qwen3's document separator in pre-training


def write_indexed_text(
    records: Iterable[ProteinRecord],
    tokenizer: Any,
    path_prefix: str | Path,
    eod_id: int = QWEN3_EOD_ID,
    read: ReasonCounter | None = None,
) -> dict[str, Any]:
    """Tokenize each ``ssl_text`` record's text (the ``response``) + EOD into ``<prefix>.bin/.idx``, with the
    summary (also returned) in ``<prefix>.report.json``. `read` is the counter of the reader that yields
    `records`: its counts join the summary. All three files appear together (``.idx`` last) or not at all."""
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    path_prefix = Path(path_prefix)
    counter = ReasonCounter()
    tokens = 0
    with AtomicOutputs() as outputs:
        report_path = outputs.stage(indexed_report_path(path_prefix))
        bin_path = outputs.stage(str(path_prefix) + ".bin")
        idx_path = outputs.stage(str(path_prefix) + ".idx")  # committed last: its presence means "built"
        builder = IndexedDatasetBuilder(str(bin_path), dtype=np.int32)
        for record in tqdm(records, desc="tokenize SSL text", unit="doc"):
            counter.seen += 1
            if record.task != "ssl_text":
                counter.drop("not_ssl_text")
                continue
            if not record.response.strip():
                counter.drop("empty_text")
                continue
            ids = tokenizer(record.response, add_special_tokens=False)["input_ids"] + [eod_id]
            builder.add_item(torch.tensor(ids, dtype=torch.int32))
            builder.end_document()
            tokens += len(ids)
            counter.keep()
        builder.finalize(str(idx_path))
        counter.check("SSL documents")
        summary: dict[str, Any] = {"prefix": str(path_prefix), "documents": counter.kept, "tokens": tokens}
        if read is not None:
            read.check(f"records read for {path_prefix}")
            summary["read"] = read.to_dict()
        summary["records"] = counter.to_dict()
        write_json_report(summary, report_path)
    return summary


def indexed_report_path(path_prefix: str | Path) -> Path:
    """Where `write_indexed_text` leaves the summary of ``<prefix>.bin/.idx``."""
    return Path(str(path_prefix) + ".report.json")


@dataclass
class MegatronTokenizerInfo:
    """The few tokenizer facts megatron-core's ``GPTDatasetConfig`` reads."""

    eod: int = QWEN3_EOD_ID
    # Qwen3 uses <|endoftext|> for both EOD and padding; megatron then cannot mask padding. The last row of
    # the padded embedding table is never produced by the tokenizer, so it is an unambiguous pad id.
    pad: int = QWEN3_PADDED_VOCAB_SIZE - 1
    vocab_size: int = QWEN3_PADDED_VOCAB_SIZE
    unique_identifiers: dict[str, Any] = field(
        default_factory=lambda: {"class": "Qwen3", "eod": QWEN3_EOD_ID}
    )


def gpt_dataset(
    path_prefix: str | Path,
    sequence_length: int,
    num_samples: int,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    tokenizer_info: MegatronTokenizerInfo | None = None,
):
    """A megatron-core ``GPTDataset`` over all documents of ``path_prefix`` (train split)."""
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    from megatron.core.datasets.utils import Split

    indexed = IndexedDataset(str(path_prefix))
    config = GPTDatasetConfig(
        random_seed=seed,
        sequence_length=sequence_length,
        blend=None,
        split="100,0,0",
        path_to_cache=str(cache_dir) if cache_dir else None,
        tokenizer=tokenizer_info or MegatronTokenizerInfo(),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
    )
    indices = np.arange(len(indexed), dtype=np.int32)
    return GPTDataset(indexed, str(path_prefix), indices, num_samples, Split.train, config)
