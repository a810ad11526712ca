"""Records -> token ids + response-only loss masks, through `protein_llm_nemo.tokenizer.ChatFormatter`.

Embedding bridges (mlp, perceiver, flamingo): each protein becomes ``<|protein_start|>`` + ``num_slots`` x
``<|protein_embed|>`` + ``<|protein_end|>`` (the bridge's slot count); the sequences travel beside the ids
so the encoder (or its cache) can embed them. The ``text`` bridge puts the residues in the prompt instead.
Chat template, masks and their exactness are the tokenizer module's; this module only builds the turns.
"""

from __future__ import annotations

import re
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from protein_llm_nemo.data.record import ProteinRecord
from protein_llm_nemo.data.report import ReasonCounter
from protein_llm_nemo.tokenizer import (
    ASSISTANT_ROLE,
    USER_ROLE,
    ChatFormatter,
    FormattedSample,
    Message,
    build_protein_user_text,
)

TEXT_BRIDGE = "text"


# A space and a maximal run of >= 32 upper-case residues, ended by the text, whitespace, punctuation or "<":
# under Qwen's pre-tokenizer (and any GPT-2-style one) this is always one pre-token, so BPE tokenizes it
# alone and the same way wherever it appears. Checked on probes before use (`_runs_split_exactly`).
_RESIDUE_RUN = re.compile(r" [A-Z]{32,}(?=$|[\s<.,;:!?)\]}'\"/-])")
_PROBE_RUN = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEK"


def residue_pieces(text: str) -> list[str] | None:
    """``text`` cut before and after every residue run, or None when it holds none."""
    pieces: list[str] = []
    position = 0
    for match in _RESIDUE_RUN.finditer(text):
        start, end = match.span()
        if start > position:
            pieces.append(text[position:start])
        pieces.append(text[start:end])
        position = end
    if not pieces:
        return None
    if position < len(text):
        pieces.append(text[position:])
    return pieces


class SegmentCachingTokenizer:
    """Wraps a HF tokenizer for `ChatFormatter`: memoises the ids of each text piece it is asked to encode.

    `ChatFormatter` encodes every segment separately (``tokenizer(list_of_texts, add_special_tokens=False)``),
    so caching per piece is exact. Prompts repeat across records (fixed system prompt, templated instructions,
    identical placeholders), which makes this the main cost saving of formatting. Bounded LRU. Misses go
    straight to the Rust backend of a fast tokenizer (what its ``__call__`` runs, without building a
    ``BatchEncoding``). A text holding protein residues (the `text` bridge) is cut at each residue run, which
    is a pre-token boundary, and the pieces are cached: a protein asked about in several records (GO's three
    aspects) goes through BPE once.
    """

    def __init__(self, tokenizer: Any, max_entries: int = 65_536, max_residue_runs: int = 1_000_000):
        self._tokenizer = tokenizer
        self._backend = getattr(tokenizer, "backend_tokenizer", None)
        self._cache: OrderedDict[str, list[int]] = OrderedDict()
        self._max_entries = max_entries
        # Residue runs get their own, larger store (compact int32 arrays, oldest evicted first): a dataset
        # lists a protein's records far apart (GO writes one aspect after another), beyond an LRU of texts.
        self._runs: dict[str, array] = {}
        self._max_runs = max_residue_runs
        self.hits = 0
        self.misses = 0
        self.split_residue_runs = self._runs_split_exactly()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)

    def __len__(self) -> int:
        return len(self._tokenizer)

    def __call__(self, texts: Any, add_special_tokens: bool = True, **kwargs: Any) -> Any:
        if add_special_tokens or kwargs or not isinstance(texts, list):
            return self._tokenizer(texts, add_special_tokens=add_special_tokens, **kwargs)
        cache = self._cache
        misses = [t for t in dict.fromkeys(texts) if t not in cache]
        self.misses += len(misses)
        self.hits += len(texts) - len(misses)
        assembled: dict[str, list[int]] = {}
        if misses:
            split = (
                {t: pieces for t in misses if (pieces := residue_pieces(t)) is not None}
                if self.split_residue_runs
                else {}
            )
            wanted = [t for t in misses if t not in split]
            wanted += [p for pieces in split.values() for p in pieces if p not in self._store(p)]
            wanted = list(dict.fromkeys(wanted))
            for text, ids in zip(wanted, self._encode_uncached(wanted), strict=True):
                if _RESIDUE_RUN.fullmatch(text):
                    self._runs[text] = array("i", ids)
                else:
                    cache[text] = ids
            for text, pieces in split.items():  # unique texts are not cached whole, only their pieces
                assembled[text] = [i for piece in pieces for i in self._store(piece)[piece]]
                for piece in pieces:
                    if piece in cache:
                        cache.move_to_end(piece)
            while len(self._runs) > self._max_runs:
                del self._runs[next(iter(self._runs))]
        out = []
        for text in texts:
            if text in assembled:
                out.append(list(assembled[text]))
                continue
            cache.move_to_end(text)
            out.append(list(cache[text]))
        while len(cache) > self._max_entries:
            cache.popitem(last=False)
        return {"input_ids": out}

    def _store(self, piece: str) -> dict:
        return self._runs if piece.startswith(" ") and _RESIDUE_RUN.fullmatch(piece) else self._cache

    def _runs_split_exactly(self) -> bool:
        """Whether cutting at residue runs reproduces this tokenizer's ids on probes (False: never cut)."""
        probes = [
            f"Describe it.\n\nProtein sequence: {_PROBE_RUN}",
            f"Protein 1 sequence: {_PROBE_RUN}\nProtein 2 sequence: {_PROBE_RUN[::-1]}\n",
            f"x  {_PROBE_RUN}, and ({_PROBE_RUN}) 12 {_PROBE_RUN}'s {_PROBE_RUN}-like {_PROBE_RUN}<tag>",
        ]
        for probe in probes:
            pieces = residue_pieces(probe) or [probe]
            whole, *parts = self._encode_uncached([probe, *pieces])
            if len(pieces) < 2 or whole != [i for part in parts for i in part]:
                return False
        return True

    def _encode_uncached(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        if self._backend is None:
            return self._tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [encoding.ids for encoding in self._backend.encode_batch(texts, add_special_tokens=False)]


@dataclass
class FormattingConfig:
    bridge: str = "mlp"  # "text" puts residues in the prompt; any other bridge uses protein slots
    num_slots: int = 32  # the bridge's output vectors per protein (ignored by the text bridge)
    max_tokens: int | None = None  # samples longer than this are dropped (counted), never truncated

    def __post_init__(self) -> None:
        if self.bridge != TEXT_BRIDGE and self.num_slots < 1:
            raise ValueError(f"num_slots must be >= 1 for the {self.bridge!r} bridge, got {self.num_slots}")


@dataclass
class FormattedExample:
    """One trainable sample: ids + token-aligned loss mask, and the proteins its slots stand for (in order)."""

    record_id: str
    sample: FormattedSample
    sequences: list[str] = field(default_factory=list)
    task: str = ""
    source: str = ""

    def __len__(self) -> int:
        return len(self.sample)


def text_bridge_user_text(instruction: str, sequences: list[str]) -> str:
    if len(sequences) == 1:
        return f"{instruction}\n\nProtein sequence: {sequences[0]}"
    blocks = "\n".join(f"Protein {i} sequence: {seq}" for i, seq in enumerate(sequences, start=1))
    return f"{instruction}\n\n{blocks}"


class RecordFormatter:
    """``examples = list(RecordFormatter(chat_formatter, config)(records))``; drops are counted by reason."""

    def __init__(self, chat: ChatFormatter, config: FormattingConfig | None = None):
        self.chat = chat
        self.config = config or FormattingConfig()
        self.counter = ReasonCounter()

    def user_text(self, record: ProteinRecord) -> str:
        if not record.sequences:
            return record.instruction
        if self.config.bridge == TEXT_BRIDGE:
            return text_bridge_user_text(record.instruction, record.sequences)
        return build_protein_user_text(record.instruction, self.config.num_slots, len(record.sequences))

    def format(self, record: ProteinRecord) -> FormattedExample | None:
        self.counter.seen += 1
        if record.task == "ssl_text":
            self.counter.drop("ssl_text_is_not_chat")
            return None
        try:
            sample = self.chat.format(
                [Message(USER_ROLE, self.user_text(record)), Message(ASSISTANT_ROLE, record.response)]
            )
        except ValueError as exc:
            self.counter.drop(f"format_error:{type(exc).__name__}:{str(exc)[:40]}")
            return None
        if self.config.max_tokens is not None and len(sample) > self.config.max_tokens:
            self.counter.drop("longer_than_max_tokens")
            return None
        self.counter.keep()
        sequences = [] if self.config.bridge == TEXT_BRIDGE else list(record.sequences)
        return FormattedExample(record.id, sample, sequences, record.task, record.source)

    def __call__(self, records: Iterable[ProteinRecord]) -> Iterator[FormattedExample]:
        for record in records:
            example = self.format(record)
            if example is not None:
                yield example
