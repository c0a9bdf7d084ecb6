"""Tiny fixtures: a small deterministic text, tiny model and training settings."""

from __future__ import annotations

import os
import random
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from charlstm.config import ModelConfig, RunConfig, TrainConfig  # noqa: E402

SUBJECTS = ["the cat", "a dog", "my friend", "the king", "our queen"]
VERBS = ["sees", "likes", "finds", "calls", "keeps"]
OBJECTS = ["the ball.", "a song.", "the crown.", "some bread.", "her horse."]


def make_text(n_sentences: int = 400, seed: int = 0) -> str:
    """Sentences from a small grammar: learnable structure in a few thousand characters."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_sentences):
        line = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
        lines.append(line.capitalize())
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session", autouse=True)
def built_kernel():
    """The compiled LSTM kernel built (or found) once, before any test: a test that reads a
    command's stderr then never meets the one line of its first build."""
    from charlstm import kernel  # noqa: PLC0415

    return kernel.load()


def write_tiny_text(folder: Path) -> Path:
    """make_text() written to folder/tiny.txt."""
    path = folder / "tiny.txt"
    path.write_text(make_text(), encoding="utf-8")
    return path


@pytest.fixture
def text_file(tmp_path):
    return write_tiny_text(tmp_path)


# .ci/run sets it: there, a test whose system facility is missing fails instead of skipping
REQUIRE_ALL = os.environ.get("CHARLSTM_TESTS_REQUIRE_ALL") == "1"


def require(available: bool, reason: str) -> None:
    """Skip the calling test with `reason` when what it needs from the system (a program the
    package cannot install, root) is not `available`; under CHARLSTM_TESTS_REQUIRE_ALL=1 fail
    instead, so that CI always runs it."""
    if available:
        return
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (CHARLSTM_TESTS_REQUIRE_ALL=1)")
    pytest.skip(reason)


def tiny_config(corpus: str = "", **train) -> RunConfig:
    # no samples at each validation (their compile costs seconds a run): the tests that check
    # them ask for them
    settings = {"batch_size": 4, "seq_len": 16, "epochs": 2, "eval_every": 20,
                "sample_chars": 0, **train}  # fmt: skip
    return RunConfig(
        model=ModelConfig(embedding_dim=8, units=16, num_layers=2),
        train=TrainConfig(**settings),
        corpus=corpus,
    )


TINY_TRAIN_ARGS = [
    "--embedding-dim", "8", "--units", "16", "--num-layers", "2",
    "--batch-size", "4", "--seq-len", "16", "--epochs", "1", "--eval-every", "20",
    "--sample-chars", "0",
]  # fmt: skip


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A run directory trained for 2 epochs on the tiny text, shared by read-only tests."""
    from charlstm.trainer import train

    folder = tmp_path_factory.mktemp("trained")
    out = folder / "run"
    train(out, tiny_config(str(write_tiny_text(folder)), learning_rate=1e-2))
    return out


def prepare_data(corpus_text: str, starts, tokenizer, config: RunConfig, val_text=None):
    """Encode, split and lay out a corpus held as text, as `trainer.train` lays out a run's:
    (Splits, train Windows, validation Windows)."""
    from charlstm.dataset import lay_out

    val_ids = tokenizer.encode(val_text) if val_text is not None else None
    laid = lay_out(tokenizer.encode(corpus_text), starts, config, val_ids)
    return laid.splits, laid.train, laid.val
