"""A trained model as one self-contained HTML page (`charlstm export RUN --format web`).

The page holds everything it needs and runs in any modern browser, offline, with no server:
the vocabulary, the weights in float16 (base64; `half` rounds them, and the page turns them
back into float32 arrays), and the model and sampler in plain JavaScript (web.html, no
framework, no CDN). The JavaScript steps the gate equations `charlstm.cell` states:

    z = x_t @ W + h_{t-1} @ U + b              (4H,) = [z_i | z_f | z_g | z_o]
    i, f, o = sigmoid(z_i, z_f, z_o), g = tanh(z_g)
    c_t = f * c_{t-1} + i * g,  h_t = o * tanh(c_t)

layer after layer, then logits = h_t @ W_head + b_head (tied: the embedding's transpose); an
ensemble's members each so, then ln p = logsumexp_m(log_softmax(logits_m)) - ln M. The
prime is read as `charlstm.sample.Sampler` reads it (NFC, unknown characters as the unknown
token, which is never drawn, an empty prime as `empty_prime`); temperature 0 is the argmax, so
greedy text equals Python's on the same float16 weights up to float32 rounding; top-k/top-p keep
what `top_k_top_p_filter` keeps; draws come from a seeded generator of the page's own (the same
seed gives the same text in the page, not the same as `charlstm generate`). In the page,
`charlstm.generate(prime, length, {temperature, top_k, top_p, seed})` returns the text, for
scripts and tests; `charlstm.trace(text, layer, quantity)` feeds the inside view (inside.js,
the served page's too), which colours a text by one unit's c, h or gate after each character.
"""

from __future__ import annotations

import base64
import html
import json
import re
from importlib import resources
from pathlib import Path

import numpy as np

from charlstm.config import ModelConfig, SamplingConfig
from charlstm.errors import CharlstmError
from charlstm.model import weight_shapes
from charlstm.sample import empty_prime
from charlstm.tokenizer import UNK_ID, CharTokenizer

# what the page's weights are stored in
DTYPE = "float16"
HALF_MAX = float(np.finfo(np.float16).max)


def half(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The weights as the page has them: each rounded to float16 (and back to float32).

    Raises:
        CharlstmError: a weight beyond float16's range (65,504).
    """
    rounded = {}
    for name, value in tensors.items():
        if np.abs(value).max(initial=0.0) > HALF_MAX:
            raise CharlstmError(f"weight {name} exceeds float16's range; the page cannot hold it")
        rounded[name] = value.astype(np.float16).astype(np.float32)
    return rounded


def page(config: ModelConfig, tokenizer: CharTokenizer, tensors: dict[str, np.ndarray],
         title: str) -> str:  # fmt: skip
    """The HTML page of a model of `config` with weights `tensors` (by variable path).

    Raises:
        CharlstmError: a cell the page does not run (layernorm), a weight beyond float16.
    """
    if config.cell != "lstm":
        raise CharlstmError(f"--format web runs the lstm cell, not {config.cell}")
    shapes = weight_shapes(config)
    prefix = "char_lstm/"
    weights = {
        name.removeprefix(prefix): {
            "shape": list(shapes[name]),
            "data": base64.b64encode(value.astype("<f2").tobytes()).decode("ascii"),
        }
        for name, value in half({name: tensors[name] for name in shapes}).items()
    }
    model = {
        "title": title,
        "chars": tokenizer.chars,
        "unk": UNK_ID,
        "empty": empty_prime(tokenizer),
        "layers": config.num_layers,  # each member's
        # each member's weights' prefix, in order ("" for a model alone)
        "members": [f"member_{m}/" if config.members > 1 else "" for m in range(config.members)],
        # each layer's weights' prefix, in order
        "cells": [
            name.removeprefix(prefix).removesuffix("/recurrent_kernel")
            for name in shapes
            if name.endswith("/recurrent_kernel")
        ],  # fmt: skip
        "units": config.units,
        "tied": config.tie_embeddings,
        "dtype": DTYPE,
        "weights": weights,
        "defaults": {
            "temperature": SamplingConfig.temperature,
            "top_k": SamplingConfig.top_k,
            "top_p": SamplingConfig.top_p,
            "seed": SamplingConfig.seed,
        },
    }
    # "</" inside the JSON would end the script element: JSON may escape the slash
    data = json.dumps(model, ensure_ascii=True).replace("</", "<\\/")
    files = resources.files("charlstm")
    parts = {
        "title": html.escape(title),
        "model": data,
        "inside": files.joinpath("inside.js").read_text(encoding="utf-8"),
    }
    template = files.joinpath("web.html").read_text(encoding="utf-8")
    return re.sub(r"\{\{(title|model|inside)\}\}", lambda m: parts[m.group(1)], template)


def write_page(run_dir: str | Path, out: str | Path) -> Path:
    """Write run `run_dir`'s best model as the page `out` (a file that must not exist)."""
    from charlstm.rundir import RunDir, atomic_write_bytes  # noqa: PLC0415

    run = RunDir.open(Path(run_dir))
    checkpoint = run.check_model()
    title = f"{run.path.name}, step {checkpoint.step}"
    text = page(run.config.model, run.tokenizer, checkpoint.model_tensors(), title)
    out = Path(out)
    try:
        atomic_write_bytes(out, text.encode("utf-8"))
    except OSError as err:
        raise CharlstmError(f"cannot write {out} ({err.strerror})") from err
    return out
