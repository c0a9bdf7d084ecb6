"""Matplotlib figures for runs and traces: loss curves, text heat maps, gate saturation.

Each function draws into `ax` (a new figure when None) and returns the Axes, so a notebook can
place several side by side and a script can save them. Matplotlib is imported when a function
is first called, with the Agg backend when there is no display, so importing charlstm stays
cheap and works on headless machines.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence

import numpy as np

from charlstm.explore.probe import gate_saturation
from charlstm.records import LogRecord

NEWLINE = "\u21b5"  # how a newline shows in a heat map, at the end of its line


def _pyplot():
    import matplotlib

    headless = sys.platform.startswith("linux") and not os.environ.get("DISPLAY")
    if headless and "ipykernel" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _axes(ax, figsize):
    if ax is None:
        _, ax = _pyplot().subplots(figsize=figsize)
    return ax


def plot_losses(records: Sequence[LogRecord], ax=None, bits: bool = True, label: str = ""):
    """Training and validation loss against step, from a run's log (`RunDir.read_log()`).

    Args:
        records: the log's records: step, train_loss (nats/char, may be None), val_loss.
        bits: plot bits/char (nats / ln 2) rather than nats/char.
        label: prefix of the two lines' legend labels, to tell runs apart on one Axes.
    """
    ax = _axes(ax, (6, 3.5))
    scale = 1 / math.log(2) if bits else 1.0
    train = [(r.step, r.train_loss * scale) for r in records if r.train_loss]
    val = [(r.step, r.val_loss * scale) for r in records]
    prefix = f"{label} " if label else ""
    if train:
        ax.plot(*zip(*train), "o-", ms=3, label=f"{prefix}train")
    if val:
        ax.plot(*zip(*val), "s--", ms=3, label=f"{prefix}validation")
    ax.set_xlabel("step")
    ax.set_ylabel("bits/char" if bits else "nats/char")
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def text_grid(chars: Sequence[str], width: int = 80) -> tuple[list[list[str]], np.ndarray]:
    """Lay characters out in lines as a terminal would: a newline or `width` ends a line.

    Returns:
        rows: the characters of each line (a newline shown as the arrow NEWLINE);
        index: (R, width) int, the position in `chars` of each cell, -1 where none.
    """
    rows: list[list[str]] = [[]]
    positions: list[list[int]] = [[]]
    for t, ch in enumerate(chars):
        if len(rows[-1]) == width:
            rows.append([])
            positions.append([])
        rows[-1].append(NEWLINE if ch == "\n" else ch)
        positions[-1].append(t)
        if ch == "\n":
            rows.append([])
            positions.append([])
    if not rows[-1] and len(rows) > 1:
        rows.pop()
        positions.pop()
    index = np.full((len(rows), width), -1)
    for r, pos in enumerate(positions):
        index[r, : len(pos)] = pos
    return rows, index


def plot_text_heatmap(
    chars: Sequence[str],
    values: np.ndarray,
    ax=None,
    width: int = 80,
    cmap: str = "RdBu_r",
    vmin: float | None = -1.0,
    vmax: float | None = 1.0,
    title: str = "",
    fontsize: float = 7,
):
    """Each character on a background coloured by one value per character (Karpathy et al.).

    Args:
        chars: T characters, e.g. `Trace.chars`.
        values: (T,), e.g. one cell: `trace.layers[l].c[:, u]`, or tanh(c) to stay in [-1, 1].
        width: characters per line; a newline also ends a line.
        vmin, vmax: the colour scale's ends (None: the values' range).
    """
    values = np.asarray(values, np.float64)
    if values.shape != (len(chars),):
        raise ValueError(f"values must be ({len(chars)},), one per character, got {values.shape}")
    rows, index = text_grid(chars, width)
    grid = np.where(index >= 0, values[np.maximum(index, 0)], np.nan)
    ax = _axes(ax, (width * 0.11, 0.2 * len(rows) + 0.4))
    ax.imshow(
        np.ma.masked_invalid(grid), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
        interpolation="nearest",
    )  # fmt: skip
    for r, row in enumerate(rows):
        for col, ch in enumerate(row):
            if not ch.isspace():
                ax.text(col, r, ch, ha="center", va="center", fontsize=fontsize, family="monospace")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9, loc="left")
    return ax


def plot_gate_saturation(trace, layer: int, axes=None, low: float = 0.1, high: float = 0.9):
    """Histograms over units of how often each gate is shut (< low) or open (> high).

    One panel per gate (i, f, o): for each unit, the fraction of steps its gate is below
    `low` and the fraction above `high`, as `probe.gate_saturation` computes them.

    Args:
        trace: a probe.Trace.
        axes: three Axes, or None for a new figure.

    Returns:
        the three Axes.
    """
    if axes is None:
        _, axes = _pyplot().subplots(1, 3, figsize=(10, 3), sharey=True)
    bins = np.linspace(0, 1, 21)
    names = {"i": "input gate i", "f": "forget gate f", "o": "output gate o"}
    for ax, (name, (shut, open_)) in zip(axes, gate_saturation(trace, layer, low, high).items()):
        ax.hist(shut, bins=bins, alpha=0.6, label=f"< {low}")
        ax.hist(open_, bins=bins, alpha=0.6, label=f"> {high}")
        ax.set_title(f"layer {layer}: {names[name]}", fontsize=9)
        ax.set_xlabel("fraction of steps")
    axes[0].set_ylabel("units")
    axes[0].legend()
    return axes


def plot_gradient_norms(norms: dict[str, np.ndarray], ax=None, title: str = ""):
    """||d loss / d state|| against steps back, log scale, one line per model and state.

    Args:
        norms: label -> (K,) norms, index k being k steps back (a row of
            `probe.state_gradient_norms`).
    """
    ax = _axes(ax, (6, 3.5))
    for label, values in norms.items():
        values = np.asarray(values, np.float64)
        k = np.arange(len(values))
        keep = values > 0  # log scale: an exact zero (underflow) is left out
        ax.semilogy(k[keep], values[keep], label=label)
    ax.set_xlabel("k, steps back")
    ax.set_ylabel("gradient norm")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return ax
