"""A text file as a memory-mapped file of character ids, encoded in one streaming pass.

For a corpus too big to hold as a Python string (a gigabyte of text is up to 4 GB as `str`,
and 4 GB more as int32 ids), `encode_file` reads the file in chunks of `chunk_bytes`, decodes
them incrementally, NFC-normalizes each piece and maps every code point to its id through a
table over all of Unicode, writing the ids to disk as it goes: uint8, uint16 or uint32, the
narrowest that holds the vocabulary. Memory stays at a few chunks whatever the file's size.

The ids are exactly `CharTokenizer.build(text).encode(text)`'s (the Hugging Face tokenizer
stays the definition; `tests/test_idfile.py` checks the two agree on adversarial Unicode):

- NFC: a piece is cut just before an ASCII character, which has combining class 0 and never
  composes with what precedes it, so NFC(a + b) = NFC(a) + NFC(b) at every cut;
- the vocabulary is built in the same pass: a character seen for the first time takes the next
  free provisional id; at the end the vocabulary is sorted as `CharTokenizer.build` sorts it
  (U+FFFD, the unknown token, first) and the ids are renumbered in place, chunk by chunk;
- with the tokenizer of an existing run, a character outside its vocabulary is the unknown id.

Encoded files are cached in `cache` under a key made of the file's SHA-256, the encoding, the
error policy and the tokenizer, so encoding the same corpus again is a hash and a memory map.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import os
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charlstm.corpus import check_text_file, undecodable
from charlstm.download import sha256_of
from charlstm.tokenizer import UNK, UNK_ID, CharTokenizer

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 24  # 16 MiB read at a time: a few of these is the memory used
_CODE_POINTS = 0x110000
_DTYPES = (np.uint8, np.uint16, np.uint32)
# progress(phase, bytes done, total bytes); phase "hash" then "encode"
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class EncodedFile:
    """A corpus file's ids on disk.

    Attributes:
        ids: (N,) np.memmap, read-only, N = characters of NFC(text); dtype uint8, uint16 or
            uint32.
        tokenizer: the vocabulary the ids index (built from the file, or the one given).
        sha256: the file's SHA-256.
        path: the id file.
    """

    ids: np.ndarray
    tokenizer: CharTokenizer
    sha256: str
    path: Path


def dtype_for(vocab_size: int) -> np.dtype:
    """The narrowest unsigned integer type that holds ids 0..vocab_size - 1."""
    for dtype in _DTYPES:
        if vocab_size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"vocab_size {vocab_size} too large")


def encode_file(
    path: str | Path,
    cache: str | Path,
    encoding: str = "utf-8",
    errors: str = "strict",
    tokenizer: CharTokenizer | None = None,
    progress: Progress | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> EncodedFile:
    """Encode text file `path` into an id file in folder `cache` (module docstring), or map the
    one already there.

    Args:
        encoding, errors: as `corpus.read_text` ("strict" refuses bad bytes, naming their
            offset; "replace" makes them U+FFFD).
        tokenizer: encode with this vocabulary (an existing run's); None builds it from the
            file, as `CharTokenizer.build` would from the whole text.
        progress: called as the file is hashed and then encoded.

    Raises:
        CharlstmError: as `read_text` for a missing, empty, binary or undecodable file.
    """
    path, cache = Path(path), Path(cache)
    codec = check_text_file(path, encoding, errors)
    total = path.stat().st_size
    sha = sha256_of(path, (lambda done, total: progress("hash", done, total)) if progress else None)
    given = tokenizer.to_json() if tokenizer is not None else "build"
    key = hashlib.sha256(f"{sha}\n{encoding}\n{errors}\n{given}".encode()).hexdigest()[:32]
    meta_path = cache / f"{key}.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        ids_path = cache / meta["ids"]
        found = CharTokenizer.from_json(meta["tokenizer"])
        return EncodedFile(_map(ids_path, meta["dtype"]), found, sha, ids_path)

    cache.mkdir(parents=True, exist_ok=True)
    encoder = _Encoder(tokenizer, chunk_bytes)
    part = cache / f"{key}.ids.part"
    with part.open("wb") as out:
        for codes in _code_points(path, codec, errors, total, chunk_bytes, progress):
            encoder.write(codes, out)
    tokenizer, dtype = encoder.finish(part)
    ids_path = cache / f"{key}.{dtype.name}"
    os.replace(part, ids_path)
    meta = {"ids": ids_path.name, "dtype": dtype.name, "sha256": sha, "source": str(path),
            "encoding": encoding, "errors": errors, "tokenizer": tokenizer.to_json()}  # fmt: skip
    tmp = meta_path.with_name(meta_path.name + ".part")
    tmp.write_text(json.dumps(meta), encoding="utf-8")
    os.replace(tmp, meta_path)  # written last: an id file without it is never used
    if encoder.unknown:
        log.warning("%s: %d character(s) not in the vocabulary map to %r", path,
                    encoder.unknown, UNK)  # fmt: skip
    return EncodedFile(_map(ids_path, dtype.name), tokenizer, sha, ids_path)


def _map(path: Path, dtype: str) -> np.ndarray:
    return np.memmap(path, dtype=dtype, mode="r")


def _code_points(path, codec, errors, total, chunk_bytes, progress):
    """The file's NFC text as arrays of code points (uint32), piece by piece, each piece cut
    just before an ASCII character (module docstring)."""
    decoder = codecs.getincrementaldecoder(codec)("strict")
    carry, offset = "", 0
    with path.open("rb") as f:
        while True:
            block = f.read(chunk_bytes)
            final = not block
            before = decoder.getstate()
            try:
                text = decoder.decode(block, final=final)
            except UnicodeDecodeError as err:
                # err.start counts from the bytes the decoder still held from the last block
                undecodable(path, codec, offset - len(before[0]) + err.start, errors)
                decoder = codecs.getincrementaldecoder(codec)("replace")
                decoder.setstate(before)
                text = decoder.decode(block, final=final)
            offset += len(block)
            text = carry + text
            cut = len(text) if final else _last_ascii(text)
            carry = text[cut:]
            if cut:
                nfc = unicodedata.normalize("NFC", text[:cut])
                yield np.frombuffer(nfc.encode("utf-32-le", "surrogatepass"), np.uint32)
            if progress:
                progress("encode", offset, total)
            if final:
                return


def _last_ascii(text: str) -> int:
    """The index of the last ASCII character of `text` (0 if none: carry it all)."""
    for start in range(len(text), 0, -4096):
        tail = text[max(start - 4096, 0) : start]
        if not tail.isascii():
            for i in range(len(tail) - 1, -1, -1):
                if tail[i] < "\x80":
                    return max(start - 4096, 0) + i
        else:
            return start - 1
    return 0


class _Encoder:
    """Code points -> ids through a table over all of Unicode, written to a file whose dtype
    widens when the vocabulary outgrows it; the file is rewritten `piece` ids at a time."""

    def __init__(self, tokenizer: CharTokenizer | None, piece: int = CHUNK_BYTES):
        self.tokenizer, self.piece = tokenizer, piece
        self.unknown = 0
        if tokenizer is None:
            self.table = np.full(_CODE_POINTS, -1, np.int32)
            self.chars = [UNK]  # provisional id -> character
            self.dtype = np.dtype(np.uint8)
        else:
            self.table = np.full(_CODE_POINTS, UNK_ID, np.int32)
            for i, ch in enumerate(tokenizer.chars):
                self.table[ord(ch)] = i
            self.dtype = dtype_for(tokenizer.vocab_size)
        self.table[ord(UNK)] = UNK_ID
        self.table[0xD800:0xE000] = UNK_ID  # lone surrogates: unknown, as encode() has them
        self.written = 0

    def write(self, codes: np.ndarray, out) -> None:
        ids = self.table[codes]
        if self.tokenizer is None:
            new = ids < 0
            if new.any():
                fresh = np.unique(codes[new])
                self.table[fresh] = np.arange(len(self.chars), len(self.chars) + len(fresh))
                self.chars.extend(chr(c) for c in fresh)
                ids = self.table[codes]
                self._widen(out)
        else:
            self.unknown += int(np.count_nonzero((ids == UNK_ID) & (codes != ord(UNK))))
        out.write(ids.astype(self.dtype).tobytes())
        self.written += len(ids)

    def _widen(self, out) -> None:
        """Rewrite what is written in a wider dtype once the vocabulary needs it, in place
        from the end backwards (each piece is read before anything lands on it), `piece` ids
        at a time: memory stays bounded however much is written."""
        need = dtype_for(len(self.chars))
        if need.itemsize <= self.dtype.itemsize:
            return
        out.flush()
        with open(out.name, "r+b") as f:
            step = self.piece
            for start in range(self.written - self.written % -step - step, -1, -step):
                f.seek(start * self.dtype.itemsize)
                piece = np.fromfile(f, self.dtype, min(step, self.written - start))
                f.seek(start * need.itemsize)
                f.write(piece.astype(need).tobytes())
        out.seek(self.written * need.itemsize)
        self.dtype = need

    def finish(self, part: Path) -> tuple[CharTokenizer, np.dtype]:
        """Renumber the provisional ids in sorted-vocabulary order (build mode), in place, a
        piece at a time through reads and writes (a writable memory map would count every
        page of the file in the process' resident memory)."""
        if self.tokenizer is not None:
            return self.tokenizer, self.dtype
        tokenizer = CharTokenizer.from_chars(self.chars[1:])
        if not self.written:
            return tokenizer, self.dtype
        final = {ch: i for i, ch in enumerate(tokenizer.chars)}
        remap = np.array([final[ch] for ch in self.chars], dtype=self.dtype)
        with part.open("r+b") as f:
            for start in range(0, self.written, self.piece):
                f.seek(start * self.dtype.itemsize)
                piece = np.fromfile(f, self.dtype, self.piece)
                f.seek(start * self.dtype.itemsize)
                f.write(remap[piece].tobytes())
        return tokenizer, self.dtype
