"""read_text refuses what is not UTF-8 text; corpora load by name; python-stdlib is fixed and split
by files."""

from __future__ import annotations

import json
import re
import sysconfig
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from charlstm.corpus import (
    STDLIB_CORPUS_CHARS,
    STDLIB_FILE_CHARS,
    catalogue,
    corpus_path,
    load_corpus,
    read_text,
    resolve,
    stdlib_corpus,
    text_stats,
)
from charlstm.data import split_ids
from charlstm.errors import CharlstmError

SMALL = 200_000  # characters: enough stdlib files to split, a fifth of the reading


@pytest.fixture(scope="module")
def small_corpus():
    return stdlib_corpus(max_chars=SMALL)


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


def test_the_default_corpus_is_the_shipped_tinyshakespeare():
    corpus = load_corpus(None)
    assert corpus.name == "tinyshakespeare" and corpus.starts == (0,)
    assert len(corpus.text) == 1_115_394 and corpus.text.startswith("First Citizen:\n")
    assert load_corpus("").text == load_corpus("tinyshakespeare").text == corpus.text
    assert resolve(None).key == resolve("tinyshakespeare").key == "tinyshakespeare"
    assert resolve(None).size == 1_115_394


def test_every_catalogued_file_ships_with_its_recorded_size_and_hash():
    import hashlib  # noqa: PLC0415

    shipped = [e for e in catalogue() if e.path and not e.url]  # not the downloads
    assert shipped
    for entry in shipped:
        data = corpus_path(entry.name).read_bytes()
        assert len(data) == entry.bytes
        assert hashlib.sha256(data).hexdigest() == entry.sha256


def test_a_file_named_like_a_corpus_wins_over_the_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("tinyshakespeare").write_text("my own text\n", encoding="utf-8")
    assert load_corpus("tinyshakespeare").text == "my own text\n"
    assert resolve("tinyshakespeare").key == str(tmp_path / "tinyshakespeare")


def test_an_unknown_name_says_it_is_neither_a_file_nor_a_corpus(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CharlstmError, match="no such file, nor a corpus name .*tinyshakespeare"):
        load_corpus("war-and-peace")


def test_python_stdlib_is_within_the_cap_with_more_than_three_files():
    corpus = load_corpus("python-stdlib")
    assert corpus.name == "python-stdlib" and load_corpus("default").text == corpus.text
    assert STDLIB_CORPUS_CHARS - 1000 <= len(corpus.text) <= STDLIB_CORPUS_CHARS
    assert len(corpus.starts) > 3
    assert unicodedata.is_normalized("NFC", corpus.text)


def test_python_stdlib_is_many_ordinary_files_so_its_validation_part_is_too():
    """No codec tables, no file over STDLIB_FILE_CHARS: the corpus is over a hundred files,
    and its 5% validation part several of them (with the big generated files it was one or
    two, and a 3-minute run scored 0.81 nats/char in training against 2.34 in validation)."""
    corpus = load_corpus("python-stdlib")
    docs = documents(corpus)
    assert len(docs) > 100 and max(len(d) for d in docs) <= STDLIB_FILE_CHARS
    assert not any("Decoding Table" in d or "decoding_table = (" in d for d in docs)
    splits = split_ids(np.arange(len(corpus.text)), 0.05, 0.05, corpus.starts)
    inside = [
        s for s in corpus.starts if len(splits.train) <= s < len(splits.train) + len(splits.val)
    ]
    assert len(inside) >= 4  # validation files


def test_python_stdlib_is_the_same_in_another_process_with_another_hash_seed(small_corpus):
    """The file order may not depend on anything a process varies (str hashes, say)."""
    import hashlib
    import os
    import subprocess
    import sys

    code = (
        "import hashlib; from charlstm.corpus import stdlib_corpus; "
        f"c = stdlib_corpus(max_chars={SMALL}); "
        "print(hashlib.sha256(c.text.encode()).hexdigest(), c.starts)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    digest = hashlib.sha256(small_corpus.text.encode()).hexdigest()
    assert done.stdout.strip() == f"{digest} {small_corpus.starts}"


def test_python_stdlib_respects_a_smaller_cap(small_corpus):
    assert SMALL - 1000 <= len(small_corpus.text) <= SMALL
    assert len(small_corpus.starts) > 3


def test_python_stdlib_starts_ascend_from_0_at_whole_stdlib_files(small_corpus):
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


def test_split_of_python_stdlib_validates_on_files_not_trained_on(small_corpus):
    starts = small_corpus.starts
    splits = split_ids(np.arange(len(small_corpus.text)), starts=starts)
    train_end, val_end = len(splits.train), len(splits.train) + len(splits.val)
    assert train_end in starts and val_end in starts
    assert 0 < len(splits.val) and 0 < len(splits.test)
    docs = documents(small_corpus)
    train_docs = {d for s, d in zip(starts, docs) if s < train_end}
    val_docs = [d for s, d in zip(starts, docs) if train_end <= s < val_end]
    assert val_docs and not train_docs.intersection(val_docs)


def test_text_stats_count_characters_lines_and_the_unigram_entropy():
    stats = text_stats("aab\n" * 1000)
    assert (stats.chars, stats.distinct, stats.lines) == (4000, 3, 1000)
    assert stats.most_common[0] == ("a", 2000)
    assert stats.unigram_bits == pytest.approx(1.5)  # p = 1/2, 1/4, 1/4
    assert stats.lzma_bits < 0.25  # a repeated line: lzma's headers, then next to nothing


def test_corpus_list_and_info_through_the_command():
    from click.testing import CliRunner  # noqa: PLC0415

    from charlstm.cli import cli  # noqa: PLC0415

    listed = CliRunner().invoke(cli, ["corpus", "list"])
    assert listed.exit_code == 0, listed.output
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [row[0] for row in rows] == [e.name for e in catalogue()]
    assert rows[0][2] == str(corpus_path("tinyshakespeare"))
    info = CliRunner().invoke(cli, ["corpus", "info", "tinyshakespeare", "--json"])
    assert info.exit_code == 0, info.output
    report = json.loads(info.stdout)
    assert (report["chars"], report["distinct"], report["lines"]) == (1_115_394, 65, 40_000)
    # context-free and compressor reference points, in the order a model should beat them
    assert 4.5 < report["unigram_bits"] < 5 and 2 < report["lzma_bits"] < 3


def _folder(tmp_path) -> Path:
    d = tmp_path / "texts"
    (d / "sub").mkdir(parents=True)
    (d / "b.md").write_text("# bee\n", encoding="utf-8")
    (d / "a.txt").write_text("no newline at the end", encoding="utf-8")
    (d / "sub" / "c.txt").write_text("sea\n", encoding="utf-8")
    (d / ".hidden.txt").write_text("secret\n", encoding="utf-8")
    (d / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(20))
    (d / "latin1.txt").write_bytes("caf\u00e9\n".encode("latin-1"))
    return d


def test_a_folder_is_its_text_files_in_sorted_order_and_skips_what_is_not_text(tmp_path, caplog):
    d = _folder(tmp_path)
    with caplog.at_level("WARNING", logger="charlstm"):
        corpus = load_corpus(d)
    docs = ["no newline at the end\n", "# bee\n", "sea\n"]  # a.txt, b.md, sub/c.txt
    assert corpus.text == "".join(docs) and corpus.name == str(d)
    assert corpus.starts == (0, len(docs[0]), len(docs[0]) + len(docs[1]))
    skipped = [r.getMessage() for r in caplog.records]
    assert len(skipped) == 3 and "image.png" in skipped[0] and "binary" in skipped[0]
    assert "latin1.txt" in skipped[1] and skipped[2].endswith("skipped 2 of 5 files")
    assert resolve(d).key == str(d.resolve()) and resolve(d).size > 0


def test_a_glob_pattern_takes_the_files_it_matches(tmp_path):
    d = _folder(tmp_path)
    assert load_corpus(f"{d}/*.md").text == "# bee\n"
    assert load_corpus(f"{d}/**/*.txt").text == "no newline at the end\nsea\n"
    assert resolve(f"{d}/**/*.txt").label == "texts" and resolve(str(d / "a.txt")).label == "a"
    with pytest.raises(CharlstmError, match="no files there"):
        load_corpus(f"{d}/*.rst")


def test_a_corpus_is_resolved_into_one_value_and_the_catalogue_is_read_once(tmp_path):
    from charlstm import corpus

    text = tmp_path / "book.txt"
    text.write_text("abc\n", encoding="utf-8")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "a.txt").write_text("one\n", encoding="utf-8")
    corpus._catalogue.cache_clear()
    found = {name: resolve(name) for name in
             ("tinyshakespeare", "python-stdlib", "default", str(text), str(tmp_path / "folder"),
              str(tmp_path / "nope.txt"))}  # fmt: skip
    assert corpus._catalogue.cache_info().misses == 1
    kinds = {name: (s.kind, s.key, s.label) for name, s in found.items()}
    assert kinds["tinyshakespeare"] == ("catalogue", "tinyshakespeare", "tinyshakespeare")
    assert kinds["default"] == ("stdlib", "python-stdlib", "python-stdlib")
    assert kinds[str(text)] == ("file", str(text.resolve()), "book")
    assert kinds[str(tmp_path / "folder")][0] == "files"
    assert found[str(tmp_path / "folder")].files == (tmp_path / "folder" / "a.txt",)
    missing = found[str(tmp_path / "nope.txt")]
    assert (missing.kind, missing.files, missing.size) == ("missing", (), None)
    with pytest.raises(CharlstmError, match="no such file, nor a corpus name"):
        missing.load()
    assert found[str(text)].load().text == "abc\n" and found[str(text)].size == 4
    assert found["tinyshakespeare"].stream_file is None  # 1 MB: read whole
