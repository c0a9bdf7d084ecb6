"""The PyTorch anchor of the results (docs/results.md): a char-rnn-style nn.LSTM trained for a time
budget on a text's first 90% and scored on its last 10%, the part `scripts/reproduce.py` scores.

The recipe is char-rnn's (karpathy/char-rnn, as a 30-line PyTorch script would write it):
Embedding(V, 64) -> nn.LSTM(64, 256, 2 layers, dropout 0.2 between them) -> Linear(256, V),
64 streams of 100 characters with the state carried between windows (TBPTT), Adam 2e-3, gradient
norm clipped at 5, PyTorch's default initialization. Every minute of the budget trains; the
final scoring is not counted. Prints one JSON line like reproduce.py's. Needs torch
(`pip install torch==2.13.0`); imports nothing from charlstm.

    python scripts/anchor_torch.py --minutes 9
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

CORPUS = Path(__file__).resolve().parents[1] / "corpora" / "tinyshakespeare.txt"


class CharRNN(torch.nn.Module):
    def __init__(self, vocab: int, emb: int, units: int, layers: int, dropout: float):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, emb)
        self.lstm = torch.nn.LSTM(emb, units, layers, dropout=dropout, batch_first=True)
        self.head = torch.nn.Linear(units, vocab)

    def forward(self, x, state=None):  # x (B, T) -> logits (B, T, V), state
        out, state = self.lstm(self.emb(x), state)
        return self.head(out), state


def streams(ids: np.ndarray, batch: int) -> torch.Tensor:
    """ids cut into `batch` contiguous streams, (batch, len(ids) // batch)."""
    n = len(ids) // batch
    return torch.from_numpy(ids[: n * batch].reshape(batch, n).astype(np.int64))


def score(model: CharRNN, ids: np.ndarray, batch: int, seq_len: int) -> float:
    """Mean -ln p over `ids` read as `batch` streams with carried state, nats/char."""
    model.eval()
    data, total, count, state = streams(ids, batch), 0.0, 0, None
    with torch.no_grad():
        for start in range(0, data.shape[1] - 1, seq_len):
            x = data[:, start : start + seq_len]
            y = data[:, start + 1 : start + seq_len + 1]
            logits, state = model(x[:, : y.shape[1]], state)
            loss = torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), y.flatten(), reduction="sum"
            )
            total, count = total + loss.item(), count + y.numel()
    return total / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=9.0)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(os.cpu_count() or 1)

    text = args.corpus.read_text(encoding="utf-8")
    chars = sorted(set(text))
    ids = np.array([chars.index(ch) for ch in text], dtype=np.uint8)
    cut = len(ids) - len(ids) // 10
    batch, seq_len = 64, 100
    data = streams(ids[:cut], batch)
    model = CharRNN(len(chars), 64, 256, 2, 0.2)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)

    start, steps, state, position = time.monotonic(), 0, None, 0
    while time.monotonic() - start < args.minutes * 60:
        if position + seq_len + 1 > data.shape[1]:
            position, state = 0, None  # a new epoch starts from zero state
        x = data[:, position : position + seq_len]
        y = data[:, position + 1 : position + seq_len + 1]
        model.train()
        logits, state = model(x, state)
        state = tuple(s.detach() for s in state)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        position, steps = position + seq_len, steps + 1
    wall = time.monotonic() - start
    nats = score(model, ids[cut:], batch, seq_len)
    print(json.dumps({
        "anchor": "torch nn.LSTM 2x256, dropout 0.2, Adam 2e-3",
        "minutes": args.minutes, "steps": steps, "wall_s": round(wall, 1),
        "last_train_loss": round(loss.item(), 4),
        "last10_nats_per_char": round(nats, 4),
        "last10_bits_per_char": round(nats / math.log(2), 4),
        "torch": torch.__version__,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
