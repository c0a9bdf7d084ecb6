"""Read training texts: a user's UTF-8 file, or the embedded default corpus.

A corpus is NFC-normalized text made of one or more documents. Its document boundaries let the
split into train/val/test fall between documents, so the default corpus validates on files it
never trained on.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import sys
import sysconfig
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from charlstm.errors import CharlstmError

log = logging.getLogger(__name__)

DEFAULT_CORPUS = "default"
# About 1.1M characters, the size of tinyshakespeare: enough to learn Python's look in minutes.
DEFAULT_CORPUS_CHARS = 1_100_000
_SKIPPED_DIRS = {"site-packages", "dist-packages", "test", "tests", "__pycache__", "idle_test"}
_BINARY_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Corpus:
    """NFC text and where each document starts.

    Attributes:
        name: the file path, or "default".
        text: all documents concatenated, NFC-normalized.
        starts: character offset of each document in `text`, ascending, starting with 0.
    """

    name: str
    text: str
    starts: tuple[int, ...] = (0,)

    @property
    def description(self) -> str:
        docs = f"{len(self.starts)} files, " if len(self.starts) > 1 else ""
        return f"{self.name} ({docs}{len(self.text):,} characters)"


ERRORS = ("strict", "replace")


def read_text(path: str | Path, encoding: str = "utf-8", errors: str = "strict") -> str:
    """Read a text file and return its NFC form.

    Args:
        encoding: the file's encoding (any Python codec name).
        errors: "strict" refuses undecodable bytes; "replace" turns them into U+FFFD and logs
            a warning with the first one's byte offset.

    Raises:
        CharlstmError: missing, not a file, empty, binary (NUL bytes in an encoding that has
            none), or undecodable under "strict"; the message names the file and, for bad
            bytes, the byte offset.
    """
    path = Path(path)
    try:
        codec = codecs.lookup(encoding).name
    except LookupError as err:
        raise CharlstmError(f"unknown encoding {encoding!r}") from err
    if errors not in ERRORS:
        raise CharlstmError(f"errors must be one of {', '.join(ERRORS)}, got {errors!r}")
    if not path.exists():
        raise CharlstmError(f"{path}: no such file")
    if not path.is_file():
        raise CharlstmError(f"{path}: not a regular file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CharlstmError(f"{path}: cannot read ({err.strerror})") from err
    if not data:
        raise CharlstmError(f"{path}: the file is empty; give a UTF-8 text file")
    nul = data.find(b"\x00", 0, _BINARY_SNIFF_BYTES)
    if nul >= 0 and not codec.startswith(("utf-16", "utf-32")):
        raise CharlstmError(
            f"{path}: looks binary (NUL byte at offset {nul}); give a UTF-8 text file"
        )
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as err:
        if errors == "strict":
            raise CharlstmError(
                f"{path}: not valid {codec} (byte offset {err.start}); convert it, or pass "
                "--encoding or --errors replace"
            ) from err
        text = data.decode(codec, errors="replace")
        log.warning(
            "%s: not valid %s from byte offset %d; undecodable bytes became U+FFFD",
            path,
            codec,
            err.start,
        )
    return unicodedata.normalize("NFC", text)


def load_corpus(path: str | Path | None, encoding: str = "utf-8", errors: str = "strict") -> Corpus:
    """The corpus a run trains on: the file at `path`, or the default corpus when None."""
    if path is None or str(path) in ("", DEFAULT_CORPUS):
        return default_corpus()
    return Corpus(name=str(path), text=read_text(path, encoding, errors))


def default_corpus(max_chars: int = DEFAULT_CORPUS_CHARS) -> Corpus:
    """Python source files of the running interpreter's standard library, read offline.

    Files are taken in a fixed pseudo-random order (by SHA-256 of their relative path, so
    packages are mixed yet the order never changes); a file that would pass `max_chars` is
    passed over, and filling stops within 1000 characters of it. Test suites and installed
    third-party packages are left out; a file that is not UTF-8 is skipped. The same Python
    version always gives the same corpus.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [
        p
        for p in root.rglob("*.py")
        if not _SKIPPED_DIRS.intersection(p.relative_to(root).parts[:-1])
    ]
    files.sort(key=lambda p: hashlib.sha256(p.relative_to(root).as_posix().encode()).hexdigest())
    texts: list[str] = []
    total = 0
    for p in files:
        try:
            text = unicodedata.normalize("NFC", p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        if not text:
            continue
        if total + len(text) > max_chars:
            continue  # too big for the room left; a smaller file later may fit
        texts.append(text)
        total += len(text)
        if max_chars - total < 1000:
            break
    if len(texts) < 3:
        raise CharlstmError(
            f"the standard library at {root} has too few readable .py files for the default "
            "corpus; give a TEXT_FILE"
        )
    starts = [0]
    for text in texts[:-1]:
        starts.append(starts[-1] + len(text))
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    log.info("default corpus: %d stdlib files of Python %s", len(texts), version)
    return Corpus(name=DEFAULT_CORPUS, text="".join(texts), starts=tuple(starts))
