"""Ids -> train/val/test splits -> TBPTT windows.

For truncated BPTT the ids are laid out as B parallel streams (torch-rnn's DataLoader): stream b
is the b-th of B equal contiguous pieces of the text. Window k holds columns [kT, (k+1)T) of every
stream, so the final state of window k is the right initial state of window k+1 for each row.
Targets are the inputs shifted by one character.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from charlstm.errors import CharlstmError


@dataclass(frozen=True)
class Splits:
    """Contiguous parts of one id array: (N_train,), (N_val,), (N_test,) int32."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split_ids(
    ids: np.ndarray,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    starts: tuple[int, ...] = (0,),
) -> Splits:
    """Cut ids into train | val | test, in that order, as char-rnn does (default 90/5/5).

    With several documents (`starts` holds more than 0), each cut moves to the document start
    nearest its fraction, so no document is split across parts.

    Args:
        ids: (N,) int32.
        starts: offsets in ids where documents begin.
    """
    n = len(ids)
    cuts = [round(n * (1 - val_fraction - test_fraction)), round(n * (1 - test_fraction))]
    if len(starts) > 1:
        inner = np.asarray(starts[1:], dtype=np.int64)
        # with a test part, the val cut leaves at least one later start for the test cut
        firsts = inner[:-1] if test_fraction > 0 else inner
        if not len(firsts):
            raise CharlstmError(
                f"{len(starts)} documents are too few to split into train/val/test parts"
            )
        first = firsts[np.argmin(np.abs(firsts - cuts[0]))]
        later = inner[inner > first] if test_fraction > 0 else np.append(inner[inner > first], n)
        cuts = [int(first), int(later[np.argmin(np.abs(later - cuts[1]))])]
    return Splits(train=ids[: cuts[0]], val=ids[cuts[0] : cuts[1]], test=ids[cuts[1] :])


@dataclass(frozen=True)
class Windows:
    """B parallel streams cut into windows of T steps.

    Attributes:
        inputs: (B, L), row b = ids[b*L : (b+1)*L]: a view of the ids, of their dtype.
        targets: (B, L), inputs shifted one character on: a view too.
        seq_len: T. Window k is columns [kT, min((k+1)T, L)).
    """

    inputs: np.ndarray
    targets: np.ndarray
    seq_len: int

    def __len__(self) -> int:
        return -(-self.inputs.shape[1] // self.seq_len)

    def __getitem__(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Window k: (x, y), each (B, T) int32 (copied out of ids of any integer type)."""
        if not 0 <= k < len(self):
            raise IndexError(k)
        cols = slice(k * self.seq_len, (k + 1) * self.seq_len)
        return self.inputs[:, cols].astype(np.int32), self.targets[:, cols].astype(np.int32)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return (self[k] for k in range(len(self)))

    @property
    def num_chars(self) -> int:
        """Number of predicted characters, B * L."""
        return self.targets.size

    def head(self, chars: int) -> Windows:
        """The first windows, as few as hold at least `chars` targets (all of them if 0 or
        more than there are): each stream's beginning, so the streams still start cold."""
        if chars <= 0 or chars >= self.num_chars:
            return self
        width = self.inputs.shape[0] * self.seq_len
        cols = -(-chars // width) * self.seq_len
        return Windows(self.inputs[:, :cols], self.targets[:, :cols], self.seq_len)


def tbptt_windows(ids: np.ndarray, batch_size: int, seq_len: int, whole: bool = True) -> Windows:
    """Lay ids out as `batch_size` streams in windows of `seq_len`, as views of ids.

    Args:
        ids: (N,) ids of any integer dtype, e.g. a memory-mapped id file's.
        whole: True (training) keeps only whole windows, all of shape (B, T), dropping fewer
            than B*T + B characters; False (evaluation) keeps every column, so the last window
            may be shorter and at most B - 1 characters are dropped.

    Raises:
        CharlstmError: ids hold less than one window, B*T + 1 characters (whole=True), or fewer
            than B + 1 characters (whole=False).
    """
    B, T = batch_size, seq_len
    L = (len(ids) - 1) // B
    if whole:
        L = L // T * T
    if L < (T if whole else 1):
        need = B * T + 1 if whole else B + 1
        raise CharlstmError(
            f"text too short: {len(ids)} characters, one batch window needs {need} "
            f"(batch_size {B} x seq_len {T} + 1); give more text or lower them"
        )
    inputs = ids[: B * L].reshape(B, L)
    # row b of targets starts one later than row b of inputs: ids[b*L + 1 : (b+1)*L + 1], a
    # view with the inputs' strides one element on (no copy of a memory-mapped corpus)
    shifted = ids[1 : B * L + 1]
    targets = np.lib.stride_tricks.as_strided(
        shifted, shape=(B, L), strides=(L * ids.strides[0], ids.strides[0]), writeable=False
    )
    return Windows(inputs=inputs, targets=targets, seq_len=T)


def eval_windows(ids: np.ndarray, batch_size: int, seq_len: int) -> Windows:
    """Evaluation layout of ids: up to `batch_size` streams, fewer when the text is short.

    Each stream is at least one window long when the text allows, so a short text is scored
    with long context rather than cut into many streams that each start cold.
    """
    streams = max(1, min(batch_size, (len(ids) - 1) // seq_len))
    return tbptt_windows(ids, streams, seq_len, whole=False)
