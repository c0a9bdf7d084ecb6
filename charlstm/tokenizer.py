"""Text <-> ids with a character-level Hugging Face `tokenizers.Tokenizer`.

Every token is one character (one Unicode code point after NFC): newline, tab, carriage return,
space and combining marks included. The model is a merge-free BPE whose vocabulary is the
corpus' characters, so no pre-tokenizer is needed and encoding runs in Rust over large chunks;
the `Fuse` decoder joins tokens with nothing between them. Id 0 is the unknown token, U+FFFD
(the replacement character): a character never seen in training maps to it, with a warning.

`encode` applies NFC with Python's `unicodedata` (the tables `build` used, and nearly free on
text that is already NFC) and then runs a copy of the tokenizer without its NFC normalizer:
the Rust normalizer costs about a fifth of the encode time, and once the text is NFC, chunks
may be cut anywhere, since each code point is one token.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers

from charlstm.errors import CharlstmError

log = logging.getLogger(__name__)

UNK = "\ufffd"
UNK_ID = 0
# Chunks long enough that per-chunk overhead vanishes, short enough to spread over threads.
_CHUNK_CHARS = 1 << 16
# One encode_batch_fast call at a time takes this many characters: its Encodings hold about
# 100 bytes per character until their ids are copied out, so this bounds memory (~100 MB).
_GROUP_CHARS = 1 << 20
# Python str may hold lone surrogates, which Rust strings cannot; they are unknown characters.
_SURROGATES = re.compile("[\ud800-\udfff]")


class CharTokenizer:
    """One token per character, backed by a `tokenizers.Tokenizer`.

    Args:
        tokenizer: a Tokenizer built by `CharTokenizer.build` or loaded from tokenizer.json.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        vocab = tokenizer.get_vocab()
        # encode() runs a rebuilt copy without the normalizer, so anything else in the
        # tokenizer (merges, a pre-tokenizer, other normalizers, added tokens) is refused;
        # it also relies on ids being 0..V-1
        if (
            vocab.get(UNK) != UNK_ID
            or any(len(token) != 1 for token in vocab)
            or sorted(vocab.values()) != list(range(len(vocab)))
            or json.loads(tokenizer.to_str()) != json.loads(_char_tokenizer(vocab).to_str())
        ):
            raise CharlstmError(
                "tokenizer is not a charlstm character tokenizer (needs a merge-free BPE of "
                f"single-character tokens numbered from {UNK!r} at id {UNK_ID}, an NFC "
                "normalizer and nothing else)"
            )
        self._encoder = _char_tokenizer(vocab, normalize=False)
        self.vocab_size = len(vocab)

    @classmethod
    def build(cls, text: str) -> CharTokenizer:
        """A vocabulary of the characters of `text` (after NFC), sorted, after the unknown token."""
        return cls.from_chars(set(_nfc(text)))

    @classmethod
    def from_chars(cls, chars) -> CharTokenizer:
        """A vocabulary of `chars` (single characters), sorted by code point, after the unknown
        token; as `build` makes it from a text holding just these characters."""
        ordered = sorted(set(chars) - {UNK})
        vocab = {UNK: UNK_ID, **{c: i + 1 for i, c in enumerate(ordered)}}
        return cls(_char_tokenizer(vocab))

    def extended(self, chars) -> CharTokenizer:
        """This vocabulary with the characters of `chars` it lacks appended, sorted by code
        point: every known character keeps its id, the new ones take ids V, V+1, ...
        (a fine-tuned model keeps its base's rows, `charlstm.finetune`)."""
        vocab = self.tokenizer.get_vocab()
        new = sorted(set(chars) - set(vocab) - {UNK})
        return CharTokenizer(
            _char_tokenizer(vocab | {c: len(vocab) + i for i, c in enumerate(new)})
        )

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        """Reload a tokenizer.json; raises CharlstmError when it is missing or not ours."""
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as err:  # tokenizers raises its own Exception subclass
            raise CharlstmError(f"{path}: not a readable tokenizer.json ({err})") from err
        return cls(tokenizer)

    @classmethod
    def from_json(cls, text: str) -> CharTokenizer:
        """A tokenizer from `to_json`'s text; raises CharlstmError when it is not ours."""
        try:
            tokenizer = Tokenizer.from_str(text)
        except Exception as err:  # tokenizers raises its own Exception subclass
            raise CharlstmError(f"not a readable tokenizer ({err})") from err
        return cls(tokenizer)

    def to_json(self) -> str:
        """The tokenizer.json text; `Tokenizer.from_file` (or `load`) reads it back."""
        return self.tokenizer.to_str(pretty=True)

    @property
    def chars(self) -> list[str]:
        """The vocabulary in id order: chars[i] is the character of id i."""
        vocab = self.tokenizer.get_vocab()
        return sorted(vocab, key=vocab.__getitem__)

    def encode(self, text: str) -> np.ndarray:
        """Text -> ids: (N,) int32, N = number of characters of NFC(text).

        Characters outside the vocabulary become UNK_ID, logged once per call as a warning.
        """
        text = _nfc(text)
        encodable = text
        if not text.isascii() and _SURROGATES.search(text):
            encodable = _SURROGATES.sub(UNK, text)
        ids = np.empty(len(text), np.int32)
        # with at most 256 tokens, bytes(list) is the fastest way from Encoding.ids to an
        # array: np.asarray(list) boxes every id
        small = self.vocab_size <= 256
        filled = 0
        for start in range(0, len(encodable), _GROUP_CHARS):
            group = encodable[start : start + _GROUP_CHARS]
            chunks = [group[i : i + _CHUNK_CHARS] for i in range(0, len(group), _CHUNK_CHARS)]
            for encoding in self._encoder.encode_batch_fast(chunks, add_special_tokens=False):
                chunk_ids = encoding.ids
                end = filled + len(chunk_ids)
                ids[filled:end] = np.frombuffer(bytes(chunk_ids), np.uint8) if small else chunk_ids
                filled = end
        assert filled == len(text), "a merge-free BPE gives one token per code point"
        if (ids == UNK_ID).any():
            self._warn_unknown(text)
        return ids

    def decode(self, ids) -> str:
        """Ids -> text; UNK_ID decodes to U+FFFD."""
        return self.tokenizer.decode([int(i) for i in np.asarray(ids).reshape(-1)])

    def _warn_unknown(self, text: str) -> None:
        """Log the unknown characters of `text`, which is NFC already."""
        vocab = self.tokenizer.get_vocab()
        unseen = Counter(c for c in text if c not in vocab)
        if not unseen:  # only U+FFFD itself, which is the unknown token by design
            return
        shown = ", ".join(f"{c!r} x{n}" for c, n in unseen.most_common(5))
        log.warning(
            "%d character(s) not in the vocabulary map to the unknown token: %s",
            sum(unseen.values()),
            shown + (" ..." if len(unseen) > 5 else ""),
        )


def _char_tokenizer(vocab: dict[str, int], normalize: bool = True) -> Tokenizer:
    """The merge-free BPE over `vocab`; with `normalize`, the NFC normalizer that is saved."""
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    if normalize:
        tokenizer.normalizer = normalizers.NFC()
    tokenizer.decoder = decoders.Fuse()
    return tokenizer


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)
