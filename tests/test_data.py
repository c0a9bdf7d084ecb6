"""split_ids and tbptt_windows: contiguous parts, B parallel streams in windows of T."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charlstm.data import split_ids, tbptt_windows
from charlstm.errors import CharlstmError

B, T = 3, 5  # distinct, so a swapped axis fails


def positions(n: int) -> np.ndarray:
    """ids that are their own positions, so every value says where it came from."""
    return np.arange(n, dtype=np.int32)


def test_split_ids_default_is_90_5_5_contiguous():
    ids = positions(1000)
    splits = split_ids(ids)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (900, 50, 50)
    assert np.array_equal(np.concatenate([splits.train, splits.val, splits.test]), ids)


def test_split_ids_with_document_starts_cuts_on_the_nearest_starts():
    starts = (0, 100, 230, 500, 870, 910, 960)
    splits = split_ids(positions(1000), starts=starts)
    # 900 is nearest to 910, 950 nearest to 960 among the starts after 910
    assert (len(splits.train), len(splits.val), len(splits.test)) == (910, 50, 40)
    assert splits.val[0] == 910 and splits.test[0] == 960


@st.composite
def documents(draw) -> tuple[int, tuple[int, ...]]:
    """A text length n and two or more document starts in it, the first at 0."""
    n = draw(st.integers(2, 3000))
    inner = draw(st.sets(st.integers(1, n - 1), min_size=1, max_size=40))
    return n, (0, *sorted(inner))


@settings(deadline=None)
@given(documents(), st.sampled_from([0.0, 0.05, 0.1]))
def test_split_ids_cuts_fall_on_document_starts(docs, test_fraction):
    n, starts = docs
    ids = positions(n)
    if test_fraction > 0 and len(starts) < 3:
        with pytest.raises(CharlstmError, match="too few"):
            split_ids(ids, val_fraction=0.05, test_fraction=test_fraction, starts=starts)
        return
    splits = split_ids(ids, val_fraction=0.05, test_fraction=test_fraction, starts=starts)
    cut_val, cut_test = len(splits.train), len(splits.train) + len(splits.val)
    assert cut_val in starts and len(splits.val) > 0
    assert cut_test in starts if test_fraction > 0 else cut_test == n
    assert np.array_equal(np.concatenate([splits.train, splits.val, splits.test]), ids)


@pytest.mark.parametrize("starts", [(0, 500), (0, 10)])
def test_split_ids_with_too_few_documents_raises(starts):
    with pytest.raises(CharlstmError, match="2 documents are too few"):
        split_ids(positions(1000), starts=starts)


def test_split_ids_with_three_documents_keeps_one_for_each_part():
    # 90% lies nearest the last start, which would leave no start for the test cut
    splits = split_ids(positions(100), starts=(0, 50, 95))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (50, 45, 5)


def test_split_ids_without_test_part_gives_val_the_rest():
    splits = split_ids(positions(1000), test_fraction=0.0, starts=(0, 300, 940, 990))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (940, 60, 0)


def test_targets_are_inputs_shifted_by_one():
    ids = np.array([7, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2], dtype=np.int32)
    windows = tbptt_windows(ids, batch_size=2, seq_len=3)
    L = windows.inputs.shape[1]
    assert L == 6
    for b in range(2):
        assert np.array_equal(windows.inputs[b], ids[b * L : (b + 1) * L])
        assert np.array_equal(windows.targets[b], ids[b * L + 1 : (b + 1) * L + 1])


@settings(deadline=None)
@given(n=st.integers(1, 2000), batch_size=st.integers(1, 9), seq_len=st.integers(1, 17))
def test_rows_continue_across_windows_without_loss_or_repeat(n, batch_size, seq_len):
    ids = positions(n)
    for whole in (True, False):
        if n < (batch_size * seq_len + 1 if whole else batch_size + 1):
            with pytest.raises(CharlstmError):
                tbptt_windows(ids, batch_size, seq_len, whole=whole)
            continue
        windows = tbptt_windows(ids, batch_size, seq_len, whole=whole)
        batches = list(windows)
        L = windows.inputs.shape[1]
        assert len(batches) == len(windows) == -(-L // seq_len)
        for x, y in batches:
            assert x.dtype == y.dtype == np.int32
            assert np.array_equal(y, x + 1)  # targets: the next character
        for (x, _), (x_next, _) in zip(batches, batches[1:]):
            # row b of window k+1 starts where row b of window k ended
            assert x.shape == (batch_size, seq_len)
            assert np.array_equal(x_next[:, 0], x[:, -1] + 1)
        joined = np.concatenate([x for x, _ in batches], axis=1)
        # every position of ids[:B*L] is an input exactly once, in stream order
        assert np.array_equal(joined.ravel(), positions(batch_size * L))
        dropped = n - (batch_size * L + 1)
        if whole:
            assert all(x.shape == (batch_size, seq_len) for x, _ in batches)
            assert 0 <= dropped < batch_size * seq_len + batch_size
        else:
            assert 0 <= dropped < batch_size


def test_whole_false_keeps_a_short_last_window():
    windows = tbptt_windows(positions(B * 12 + 1), B, T, whole=False)
    assert [x.shape for x, _ in windows] == [(B, T), (B, T), (B, 2)]
    assert windows.num_chars == B * 12


@pytest.mark.parametrize(("n", "whole", "need"), [(B * T, True, B * T + 1), (B, False, B + 1)])
def test_too_short_text_raises_naming_the_window_size(n, whole, need):
    with pytest.raises(CharlstmError) as err:
        tbptt_windows(positions(n), B, T, whole=whole)
    message = str(err.value)
    assert f"{n} characters" in message and f"needs {need}" in message
    assert f"batch_size {B} x seq_len {T}" in message


def test_shortest_text_gives_one_window():
    windows = tbptt_windows(positions(B * T + 1), B, T)
    assert len(windows) == 1
    assert windows.inputs.shape == (B, T)


def test_windows_are_the_documented_layout_of_the_ids():
    """Stream b is the b-th of B equal pieces (L = (N - 1) // B // T * T characters each), the
    targets the same pieces one character on."""
    ids = np.random.default_rng(0).integers(0, 50, size=997).astype(np.int32)
    windows = tbptt_windows(ids, B, T)
    L = (len(ids) - 1) // B // T * T
    assert np.array_equal(windows.inputs, ids[: B * L].reshape(B, L))
    assert np.array_equal(windows.targets, np.stack([ids[b * L + 1 : (b + 1) * L + 1]
                                                     for b in range(B)]))  # fmt: skip


def test_window_index_out_of_range_raises_index_error():
    windows = tbptt_windows(positions(B * T * 2 + 1), B, T)
    assert len(windows) == 2
    with pytest.raises(IndexError):
        windows[2]
    with pytest.raises(IndexError):
        windows[-1]
