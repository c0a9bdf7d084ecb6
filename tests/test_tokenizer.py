"""CharTokenizer: one token per NFC code point, a real tokenizers.Tokenizer, tokenizer.json."""

from __future__ import annotations

import json
import logging
import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, pre_tokenizers

from charlstm.errors import CharlstmError
from charlstm.tokenizer import UNK, UNK_ID, CharTokenizer

# Whitespace of every kind, combining marks on their own and stacked, precomposed letters,
# non-Latin scripts and a character outside the BMP.
VOCAB_TEXT = (
    "The quick brown fox\njumps\tover\r\nthe lazy dog. "
    "e\u0301 \u00e9 a\u0308\u0323 \u0301 \u0308\u0323 \u00f1 \u03a9 \u65e5\u672c \U0001f600 {}[]()"
)
VOCAB = CharTokenizer.build(VOCAB_TEXT)
VOCAB_CHARS = VOCAB.chars[1:]


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def write_json(path, tokenizer: CharTokenizer):
    path.write_text(tokenizer.to_json(), encoding="utf-8")
    return path


def test_build_gives_a_real_tokenizers_tokenizer_of_single_characters():
    assert isinstance(VOCAB.tokenizer, Tokenizer)
    vocab = VOCAB.tokenizer.get_vocab()
    assert all(len(token) == 1 for token in vocab)
    assert sorted(vocab.values()) == list(range(VOCAB.vocab_size))


def test_vocabulary_is_sorted_with_unk_at_id_0():
    assert VOCAB.chars[UNK_ID] == UNK
    assert VOCAB.chars == [UNK, *sorted(set(nfc(VOCAB_TEXT)))]
    assert VOCAB.vocab_size == len(VOCAB.chars)


@pytest.mark.parametrize("char", ["\n", "\t", "\r", " ", "\u0301", "\u0308", "\U0001f600"])
def test_whitespace_and_combining_marks_are_tokens_of_their_own(char):
    text = f".{char}."  # between full stops, which nothing composes with
    ids = VOCAB.encode(text)
    assert ids.tolist() == [VOCAB.chars.index(c) for c in text]
    assert VOCAB.tokenizer.encode(char).tokens == [char]


def test_stacked_combining_marks_give_one_id_per_nfc_code_point():
    text = "a\u0308\u0323"  # NFC reorders and composes: U+1EA1 (a with dot below), U+0308
    tokenizer = CharTokenizer.build(text)
    ids = tokenizer.encode(text)
    assert len(ids) == len(nfc(text)) == 2
    assert [tokenizer.chars[i] for i in ids] == ["\u1ea1", "\u0308"]
    assert tokenizer.decode(ids) == nfc(text)


def test_lone_combining_mark_is_one_token():
    ids = VOCAB.encode("\u0301")
    assert ids.tolist() == [VOCAB.chars.index("\u0301")]
    assert VOCAB.decode(ids) == "\u0301"


def test_encode_returns_int32_of_nfc_length():
    text = "e\u0301t\u00e9\n"
    ids = VOCAB.encode(text)
    assert ids.dtype == np.int32 and ids.shape == (len(nfc(text)),) == (4,)


def test_empty_text_encodes_to_no_ids_and_back():
    ids = VOCAB.encode("")
    assert ids.dtype == np.int32 and ids.shape == (0,)
    assert VOCAB.decode(ids) == ""


@settings(deadline=None)
@given(st.text(alphabet=st.sampled_from(VOCAB_CHARS)))
def test_decode_encode_is_nfc_over_the_vocabulary(text):
    # characters of the vocabulary may compose into one outside it, e.g. "a" + U+0301
    expected = "".join(c if c in VOCAB_CHARS else UNK for c in nfc(text))
    ids = VOCAB.encode(text)
    assert len(ids) == len(nfc(text))
    assert VOCAB.decode(ids) == expected


@settings(deadline=None)
@given(st.text())
def test_decode_encode_is_nfc_for_a_vocabulary_built_on_the_text(text):
    tokenizer = CharTokenizer.build(text)
    ids = tokenizer.encode(text)
    assert UNK_ID not in ids.tolist() or UNK in nfc(text)
    assert tokenizer.decode(ids) == nfc(text)


def test_combining_marks_straddling_chunk_and_batch_edges_compose():
    # long enough to span several encode batches; period 3 puts marks on every chunk edge
    text = "xa\u0308" * 600_000
    tokenizer = CharTokenizer.build(text)
    ids = tokenizer.encode(text)
    assert len(ids) == len(nfc(text)) == 1_200_000
    assert tokenizer.decode(ids) == nfc(text)


def test_vocabulary_over_256_characters_encodes_long_text():
    chars = "".join(chr(c) for c in range(0x100, 0x100 + 300))
    text = chars * 500
    tokenizer = CharTokenizer.build(text)
    assert tokenizer.vocab_size == 301
    ids = tokenizer.encode(text)
    assert ids.max() == 300
    assert np.array_equal(ids, np.tile(np.arange(1, 301, dtype=np.int32), 500))


def test_unknown_characters_map_to_unk_with_a_warning(caplog):
    tokenizer = CharTokenizer.build("abc")
    with caplog.at_level(logging.WARNING, logger="charlstm.tokenizer"):
        ids = tokenizer.encode("abzqz")
    assert ids.tolist() == [1, 2, UNK_ID, UNK_ID, UNK_ID]
    assert tokenizer.decode(ids) == "ab" + UNK * 3
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "3 character(s)" in record.getMessage()
    assert "'z' x2" in record.getMessage() and "'q' x1" in record.getMessage()


def test_lone_surrogate_is_unknown_and_does_not_crash(caplog):
    tokenizer = CharTokenizer.build("ab")
    with caplog.at_level(logging.WARNING, logger="charlstm.tokenizer"):
        ids = tokenizer.encode("a\ud800b")
    assert ids.tolist() == [1, UNK_ID, 2]
    assert len(caplog.records) == 1


def test_replacement_character_is_the_unknown_token_without_a_warning(caplog):
    tokenizer = CharTokenizer.build("ab")
    with caplog.at_level(logging.WARNING, logger="charlstm.tokenizer"):
        ids = tokenizer.encode(f"a{UNK}b")
    assert ids.tolist() == [1, UNK_ID, 2]
    assert caplog.records == []


def test_known_text_logs_no_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="charlstm.tokenizer"):
        VOCAB.encode(VOCAB_TEXT)
    assert caplog.records == []


def test_saved_tokenizer_json_reloads_with_identical_ids(tmp_path):
    path = write_json(tmp_path / "tokenizer.json", VOCAB)
    text = VOCAB_TEXT + "e\u0301 a\u0308\u0323 unknown: \u00df"  # unnormalized and unknown
    expected = VOCAB.encode(text)
    assert np.array_equal(CharTokenizer.load(path).encode(text), expected)
    assert Tokenizer.from_file(str(path)).encode(text).ids == expected.tolist()
    assert CharTokenizer.load(path).chars == VOCAB.chars


@settings(deadline=None)
@given(st.text(alphabet=st.sampled_from(VOCAB_CHARS)))
def test_hugging_face_reload_gives_the_same_ids_for_any_text(text):
    reloaded = Tokenizer.from_str(VOCAB.to_json())
    assert reloaded.encode(text).ids == VOCAB.encode(text).tolist()
    assert reloaded.decode(VOCAB.encode(text).tolist()) == VOCAB.decode(VOCAB.encode(text))


def test_loading_a_bpe_with_multi_character_tokens_raises(tmp_path):
    bpe = Tokenizer(models.BPE(vocab={UNK: 0, "a": 1, "b": 2, "ab": 3}, merges=[("a", "b")]))
    path = tmp_path / "tokenizer.json"
    bpe.save(str(path))
    with pytest.raises(CharlstmError, match="not a charlstm character tokenizer"):
        CharTokenizer.load(path)


def test_loading_single_character_tokenizers_that_are_not_ours_raises(tmp_path):
    vocab = VOCAB.tokenizer.get_vocab()
    word_level = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    with_pre_tokenizer = Tokenizer.from_str(VOCAB.to_json())
    with_pre_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel()
    for i, tokenizer in enumerate([word_level, with_pre_tokenizer]):
        path = tmp_path / f"tokenizer{i}.json"
        tokenizer.save(str(path))
        with pytest.raises(CharlstmError, match="not a charlstm character tokenizer"):
            CharTokenizer.load(path)


@pytest.mark.parametrize("vocab", [{"a": 0, UNK: 1}, {UNK: 0, "a": 1, "b": 300}])
def test_ids_other_than_unk_at_0_then_1_to_v_minus_1_are_refused(vocab):
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    with pytest.raises(CharlstmError, match="numbered from .* at id 0"):
        CharTokenizer(tokenizer)


@pytest.mark.parametrize(
    "content", ["{not json", json.dumps({"vocab": ["a", "b"]}), "", "\x00\x01binary"]
)
def test_loading_garbage_raises_naming_the_file(tmp_path, content):
    path = tmp_path / "tokenizer.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CharlstmError, match="tokenizer.json"):
        CharTokenizer.load(path)


def test_loading_a_missing_file_raises_naming_it(tmp_path):
    with pytest.raises(CharlstmError, match="nope.json"):
        CharTokenizer.load(tmp_path / "nope.json")
