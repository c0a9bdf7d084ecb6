"""Read training texts: a user's UTF-8 file, a folder or glob of them, or a catalogue corpus.

The catalogue (`corpora/catalogue.json`, installed as the package `charlstm.corpora`) names the
corpora charlstm knows: `tinyshakespeare`, which ships with the package and is the default,
`python-stdlib`, built from the running Python's standard library, and corpora to download
once into the cache (`fetch_corpus`; `warandpeace`, `text8`, `enwik8`).

A corpus is NFC-normalized text made of one or more documents. Its document boundaries let the
split into train/val/test fall between documents, so python-stdlib validates on files it
never trained on.
"""

from __future__ import annotations

import codecs
import collections
import functools
import glob
import hashlib
import importlib.resources
import json
import logging
import lzma
import math
import os
import shutil
import sys
import sysconfig
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

from charlstm.errors import CharlstmError

log = logging.getLogger(__name__)

DEFAULT_CORPUS = "tinyshakespeare"
STDLIB_CORPUS = "python-stdlib"
# runs saved before python-stdlib had its name called it "default"
_OLD_NAMES = {"default": STDLIB_CORPUS}
# About 1.1M characters, the size of tinyshakespeare: enough to learn Python's look in minutes.
STDLIB_CORPUS_CHARS = 1_100_000
# test suites, third-party packages, and the codecs' generated mapping tables (encodings/)
_SKIPPED_DIRS = {"site-packages", "dist-packages", "test", "tests", "__pycache__", "idle_test",
                 "encodings"}  # fmt: skip
# A file longer than this is passed over: a few big ones (pydoc_data's topics, generated
# tables) would otherwise fill the corpus, and its validation part would be one or two files
# unlike the rest (a 3-minute run: training loss 0.81 against validation 2.34 with them).
STDLIB_FILE_CHARS = 15_000
_BINARY_SNIFF_BYTES = 8192
# A corpus that is one file of at least this many bytes is encoded streaming into a memory-
# mapped id file (charlstm.idfile) instead of being read whole into a str.
STREAM_BYTES = 64 << 20


@dataclass(frozen=True)
class Corpus:
    """NFC text and where each document starts.

    Attributes:
        name: the file path, or the catalogue name.
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


def check_text_file(path: Path, encoding: str = "utf-8", errors: str = "strict") -> str:
    """Refuse what cannot be a text file before reading it: an unknown encoding or error
    policy, a missing, irregular or empty file, or one that looks binary (a NUL byte in its
    first bytes, in an encoding that has none). Returns the codec's name.

    Raises:
        CharlstmError: naming the file and what is wrong.
    """
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
        with path.open("rb") as f:
            head = f.read(_BINARY_SNIFF_BYTES)
    except OSError as err:
        raise CharlstmError(f"{path}: cannot read ({err.strerror})") from err
    if not head:
        raise CharlstmError(f"{path}: the file is empty; give a UTF-8 text file")
    nul = head.find(b"\x00")
    if nul >= 0 and not codec.startswith(("utf-16", "utf-32")):
        raise CharlstmError(
            f"{path}: looks binary (NUL byte at offset {nul}); give a UTF-8 text file"
        )
    return codec


def undecodable(path: Path, codec: str, offset: int, errors: str) -> None:
    """Bad bytes at `offset`: under "strict" a CharlstmError; under "replace" one warning
    (they become U+FFFD)."""
    if errors == "strict":
        raise CharlstmError(
            f"{path}: not valid {codec} (byte offset {offset}); convert it, or pass "
            "--encoding or --errors replace"
        )
    log.warning(
        "%s: not valid %s from byte offset %d; undecodable bytes became U+FFFD",
        path,
        codec,
        offset,
    )


def read_text(path: str | Path, encoding: str = "utf-8", errors: str = "strict") -> str:
    """Read a text file and return its NFC form.

    Args:
        encoding: the file's encoding (any Python codec name).
        errors: "strict" refuses undecodable bytes; "replace" turns them into U+FFFD and logs
            a warning with the first one's byte offset.

    Raises:
        CharlstmError: as `check_text_file`, or undecodable under "strict"; the message names
            the file and, for bad bytes, the byte offset.
    """
    path = Path(path)
    codec = check_text_file(path, encoding, errors)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CharlstmError(f"{path}: cannot read ({err.strerror})") from err
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as err:
        undecodable(path, codec, err.start, errors)
        text = data.decode(codec, errors="replace")
    return unicodedata.normalize("NFC", text)


@dataclass(frozen=True)
class Entry:
    """A corpus the catalogue (`corpora/catalogue.json`) knows by name.

    Attributes:
        name, source, licence, note: what it is called, where it comes from, its licence.
        path: the text's file name (shipped, or in the cache once fetched); None for a corpus
            built on the fly.
        bytes, sha256: the shipped text's, or for one to download the download's (None where
            not known).
        url, download, member: for one to download: where from, the downloaded file's name,
            and the text's name inside a zip (None: the download is the text).
        trust_on_first_use: a download with no published SHA-256 to pin: the first download's
            SHA-256 and size are recorded beside it, and every later use is checked against
            them.
    """

    name: str
    source: str
    licence: str
    note: str
    path: str | None
    bytes: int | None
    sha256: str | None
    url: str | None = None
    download: str | None = None
    member: str | None = None
    trust_on_first_use: bool = False


def catalogue() -> tuple[Entry, ...]:
    """The catalogue's entries, in its order; read once."""
    return _catalogue()


@functools.cache
def _catalogue() -> tuple[Entry, ...]:
    data = json.loads(_corpora().joinpath("catalogue.json").read_text(encoding="utf-8"))
    return tuple(Entry(**entry) for entry in data)


def _corpora():
    """The folder of the shipped corpora, wherever the package is installed."""
    return importlib.resources.files("charlstm.corpora")


def _entry(name: str) -> Entry | None:
    return next((e for e in catalogue() if e.name == name), None)


def corpus_path(name: str) -> Path | None:
    """The text file of catalogue corpus `name`: shipped, or downloaded into the cache
    (`charlstm.download.cache_dir`); None if it has none (built on the fly, or not fetched)."""
    entry = _entry(name)
    if entry is None or not entry.path:
        return None
    if entry.url:
        from charlstm.download import cache_dir  # noqa: PLC0415

        path = cache_dir() / entry.path
        return path if path.is_file() else None
    return Path(str(_corpora().joinpath(entry.path)))


def fetch_corpus(name: str, progress=None) -> tuple[Path, bool]:
    """Download catalogue corpus `name` into the cache (once: a fetched corpus is not fetched
    again), check its size and SHA-256 where the catalogue has them, and unpack its text.
    Returns the text's path and whether anything was downloaded; `progress` as in
    `charlstm.download.download`.

    A text already in the cache is checked against its record (`charlstm.download.Record`)
    first; a truncated or replaced one is unpacked or downloaded again. An entry whose
    catalogue has no SHA-256 (`Entry.trust_on_first_use`) records the first download's and
    checks every later use against it.

    Raises:
        CharlstmError: not a downloadable corpus, or the download failed (see `download`).
    """
    from charlstm.download import cache_dir, download, sha256_of, write_record  # noqa: PLC0415

    entry = _entry(name)
    if entry is None or not entry.url or not entry.path or not entry.download:
        known = ", ".join(e.name for e in catalogue() if e.url)
        raise CharlstmError(f"{name}: not a corpus to download ({known})")
    folder = cache_dir()
    text = folder / entry.path
    if entry.member and text.is_file():
        problem = cached_text_problem(text)
        if problem is None:
            return text, False
        log.warning("%s: %s; unpacking it again", text, problem)
        text.unlink()
    got = download(
        entry.url, folder / entry.download, sha256=entry.sha256, size=entry.bytes,
        progress=progress,
    )  # fmt: skip
    if entry.sha256 is None and got.fetched:
        log.warning(
            "%s: SHA-256 %s and %s bytes recorded on first download (the catalogue has no "
            "checksum for it); every later use is checked against them",
            name, got.sha256, f"{got.bytes:,}",
        )  # fmt: skip
    if entry.member:
        _unzip(got.path, entry.member, text)
        write_record(text, sha256_of(text), text.stat().st_size)
    return text, got.fetched


def cached_text_problem(path: Path) -> str | None:
    """What is wrong with a downloaded corpus' text in the cache (`charlstm.download.
    cached_problem` against its record), or None; a text without a record is not trusted."""
    from charlstm.download import cached_problem, read_record  # noqa: PLC0415

    if read_record(path) is None:
        return "no record of its SHA-256 beside it"
    return cached_problem(path)


def _unzip(archive: Path, member: str, dest: Path) -> None:
    """Write `member` of zip `archive` to `dest`, through a temporary file and a rename."""
    part = dest.with_name(dest.name + ".part")
    try:
        with zipfile.ZipFile(archive) as zf, zf.open(member) as src, part.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    except (zipfile.BadZipFile, KeyError) as err:
        part.unlink(missing_ok=True)
        raise CharlstmError(f"{archive}: not a zip with {member} in it ({err})") from err
    os.replace(part, dest)


@dataclass(frozen=True)
class Source:
    """A corpus as the user named it, resolved once: which texts, what a run's config calls it.

    Attributes:
        name: as given (messages and the log use it).
        key: how a run's config names it: a catalogue name as it is, a file, folder or glob
            pattern by its absolute path.
        label: a short name, the default run folder: a file's stem, a folder's name, for a
            pattern the folder it looks in, a catalogue name.
        kind: "catalogue" (a shipped or downloaded text), "stdlib" (python-stdlib, built on
            the fly), "file", "files" (a folder or pattern) or "missing" (none of these).
        files: the text files, sorted: one for a file or a fetched catalogue corpus, the
            folder's or pattern's; none for python-stdlib, a corpus not fetched, or missing.
        size: about how many characters, known without reading: the files' bytes, or
            python-stdlib's cap; None when there is nothing to read.
    """

    name: str
    key: str
    label: str
    kind: str
    files: tuple[Path, ...]
    size: int | None

    @property
    def stream_file(self) -> Path | None:
        """The file to encode streaming (`charlstm.idfile`): a corpus that is one file of
        STREAM_BYTES or more; else None."""
        one = self.kind in ("file", "catalogue") and len(self.files) == 1
        return self.files[0] if one and (self.size or 0) >= STREAM_BYTES else None

    def check(self) -> None:
        """Refuse a downloaded corpus whose cached text is not the one verified when it was
        fetched (`cached_text_problem`: truncated, replaced, or without a record).

        Raises:
            CharlstmError: naming the file, what is wrong, and the command that fetches it
                again.
        """
        entry = _entry(self.key) if self.kind == "catalogue" and self.files else None
        if entry is None or not entry.url:
            return
        problem = cached_text_problem(self.files[0])
        if problem is not None:
            raise CharlstmError(
                f"{self.files[0]}: {problem}; `charlstm corpus fetch {self.key}` fetches it again"
            )

    def load(self, encoding: str = "utf-8", errors: str = "strict") -> Corpus:
        """The corpus' text (NFC) and document starts; a downloaded one is `check`ed first.

        Raises:
            CharlstmError: missing, not fetched, not the text verified when it was fetched,
                or not readable text.
        """
        if self.kind == "stdlib":
            return stdlib_corpus()
        if self.kind == "files":
            return read_files(self.name, self.files, encoding, errors)
        if self.kind == "missing":
            names = ", ".join(e.name for e in catalogue())
            raise CharlstmError(f"{self.name}: no such file, nor a corpus name ({names})")
        if not self.files:
            raise CharlstmError(
                f"{self.key} is not downloaded yet: charlstm corpus fetch {self.key}"
            )
        self.check()
        name = self.key if self.kind == "catalogue" else self.name
        return Corpus(name=name, text=read_text(self.files[0], encoding, errors))


def resolve(name_or_path: str | Path | None) -> Source:
    """What `name_or_path` names: a text file, a folder or glob pattern of them, or a
    catalogue corpus by name (a file of that name in the working directory wins); None or ""
    is DEFAULT_CORPUS. Never raises: `Source.load` says what is wrong."""
    name = str(name_or_path or DEFAULT_CORPUS)
    known = _OLD_NAMES.get(name, name)
    if _entry(known) is not None and not Path(name).exists():
        path = corpus_path(known)
        kind = "stdlib" if known == STDLIB_CORPUS else "catalogue"
        size = STDLIB_CORPUS_CHARS if kind == "stdlib" else _size(path)
        return Source(name, known, known, kind, (path,) if path else (), size)
    label = _label(name)
    if is_pattern(name) or Path(name).is_dir():
        files = tuple(corpus_files(name))
        size = sum(f.stat().st_size for f in files) or None
        return Source(name, str(Path(name).resolve()), label, "files", files, size)
    path = Path(name)
    kind = "file" if path.exists() else "missing"
    return Source(name, str(path.resolve()), label, kind, (path,) if path.exists() else (),
                  _size(path))  # fmt: skip


def _size(path: Path | None) -> int | None:
    return path.stat().st_size if path is not None and path.is_file() else None


def _label(name: str) -> str:
    path = Path(name)
    while is_pattern(path.name):
        path = path.parent
    return path.stem or "corpus"


def load_corpus(
    name_or_path: str | Path | None, encoding: str = "utf-8", errors: str = "strict"
) -> Corpus:
    """`resolve(name_or_path).load(encoding, errors)`: the text of a file, folder, pattern or
    catalogue corpus.

    Raises:
        CharlstmError: neither a readable text nor a catalogue name.
    """
    return resolve(name_or_path).load(encoding, errors)


def is_pattern(name: str) -> bool:
    """Whether `name` is a glob pattern ('texts/*.md', 'books/**/*.txt')."""
    return any(ch in name for ch in "*?[")


def corpus_files(name: str) -> list[Path]:
    """The files a folder (every file under it, hidden ones left out) or a glob pattern names,
    sorted by path."""
    if is_pattern(name):
        found = glob.glob(name, recursive=True)
    else:
        found = [str(p) for p in Path(name).rglob("*")]
    files = [Path(f) for f in found if Path(f).is_file()]
    visible = [f for f in files if not any(part.startswith(".") for part in f.parts[-3:])]
    return sorted(visible)


def read_files(
    name: str, files: tuple[Path, ...], encoding: str = "utf-8", errors: str = "strict"
) -> Corpus:
    """The text files of folder or glob pattern `name` (`corpus_files`, sorted by path) as
    one corpus of documents, each followed by a newline if it does not end with one. A file
    that `read_text` refuses (binary, not in `encoding`, empty) is skipped with one warning
    line, and the count of skipped files is logged at the end.

    Raises:
        CharlstmError: no file, or no readable file.
    """
    if not files:
        raise CharlstmError(f"{name}: no files there")
    texts, refused = [], []
    for path in files:
        try:
            text = read_text(path, encoding, errors)
        except CharlstmError as err:
            refused.append(str(err))
            continue
        texts.append(text if text.endswith("\n") else text + "\n")
    if not texts:
        raise CharlstmError(
            f"{name}: none of its {len(files)} files is readable text (first: {refused[0]})"
        )
    for reason in refused:
        log.warning("skipped %s", reason)
    if refused:
        log.warning("%s: skipped %d of %d files", name, len(refused), len(files))
    starts = [0]
    for text in texts[:-1]:
        starts.append(starts[-1] + len(text))
    return Corpus(name=name, text="".join(texts), starts=tuple(starts))


def stdlib_corpus(max_chars: int = STDLIB_CORPUS_CHARS) -> Corpus:
    """Python source files of the running interpreter's standard library, read offline.

    Files are taken in a fixed pseudo-random order (by SHA-256 of their relative path, so
    packages are mixed yet the order never changes); a file that would pass `max_chars` is
    passed over, and filling stops within 1000 characters of it. Test suites, installed
    third-party packages, the codec tables and files over STDLIB_FILE_CHARS are left out (so
    some 200 files of ordinary code make it up); a file that is not UTF-8 is skipped. The same
    Python version always gives the same corpus.
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
        if not text or len(text) > STDLIB_FILE_CHARS:
            continue
        if total + len(text) > max_chars:
            continue  # too big for the room left; a smaller file later may fit
        texts.append(text)
        total += len(text)
        if max_chars - total < 1000:
            break
    if len(texts) < 3:
        raise CharlstmError(
            f"the standard library at {root} has too few readable .py files for "
            f"{STDLIB_CORPUS}; give a TEXT_FILE or another corpus name"
        )
    starts = [0]
    for text in texts[:-1]:
        starts.append(starts[-1] + len(text))
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    log.info("%s: %d standard-library files of Python %s", STDLIB_CORPUS, len(texts), version)
    return Corpus(name=STDLIB_CORPUS, text="".join(texts), starts=tuple(starts))


@dataclass(frozen=True)
class TextStats:
    """What `charlstm corpus info` reports: reference points for a model's bits/char.

    Attributes:
        chars, distinct, lines: characters, distinct characters, newline characters.
        most_common: the likeliest characters with their counts, most common first.
        unigram_bits: the entropy of the character frequencies, -sum p log2 p, bits/char: what
            a model that ignores all context scores at best.
        lzma_bits: the size of the UTF-8 text compressed by lzma (preset 9 extreme), in bits
            per character: a general-purpose compressor's score, which a trained model should
            beat.
    """

    chars: int
    distinct: int
    lines: int
    most_common: tuple[tuple[str, int], ...]
    unigram_bits: float
    lzma_bits: float


def text_stats(text: str, top: int = 10) -> TextStats:
    """TextStats of `text` (non-empty), with the `top` most common characters."""
    counts = collections.Counter(text)
    n = len(text)
    entropy = -sum(c / n * math.log2(c / n) for c in counts.values())
    packed = lzma.compress(text.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME)
    return TextStats(
        chars=n,
        distinct=len(counts),
        lines=counts.get("\n", 0),
        most_common=tuple(counts.most_common(top)),
        unigram_bits=entropy,
        lzma_bits=8 * len(packed) / n,
    )
