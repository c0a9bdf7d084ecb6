"""idfile: the streaming encoder gives exactly the Hugging Face tokenizer's ids, on adversarial
Unicode and at every chunk boundary; the id file is cached and memory-mapped; TBPTT windows are
views of it; and a run trained from it is the run trained from the text."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charlstm import corpus
from charlstm.corpus import read_text
from charlstm.data import tbptt_windows
from charlstm.errors import CharlstmError
from charlstm.idfile import dtype_for, encode_file
from charlstm.tokenizer import UNK_ID, CharTokenizer
from tests.conftest import make_text, tiny_config

# what makes NFC hard at a cut: combining marks (which compose with, or reorder after, what
# precedes them), Hangul jamo (which compose into syllables), precomposed letters, CRLF, the
# unknown token itself, astral characters
HARD = (
    "e\u0301", "\u0301", "\u0327\u030a", "A\u030a", "\u1100\u1161\u11a8", "\ud55c", "\u00e9",
    "\r\n", "\ufffd", "\U0001f600", "\u0915\u093c", "\u212b", "\u1e0a\u0323", "x", " ", "\n",
)  # fmt: skip
# no NUL: a file with one is refused as binary (check_text_file, tested in test_corpus)
hard_text = st.lists(
    st.one_of(
        st.sampled_from(HARD), st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
    ),
    min_size=1,
    max_size=300,
).map("".join)


def _reference(text: str):
    tokenizer = CharTokenizer.build(text)
    return tokenizer, tokenizer.encode(text)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=hard_text, chunk=st.integers(1, 40))
def test_streamed_ids_and_vocabulary_equal_the_tokenizers_at_any_chunk_size(tmp_path, text, chunk):
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    found = encode_file(path, tmp_path / f"cache-{chunk}-{hash(text)}", chunk_bytes=chunk)
    tokenizer, ids = _reference(text)
    assert found.tokenizer.chars == tokenizer.chars
    assert np.array_equal(np.asarray(found.ids), ids)
    assert found.ids.dtype == dtype_for(tokenizer.vocab_size)


def test_with_a_runs_tokenizer_unknown_characters_are_the_unknown_id(tmp_path):
    trained_on = "plain ascii text\n" * 20
    tokenizer = CharTokenizer.build(trained_on)
    text = "plain caf\u00e9 text \U0001f600 \ufffd\n" * 30
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    found = encode_file(path, tmp_path / "cache", tokenizer=tokenizer, chunk_bytes=17)
    assert found.tokenizer.chars == tokenizer.chars
    assert np.array_equal(np.asarray(found.ids), tokenizer.encode(text))
    # f, é and 😀 are not in the vocabulary; U+FFFD is the unknown token itself
    assert (np.asarray(found.ids) == UNK_ID).sum() == 4 * 30


def test_a_vocabulary_past_255_characters_widens_the_file_to_uint16(tmp_path):
    text = "ab\n" * 1000 + "".join(chr(0x4E00 + i) for i in range(400)) + "\nab" * 100
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    found = encode_file(path, tmp_path / "cache", chunk_bytes=256)
    assert found.ids.dtype == np.uint16
    assert np.array_equal(np.asarray(found.ids), _reference(text)[1])


def test_the_id_file_is_cached_by_content_and_mapped_read_only(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(make_text(), encoding="utf-8")
    cache = tmp_path / "cache"
    first = encode_file(path, cache)
    stamp = first.path.stat().st_mtime_ns
    again = encode_file(path, cache)
    assert again.path == first.path and again.path.stat().st_mtime_ns == stamp  # not re-encoded
    assert isinstance(again.ids, np.memmap) and not again.ids.flags.writeable
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".uint8"]  # no .part left
    path.write_text(make_text(seed=1), encoding="utf-8")  # other content: another key
    other = encode_file(path, cache)
    assert other.path != first.path
    assert np.array_equal(np.asarray(other.ids), _reference(make_text(seed=1))[1])


def test_bad_bytes_are_refused_with_their_offset_or_replaced_as_read_text_does(tmp_path):
    path = tmp_path / "t.txt"
    data = ("x" * 5000).encode() + b"\xff\xfe" + "tail caf\u00e9\n".encode() * 10
    path.write_bytes(data)
    with pytest.raises(CharlstmError) as refused:
        read_text(path)
    for chunk in (7, 4096, 1 << 20):
        with pytest.raises(CharlstmError) as streamed:
            encode_file(path, tmp_path / f"c{chunk}", chunk_bytes=chunk)
        assert str(streamed.value) == str(refused.value)  # "... (byte offset 5000) ..."
        found = encode_file(path, tmp_path / f"r{chunk}", errors="replace", chunk_bytes=chunk)
        text = read_text(path, errors="replace")
        assert np.array_equal(np.asarray(found.ids), _reference(text)[1])


@pytest.mark.parametrize(
    "content", [b"", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"], ids=["empty", "binary"]
)
def test_empty_and_binary_files_get_read_texts_message(tmp_path, content):
    path = tmp_path / "t.txt"
    path.write_bytes(content)
    with pytest.raises(CharlstmError) as refused:
        read_text(path)
    with pytest.raises(CharlstmError) as streamed:
        encode_file(path, tmp_path / "cache")
    assert str(streamed.value) == str(refused.value)


def test_windows_of_a_memory_map_are_views_with_int32_windows(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(make_text(), encoding="utf-8")
    ids = encode_file(path, tmp_path / "cache").ids
    windows = tbptt_windows(ids, 4, 16)
    assert np.shares_memory(windows.inputs, ids) and np.shares_memory(windows.targets, ids)
    as_int32 = tbptt_windows(np.asarray(ids, np.int32), 4, 16)
    for k in (0, 1, len(windows) - 1):
        x, y = windows[k]
        assert x.dtype == y.dtype == np.int32
        assert np.array_equal(x, as_int32[k][0]) and np.array_equal(y, as_int32[k][1])
        assert np.array_equal(x[:, 1:], y[:, :-1])  # the targets are the inputs one on


@pytest.mark.slow
def test_a_run_trained_from_the_id_file_is_the_run_trained_from_the_text(tmp_path, monkeypatch):
    """The same tiny run twice: the corpus read whole, then (with the streaming threshold
    lowered below its size) encoded into the cache's id file. Same losses, step for step."""
    from charlstm.events import EncodeEvent  # noqa: PLC0415
    from charlstm.trainer import train  # noqa: PLC0415

    text_path = tmp_path / "tiny.txt"
    text_path.write_text(make_text(), encoding="utf-8")
    config = tiny_config(str(text_path), epochs=1)
    monkeypatch.setenv("CHARLSTM_DATA", str(tmp_path / "data"))
    train(tmp_path / "whole", config)
    monkeypatch.setattr(corpus, "STREAM_BYTES", 1000)
    events = []
    train(tmp_path / "streamed", config, callback=events.append)
    assert any(isinstance(e, EncodeEvent) and e.phase == "encode" for e in events)
    assert len(list((tmp_path / "data" / "ids").glob("*.uint8"))) == 1

    def losses(run):
        return [json.loads(line)["train_loss"] for line in (run / "log.jsonl").open()]

    assert losses(tmp_path / "streamed") == losses(tmp_path / "whole")


# a wrapper whose only child is the command: its RUSAGE_CHILDREN peak is the command's peak
# resident memory over the whole run (anonymous memory and mapped file pages alike)
_PEAK = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
    "sys.stderr.buffer.write(done.stderr)\n"
    "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def _train_peak_mb(corpus_path, out, data) -> tuple[str, float]:
    """`charlstm train` a small model for a few seconds, to its end (the final validation
    pass over the whole validation part included): its stderr and peak RSS in MB."""
    command = [sys.executable, "-m", "charlstm", "train", str(corpus_path), "--out", str(out),
               "--minutes", "0.1", "--num-layers", "1", "--units", "32", "--batch-size", "16",
               "--eval-every", "100000"]  # fmt: skip
    env = {**os.environ, "CHARLSTM_DATA": str(data), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "-c", _PEAK, *command], env=env, capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    code, peak_kb = done.stdout.split()
    assert code == "0", done.stderr[-3000:]
    return done.stderr, int(peak_kb) / 1024


@pytest.mark.slow
def test_a_corpus_over_the_streaming_threshold_trains_in_bounded_memory(tmp_path):
    """A 72 MB corpus (over STREAM_BYTES, 64 MiB, so encoded streaming in 16 MiB pieces) and a
    1 MB one, each trained to the end by the installed command. The big run's peak RSS, over
    the whole run with its final pass over the 3.6 MB validation part, exceeds the small one's
    by less than 250 MB: the streaming encoder's 16 MiB pieces (their code points, ids and
    NFC text, about 150 MB at once) and the pages of the id file read (measured: 52 MB over
    with the XLA loops, 137 MB with the compiled kernel, whose smaller run takes less).
    Reading the text whole would take some 500 MB more: the text, its NFC copy and int32 ids.
    Peak RSS counts anonymous memory and the id file's mapped pages.

    Then the encoding alone, in 1 MiB pieces: it grows the process' peak by less than 50 MB
    (renumbering the ids through a writable map of the 72 MB file would add all of it)."""
    lines = (corpus.corpus_path("tinyshakespeare").read_text(encoding="utf-8")
             .splitlines(keepends=True))  # fmt: skip
    rng = np.random.default_rng(0)
    big, small = tmp_path / "big.txt", tmp_path / "small.txt"
    with big.open("w", encoding="utf-8") as f:
        while f.tell() < 72_000_000:
            f.write("".join(lines[i] for i in rng.permutation(len(lines))))
    small.write_text("".join(lines), encoding="utf-8")
    assert big.stat().st_size > corpus.STREAM_BYTES > small.stat().st_size

    said, big_mb = _train_peak_mb(big, tmp_path / "big-run", tmp_path / "data")
    assert "ids mapped from" in said  # streamed into the cache's id file
    _, small_mb = _train_peak_mb(small, tmp_path / "small-run", tmp_path / "data")
    last = json.loads((tmp_path / "big-run" / "log.jsonl").read_text().splitlines()[-1])
    assert last["val_chars_all"] > 3_500_000  # the final pass scored the whole part
    assert big_mb - small_mb < 250, (big_mb, small_mb)

    growth = [sys.executable, "-c", _ENCODE_GROWTH, str(big), str(tmp_path / "ids")]
    encoding = subprocess.run(growth, capture_output=True, text=True, timeout=600)
    assert encoding.returncode == 0, encoding.stderr[-3000:]
    assert float(encoding.stdout) < 50, encoding.stdout


# encode_file's growth of the peak resident memory, in MB
_ENCODE_GROWTH = (
    "import resource, sys\n"
    "from charlstm.idfile import encode_file\n"
    "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "encode_file(sys.argv[1], sys.argv[2], chunk_bytes=1 << 20)\n"
    "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)\n"
)
