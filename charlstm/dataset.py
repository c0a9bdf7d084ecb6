"""A run's corpus as training data: text -> ids (streamed for a large file) -> parts -> windows.

    corpus (+ val_file) --CharTokenizer--> ids (N,) --split_ids--> train | val | test
    train -> B streams in whole (B, T) windows; val -> evaluation windows (`data.eval_windows`)

`encode_corpus` reads the corpus named in a RunConfig; `lay_out` cuts its ids as the config
says. Both raise CharlstmError for bad or too little text, before a run folder is touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from charlstm.config import RunConfig
from charlstm.corpus import resolve
from charlstm.data import Splits, Windows, eval_windows, split_ids, tbptt_windows
from charlstm.download import cache_dir
from charlstm.errors import CharlstmError
from charlstm.idfile import encode_file
from charlstm.tokenizer import CharTokenizer


@dataclass(frozen=True)
class Encoded:
    """A run's corpus as ids.

    Attributes:
        description: the corpus for the log (name, files, characters; where ids are mapped).
        ids: (N,) the corpus' ids; a memory map for a large file.
        starts: where each document starts in ids (0 first).
        tokenizer: the run's tokenizer.
        val_ids: (N_val,) config.val_file's ids; None without one.
    """

    description: str
    ids: np.ndarray
    starts: tuple[int, ...]
    tokenizer: CharTokenizer
    val_ids: np.ndarray | None


@dataclass(frozen=True)
class LaidOut:
    """The parts of a corpus, the training windows (B, T) and the validation windows."""

    splits: Splits
    train: Windows
    val: Windows


def encode_corpus(
    config: RunConfig,
    tokenizer: CharTokenizer | None = None,
    report: Callable[[str, int, int], None] | None = None,
    extend: CharTokenizer | None = None,
) -> Encoded:
    """The run's corpus (and val_file) as ids, with `tokenizer`, or one built from the corpus:
    with `extend` (a fine-tuned run's base vocabulary), that one with the corpus' new
    characters appended (`CharTokenizer.extended`).

    A downloaded corpus is checked against its record first (`corpus.Source.check`). A
    single file of `corpus.STREAM_BYTES` or more is encoded by `idfile.encode_file`,
    streaming, into the cache folder's ids/ (and mapped from there the next time); any other
    corpus is read whole. `report(phase, done, total)`: encode_file's progress.

    Raises:
        CharlstmError: the corpus cannot be read, or has only one distinct character.
    """
    source = resolve(config.corpus)
    path = source.stream_file
    starts: tuple[int, ...]
    if path is not None:
        source.check()
        found = encode_file(path, cache_dir() / "ids", config.encoding, config.errors,
                            tokenizer, report)  # fmt: skip
        if tokenizer is None and extend is not None:  # the file's characters, then its ids
            found = encode_file(path, cache_dir() / "ids", config.encoding, config.errors,
                                extend.extended(found.tokenizer.chars), report)  # fmt: skip
        ids, starts, tokenizer = found.ids, (0,), found.tokenizer
        description = f"{config.corpus} ({len(ids):,} characters, ids mapped from {found.path})"
    else:
        corpus = source.load(config.encoding, config.errors)
        if tokenizer is None:
            tokenizer = CharTokenizer.build(corpus.text)
            if extend is not None:
                tokenizer = extend.extended(tokenizer.chars)
        ids, starts, description = tokenizer.encode(corpus.text), corpus.starts, corpus.description
    if tokenizer.vocab_size < 3:
        raise CharlstmError(
            f"{config.corpus or 'the corpus'}: the text has only one distinct character; "
            "there is nothing to learn"
        )
    val_ids = None
    if config.val_file:
        val_ids = tokenizer.encode(
            resolve(config.val_file).load(config.encoding, config.errors).text
        )
    return Encoded(description, ids, starts, tokenizer, val_ids)


def lay_out(
    ids: np.ndarray, starts, config: RunConfig, val_ids: np.ndarray | None = None
) -> LaidOut:
    """Split a corpus' ids and lay them out. With `val_ids` (config.val_file's), that is the
    validation part, and the corpus is cut into train and test parts only. ids may be a
    memory map: the parts and windows are views.

    Raises:
        CharlstmError: the training part holds less than one B x T window, or the validation
            part is empty.
    """
    settings = config.train
    starts = tuple(starts) if settings.split == "files" else (0,)
    if val_ids is None:
        splits = split_ids(ids, settings.val_fraction, settings.test_fraction, starts)
    elif settings.test_fraction == 0:
        splits = Splits(train=ids, val=val_ids, test=ids[:0])
    else:  # train | test, cut as train | val would be
        parts = split_ids(ids, settings.test_fraction, 0.0, starts)
        splits = Splits(train=parts.train, val=val_ids, test=parts.val)
    train = tbptt_windows(splits.train, settings.batch_size, settings.seq_len, whole=True)
    if len(splits.val) < 2:
        raise CharlstmError(
            f"text too short: the validation part has {len(splits.val)} characters; give more text"
        )
    return LaidOut(splits, train, eval_windows(splits.val, settings.batch_size, settings.seq_len))
