"""Data files, read and written safely.

Reading: `open_text` gives plain or gzip text whose bad bytes (not UTF-8) and truncated or corrupt gzip data
raise `DataFileError` naming the file and the line, never a bare ``UnicodeDecodeError`` / ``EOFError``.
`read_lines` is the line reader of line-delimited files: a line that is not UTF-8 is one counted skip.

Writing: `AtomicOutputs` stages each output as a hidden sibling file (or folder) and moves them all into place
with ``os.replace`` only when the whole block succeeded; on an error they are removed and every final path
is left as it was. `atomic_path` is the one-output case.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import secrets
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from protein_llm_nemo.data.report import ReasonCounter

# Bytes that are not UTF-8 decode (errors="surrogateescape") to lone surrogates U+DC80..U+DCFF, which valid
# UTF-8 never produces: a line holding one had a bad byte.
_UNDECODABLE = re.compile("[\udc80-\udcff]")
# What a truncated or corrupt gzip stream raises while it is read (gzip.BadGzipFile is an OSError).
_STREAM_ERRORS = (EOFError, OSError, zlib.error)


class DataFileError(ValueError):
    """A data file that cannot be read on; the message names the file and the position reached."""


def undecodable(text: str) -> bool:
    """Whether `text` (read by a non-strict `TextReader`) holds bytes that were not UTF-8."""
    return not text.isascii() and _UNDECODABLE.search(text) is not None


class TextReader:
    """Lines (or all the text) of a plain or ``.gz`` file; ``line`` is the number of the last line read.

    strict (default): a line that is not UTF-8 raises `DataFileError` with its line number. Not strict: such a
    line is returned as read (its bad bytes as lone surrogates, see `undecodable`) for the caller to skip and
    count. Truncated or corrupt gzip data always raises `DataFileError` naming the last line read.
    """

    def __init__(self, path: str | Path, strict: bool = True):
        self.path = Path(path)
        self.strict = strict
        self.line = 0
        if self.path.suffix == ".gz":
            self._handle: IO[str] = gzip.open(  # noqa: SIM115 - closed in close()
                self.path, "rt", encoding="utf-8", errors="surrogateescape"
            )
        else:
            self._handle = open(self.path, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
        self._lines = self._iterate()

    def _stream_error(self, exc: BaseException) -> DataFileError:
        what = "truncated or corrupt gzip data" if self.path.suffix == ".gz" else "unreadable data"
        return DataFileError(f"{self.path}: {what} after line {self.line}: {exc}")

    def _refuse_bad_bytes(self, text: str, first_line: int) -> None:
        """Strict mode: raise at the first byte of `text` (starting at line `first_line`) that was not UTF-8."""
        match = _UNDECODABLE.search(text) if self.strict else None
        if match is not None:
            line = first_line + text.count("\n", 0, match.start())
            column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
            raise DataFileError(f"{self.path}: line {line}, column {column}: bytes that are not UTF-8")

    def _iterate(self) -> Iterator[str]:
        try:
            for line in self._handle:
                self.line += 1
                if self.strict and not line.isascii():  # the common all-ASCII line costs one C call
                    self._refuse_bad_bytes(line, self.line)
                yield line
        except _STREAM_ERRORS as exc:
            raise self._stream_error(exc) from exc

    def __iter__(self) -> Iterator[str]:
        return self._lines

    def readline(self) -> str:
        return next(self._lines, "")

    def read(self, size: int = -1) -> str:
        try:
            text = self._handle.read(size)
        except _STREAM_ERRORS as exc:
            raise self._stream_error(exc) from exc
        first = self.line + 1
        self.line += text.count("\n")
        self._refuse_bad_bytes(text, first)
        return text

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> TextReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_text(path: str | Path, mode: str = "rt") -> Any:
    """Open plain or gzip-compressed text (by the ``.gz`` suffix): a strict `TextReader` for reading, a text
    handle for writing (``"wt"``, ``"at"``)."""
    path = Path(path)
    if mode in ("r", "rt"):
        return TextReader(path)
    if path.suffix == ".gz":
        return gzip.open(path, mode, encoding="utf-8")
    return open(path, mode, encoding="utf-8")  # noqa: SIM115 - the caller closes it


def read_lines(path: str | Path, counter: ReasonCounter) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line. A line that is not UTF-8 is counted here, seen and dropped
    (``invalid_utf8``); every line yielded is the caller's to count (seen, then kept or dropped)."""
    with TextReader(path, strict=False) as reader:
        for line in reader:
            if not line.strip():
                continue
            if undecodable(line):
                counter.seen += 1
                counter.drop("invalid_utf8")
                continue
            yield reader.line, line


def read_text(path: str | Path) -> str:
    """The whole text of a plain or gzip file; bad bytes or truncated gzip data raise `DataFileError`."""
    with TextReader(path) as reader:
        return reader.read()


class AtomicOutputs:
    """Outputs that appear together, or not at all.

    ``with AtomicOutputs() as outputs:`` then write each output to ``outputs.stage(final_path)`` (a hidden
    sibling with the same name ending, so format-by-suffix writers still work). A clean exit moves every staged
    output onto its final path (``os.replace``; a folder replaces a folder); an exception removes them and
    leaves every final path as it was.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []

    def stage(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.parent / f".tmp-{os.getpid()}-{secrets.token_hex(4)}.{path.name}"
        self._staged.append((temporary, path))
        return temporary

    def commit(self) -> None:
        missing = [str(final) for temporary, final in self._staged if not temporary.exists()]
        if missing:
            self.discard()
            raise FileNotFoundError(f"outputs staged but never written: {missing}")
        for temporary, final in self._staged:
            _replace(temporary, final)
        self._staged.clear()

    def discard(self) -> None:
        for temporary, _ in self._staged:
            _remove(temporary)
        self._staged.clear()

    def __enter__(self) -> AtomicOutputs:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A staged sibling of `path` to write: moved onto `path` if the block succeeds, removed otherwise."""
    with AtomicOutputs() as outputs:
        yield outputs.stage(path)


def _replace(temporary: Path, final: Path) -> None:
    if final.is_dir() and not final.is_symlink():
        # os.replace cannot move onto a non-empty folder: move the old one aside first.
        old = final.parent / f".old-{os.getpid()}-{secrets.token_hex(4)}.{final.name}"
        os.replace(final, old)
        os.replace(temporary, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(temporary, final)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
