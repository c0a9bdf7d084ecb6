"""The transformer anchor of the results (docs/results.md): a nanoGPT-style character model trained
for a time budget on a text's first 90% and scored on its last 10%, the part
`scripts/reproduce.py` scores.

The model and recipe are nanoGPT's (karpathy/nanoGPT, `model.py` and
`config/train_shakespeare_char.py`), scaled down to a CPU as its README suggests: pre-norm
blocks x + attn(ln(x)), x + mlp(ln(x)) with causal self-attention and a 4x GELU MLP, learned
positions, no biases, the output layer tied to the embedding, weights N(0, 0.02) (residual
projections 0.02 / sqrt(2 L)); AdamW, betas (0.9, 0.99), decay 0.1 on matrices only, gradient
norm clipped at 1, 100 warm-up steps to `--learning-rate` (1e-3) then cosine to a tenth of it,
`--dropout` 0.2, random windows of `--block` characters. Where nanoGPT ends its cosine at a step
count, here it ends when the minutes run out, as charlstm's `--minutes` plans it. Every minute
of the budget trains; the final scoring is not counted. Scoring: windows of `--block`
characters moved by half a block, each scoring its second half (the first window all of it), so
every character but the first half block's is predicted from at least block / 2 characters
before it. Prints one JSON line like reproduce.py's. Needs torch (`pip install torch==2.13.0`);
imports nothing from charlstm.

    python scripts/anchor_gpt.py --minutes 9
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
from torch import nn
from torch.nn import functional as F

CORPUS = Path(__file__).resolve().parents[1] / "corpora" / "tinyshakespeare.txt"


class Block(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.ln_1, self.ln_2 = nn.LayerNorm(width, bias=False), nn.LayerNorm(width, bias=False)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.attn_proj = nn.Linear(width, width, bias=False)
        self.fc = nn.Linear(width, 4 * width, bias=False)
        self.mlp_proj = nn.Linear(4 * width, width, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):  # x (B, T, C) -> (B, T, C)
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        x = x + self.drop(self.attn_proj(y.transpose(1, 2).reshape(b, t, c)))
        return x + self.drop(self.mlp_proj(F.gelu(self.fc(self.ln_2(x)))))


class GPT(nn.Module):
    def __init__(self, vocab: int, block: int, layers: int, heads: int, width: int, dropout: float):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, width), nn.Embedding(block, width)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, heads, dropout) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width, bias=False)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.wte.weight  # tied, as nanoGPT does
        for name, p in self.named_parameters():
            std = 0.02 / math.sqrt(2 * layers) if name.endswith("proj.weight") else 0.02
            if p.dim() == 2:
                nn.init.normal_(p, 0.0, std)

    def forward(self, x):  # x (B, T) -> logits (B, T, V)
        h = self.drop(self.wte(x) + self.wpe(torch.arange(x.shape[1])))
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln_f(h))


def score(model: GPT, ids: np.ndarray, block: int) -> float:
    """Mean -ln p over ids[1:], each from at least block / 2 characters before it (but the
    first window's), nats/char."""
    model.eval()
    data, half, total, count = torch.from_numpy(ids.astype(np.int64)), block // 2, 0.0, 0
    starts = range(0, len(ids) - block, half)
    with torch.no_grad():
        for i in range(0, len(starts), 64):
            rows = torch.stack([data[s : s + block + 1] for s in starts[i : i + 64]])
            nll = F.cross_entropy(
                model(rows[:, :-1]).transpose(1, 2), rows[:, 1:], reduction="none"
            )
            first = 0 if i == 0 else half
            total += nll[:1, first:].sum().item() + nll[1:, half:].sum().item()
            count += nll[:1, first:].numel() + nll[1:, half:].numel()
    return total / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=9.0)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="peak; floor: a tenth")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    rng = np.random.default_rng(args.seed)

    text = args.corpus.read_text(encoding="utf-8")
    chars = sorted(set(text))
    lookup = {ch: i for i, ch in enumerate(chars)}
    ids = np.array([lookup[ch] for ch in text], dtype=np.uint8)
    cut = len(ids) - len(ids) // 10
    train = torch.from_numpy(ids[:cut].astype(np.int64))
    model = GPT(len(chars), args.block, args.layers, args.heads, args.width, args.dropout)
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
         {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
        lr=args.learning_rate, betas=(0.9, 0.99),
    )  # fmt: skip
    peak, warmup, budget = args.learning_rate, 100, args.minutes * 60
    floor = peak / 10

    start, steps = time.monotonic(), 0
    while (elapsed := time.monotonic() - start) < budget:
        lr = peak * (steps + 1) / warmup if steps < warmup else (
            floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * elapsed / budget))
        )  # fmt: skip
        for group in optimizer.param_groups:
            group["lr"] = lr
        at = rng.integers(0, len(train) - args.block - 1, args.batch)
        rows = torch.stack([train[s : s + args.block + 1] for s in at])
        model.train()
        loss = F.cross_entropy(model(rows[:, :-1]).transpose(1, 2), rows[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        steps += 1
    wall = time.monotonic() - start
    nats = score(model, ids[cut:], args.block)
    print(json.dumps({
        "anchor": f"nanoGPT-style {args.layers}x{args.width}, {args.heads} heads, block "
                  f"{args.block}, batch {args.batch}, dropout {args.dropout}, peak lr "
                  f"{args.learning_rate}",
        "parameters": sum(p.numel() for p in params),
        "minutes": args.minutes, "steps": steps, "wall_s": round(wall, 1),
        "last_train_loss": round(loss.item(), 4),
        "last10_nats_per_char": round(nats, 4),
        "last10_bits_per_char": round(nats / math.log(2), 4),
        "torch": torch.__version__,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
