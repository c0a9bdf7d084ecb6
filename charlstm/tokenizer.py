"""Text <-> ids with a character-level Hugging Face `tokenizers.Tokenizer`.

Every token is one character (one Unicode code point after NFC): newline, tab, carriage return,
space and combining marks included. The model is a merge-free BPE whose vocabulary is the
corpus' characters, so no pre-tokenizer is needed and encoding runs in Rust over large chunks;
the `Fuse` decoder joins tokens with nothing between them. Id 0 is the unknown token, U+FFFD
(the replacement character): a character never seen in training maps to it, with a warning.
"""

from __future__ import annotations

import logging
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers

from charlstm.errors import CharlstmError

log = logging.getLogger(__name__)

UNK = "\ufffd"
UNK_ID = 0
# Chunks long enough that per-call overhead vanishes, short enough to spread over threads.
_CHUNK_CHARS = 16384


class CharTokenizer:
    """One token per character, backed by a `tokenizers.Tokenizer`.

    Args:
        tokenizer: a Tokenizer built by `CharTokenizer.build` or loaded from tokenizer.json.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        vocab = tokenizer.get_vocab()
        if vocab.get(UNK) != UNK_ID or any(len(token) != 1 for token in vocab):
            raise CharlstmError(
                "tokenizer is not a charlstm character tokenizer "
                f"(needs single-character tokens and {UNK!r} at id {UNK_ID})"
            )
        self.vocab_size = len(vocab)

    @classmethod
    def build(cls, text: str) -> CharTokenizer:
        """A vocabulary of the characters of `text` (after NFC), sorted, after the unknown token."""
        chars = sorted(set(_nfc(text)) - {UNK})
        vocab = {UNK: UNK_ID, **{c: i + 1 for i, c in enumerate(chars)}}
        tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
        tokenizer.normalizer = normalizers.NFC()
        tokenizer.decoder = decoders.Fuse()
        return cls(tokenizer)

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        """Reload a tokenizer.json; raises CharlstmError when it is missing or not ours."""
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as err:  # tokenizers raises its own Exception subclass
            raise CharlstmError(f"{path}: not a readable tokenizer.json ({err})") from err
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
        chunks = [text[i : i + _CHUNK_CHARS] for i in range(0, len(text), _CHUNK_CHARS)]
        encodings = self.tokenizer.encode_batch_fast(chunks, add_special_tokens=False)
        if not encodings:
            return np.zeros((0,), np.int32)
        ids = np.concatenate([np.asarray(e.ids, dtype=np.int32) for e in encodings])
        if (ids == UNK_ID).any():
            self._warn_unknown(text)
        return ids

    def decode(self, ids) -> str:
        """Ids -> text; UNK_ID decodes to U+FFFD."""
        return self.tokenizer.decode([int(i) for i in np.asarray(ids).reshape(-1)])

    def _warn_unknown(self, text: str) -> None:
        vocab = self.tokenizer.get_vocab()
        unseen = Counter(c for c in _nfc(text) if c not in vocab)
        if not unseen:  # only U+FFFD itself, which is the unknown token by design
            return
        shown = ", ".join(f"{c!r} x{n}" for c, n in unseen.most_common(5))
        log.warning(
            "%d character(s) not in the vocabulary map to the unknown token: %s",
            sum(unseen.values()),
            shown + (" ..." if len(unseen) > 5 else ""),
        )


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)
