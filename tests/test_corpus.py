"""read_text refuses what is not UTF-8 text; the default corpus is fixed and split by files."""

from __future__ import annotations

import re
import sysconfig
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from charlstm.corpus import DEFAULT_CORPUS_CHARS, default_corpus, load_corpus, read_text
from charlstm.data import split_ids
from charlstm.errors import CharlstmError

SMALL = 200_000  # characters: enough stdlib files to split, a fifth of the reading


@pytest.fixture(scope="module")
def small_corpus():
    return default_corpus(max_chars=SMALL)


def documents(corpus) -> list[str]:
    bounds = [*corpus.starts, len(corpus.text)]
    return [corpus.text[a:b] for a, b in zip(bounds, bounds[1:])]


def raises_naming(path: Path, what: str):
    return pytest.raises(CharlstmError, match=f"^{re.escape(str(path))}: .*{what}")


def test_read_text_of_a_missing_file_raises_naming_it(tmp_path):
    path = tmp_path / "missing.txt"
    with raises_naming(path, "no such file"):
        read_text(path)


def test_read_text_of_a_directory_raises_naming_it(tmp_path):
    with raises_naming(tmp_path, "not a regular file"):
        read_text(tmp_path)


def test_read_text_of_an_empty_file_raises_naming_it(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with raises_naming(path, "empty"):
        read_text(path)


def test_read_text_of_a_png_raises_binary_naming_it(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10")
    with raises_naming(path, r"looks binary \(NUL byte at offset 8\)"):
        read_text(path)


def test_read_text_of_invalid_utf8_raises_with_the_byte_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9 au lait".encode("latin-1"))
    with raises_naming(path, r"not valid (?i:utf-8) \(byte offset 3\)"):
        read_text(path)


def test_read_text_applies_nfc_and_keeps_line_ends(tmp_path):
    path = tmp_path / "decomposed.txt"
    path.write_bytes("cafe\u0301\r\nna\u0308\u0323ve\n".encode())
    text = read_text(path)
    assert text == "caf\u00e9\r\nn\u1ea1\u0308ve\n"
    assert unicodedata.is_normalized("NFC", text)


def test_load_corpus_of_a_file_is_one_document(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("hello\n", encoding="utf-8")
    corpus = load_corpus(path)
    assert (corpus.name, corpus.text, corpus.starts) == (str(path), "hello\n", (0,))
    assert corpus.description == f"{path} (6 characters)"


def test_default_corpus_is_within_the_cap_with_more_than_three_files():
    corpus = load_corpus(None)
    assert corpus.name == "default"
    assert DEFAULT_CORPUS_CHARS - 1000 <= len(corpus.text) <= DEFAULT_CORPUS_CHARS
    assert len(corpus.starts) > 3
    assert unicodedata.is_normalized("NFC", corpus.text)


def test_default_corpus_is_deterministic(small_corpus):
    again = default_corpus(max_chars=SMALL)
    assert again.text == small_corpus.text and again.starts == small_corpus.starts


def test_default_corpus_respects_a_smaller_cap(small_corpus):
    assert SMALL - 1000 <= len(small_corpus.text) <= SMALL
    assert len(small_corpus.starts) > 3


def test_default_corpus_starts_ascend_from_0_at_whole_stdlib_files(small_corpus):
    starts = small_corpus.starts
    assert starts[0] == 0
    assert all(a < b for a, b in zip(starts, starts[1:]))
    assert starts[-1] < len(small_corpus.text)
    root = Path(sysconfig.get_paths()["stdlib"])
    stdlib_files = {
        unicodedata.normalize("NFC", p.read_text(encoding="utf-8", errors="replace"))
        for p in root.rglob("*.py")
    }
    assert all(doc in stdlib_files for doc in documents(small_corpus))


def test_split_of_the_default_corpus_validates_on_files_not_trained_on(small_corpus):
    starts = small_corpus.starts
    splits = split_ids(np.arange(len(small_corpus.text)), starts=starts)
    train_end, val_end = len(splits.train), len(splits.train) + len(splits.val)
    assert train_end in starts and val_end in starts
    assert 0 < len(splits.val) and 0 < len(splits.test)
    docs = documents(small_corpus)
    train_docs = {d for s, d in zip(starts, docs) if s < train_end}
    val_docs = [d for s, d in zip(starts, docs) if train_end <= s < val_end]
    assert val_docs and not train_docs.intersection(val_docs)
