"""Tests for protein_llm_nemo.tokenizer.loading: the pinned offline Qwen3 tokenizer, local folders, hub ids,
and the protein tokens it adds."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from protein_llm_nemo.tokenizer import (
    OFFLINE_TOKENIZER_JSON_SHA256,
    OFFLINE_TOKENIZER_JSON_SIZE,
    PROTEIN_EMBED_TOKEN,
    PROTEIN_END_TOKEN,
    PROTEIN_START_TOKEN,
    PROTEIN_TOKEN_IDS,
    QWEN3_BASE_VOCAB_LEN,
    QWEN3_EOS_ID,
    QWEN3_PAD_ID,
    QWEN3_PADDED_VOCAB_SIZE,
    ChatFormatter,
    ProteinTokenIds,
    TokenizerConfig,
    add_protein_tokens,
    load_tokenizer,
    offline_tokenizer_dir,
    protein_placeholder,
    verify_tokenizer_json,
)

from .conftest import CONVERSATIONS


@pytest.fixture(scope="module")
def local_copy(tmp_path_factory) -> Path:
    """A byte-identical copy of the offline tokenizer folder (a real 'local folder' source)."""
    dst = tmp_path_factory.mktemp("qwen3_tok") / "tok"
    shutil.copytree(offline_tokenizer_dir(), dst)
    return dst


def test_offline_tokenizer_identity(tok):
    assert len(tok) == QWEN3_BASE_VOCAB_LEN + 3 == 151_672
    assert len(tok) <= QWEN3_PADDED_VOCAB_SIZE  # the new ids have rows in a real checkpoint's embedding table
    assert (tok.eos_token, tok.eos_token_id) == ("<|im_end|>", QWEN3_EOS_ID)
    assert (tok.pad_token, tok.pad_token_id) == ("<|endoftext|>", QWEN3_PAD_ID)
    assert tok.convert_tokens_to_ids([PROTEIN_START_TOKEN, PROTEIN_EMBED_TOKEN, PROTEIN_END_TOKEN]) == [
        151669,
        151670,
        151671,
    ]
    assert ProteinTokenIds.from_tokenizer(tok) == PROTEIN_TOKEN_IDS
    assert PROTEIN_TOKEN_IDS.all == (151669, 151670, 151671)
    # Atomic special tokens: one id each, dropped by skip_special_tokens.
    ids = tok.encode("x" + protein_placeholder(2) + "y", add_special_tokens=False)
    assert ids[1:5] == [151669, 151670, 151670, 151671]
    assert tok.decode(ids, skip_special_tokens=True) == "xy"


def test_offline_tokenizer_json_hash_is_pinned():
    path = offline_tokenizer_dir() / "tokenizer.json"
    assert path.stat().st_size == OFFLINE_TOKENIZER_JSON_SIZE == 11_422_654
    assert hashlib.sha256(path.read_bytes()).hexdigest() == OFFLINE_TOKENIZER_JSON_SHA256
    verify_tokenizer_json(path.parent, OFFLINE_TOKENIZER_JSON_SHA256, OFFLINE_TOKENIZER_JSON_SIZE)


def test_tampered_tokenizer_json_is_rejected(tmp_path):
    shutil.copy(offline_tokenizer_dir() / "tokenizer.json", tmp_path / "tokenizer.json")
    with open(tmp_path / "tokenizer.json", "ab") as fh:
        fh.write(b" ")  # still valid JSON, different bytes
    with pytest.raises(ValueError, match="11,422,655 bytes, expected 11,422,654"):
        verify_tokenizer_json(tmp_path, OFFLINE_TOKENIZER_JSON_SHA256, OFFLINE_TOKENIZER_JSON_SIZE)
    with pytest.raises(ValueError, match="sha256 mismatch"):
        verify_tokenizer_json(tmp_path, OFFLINE_TOKENIZER_JSON_SHA256)
    with pytest.raises(ValueError, match="sha256 mismatch"):
        load_tokenizer(TokenizerConfig(source=str(tmp_path), expected_sha256=OFFLINE_TOKENIZER_JSON_SHA256))


def test_local_folder_source_and_idempotent_protein_tokens(tok, local_copy):
    base = load_tokenizer(
        TokenizerConfig(
            source=str(local_copy), expected_sha256=OFFLINE_TOKENIZER_JSON_SHA256, add_protein_tokens=False
        )
    )
    assert len(base) == QWEN3_BASE_VOCAB_LEN
    with pytest.raises(ValueError, match="add_protein_tokens"):
        ProteinTokenIds.from_tokenizer(base)
    with pytest.raises(ValueError, match="add_protein_tokens"):
        ChatFormatter(base)
    assert add_protein_tokens(base) == PROTEIN_TOKEN_IDS
    assert add_protein_tokens(base) == PROTEIN_TOKEN_IDS  # second call adds nothing
    assert len(base) == len(tok)
    text = "Hello <|protein_start|><|protein_embed|><|protein_end|> world"
    assert base.encode(text) == tok.encode(text)


def test_saved_tokenizer_round_trips(tok, fmt, tmp_path):
    """An exported checkpoint's tokenizer folder reloads with the same protein ids and chat rendering."""
    tok.save_pretrained(tmp_path)
    reloaded = load_tokenizer(str(tmp_path))  # string shorthand for TokenizerConfig(source=...)
    assert len(reloaded) == len(tok) and ProteinTokenIds.from_tokenizer(reloaded) == PROTEIN_TOKEN_IDS
    sample = ChatFormatter(reloaded).format(CONVERSATIONS["multi_turn"])
    assert sample == fmt.format(CONVERSATIONS["multi_turn"])


def test_unexpected_protein_ids_are_an_error(tok):
    with pytest.raises(ValueError, match=r"expected \(1, 2, 3\)"):
        add_protein_tokens(tok, expected=ProteinTokenIds(1, 2, 3))


@pytest.mark.parametrize("source", ["/nonexistent/qwen3-tokenizer", "./no/such/dir", "~/no-such-qwen3-dir"])
def test_missing_local_folder_error_names_path_and_fixes(source):
    with pytest.raises(FileNotFoundError) as err:
        load_tokenizer(TokenizerConfig(source=source))
    msg = str(err.value)
    assert source in msg and "hub id" in msg and "'offline'" in msg


def test_unreachable_hub_id_error_names_id_and_fixes():
    # local_files_only keeps the test offline and fast (no retries against the unreachable hub).
    hub_id = "no-such-org-xyz/no-such-qwen3-tokenizer"
    with pytest.raises(OSError) as err:
        load_tokenizer(TokenizerConfig(source=hub_id, local_files_only=True))
    msg = str(err.value)
    assert hub_id in msg and "hub id" in msg and "local folder" in msg and "source='offline'" in msg
