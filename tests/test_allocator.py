"""charlstm.allocator: a training process runs on TensorFlow's pooling CPU allocator, unless the
user chose otherwise or the process ran TensorFlow ops before."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import TINY_TRAIN_ARGS, make_text

# says whether the process' CPU allocator pools, without importing charlstm
POOLED = """
try:
    tf.config.experimental.get_memory_info("CPU:0")
    print("pooled")
except ValueError:
    print("not pooled")
"""

# train a tiny run in a fresh process, then say whether its CPU allocator pools
TRAIN_THEN_ASK = """
import sys
import charlstm
from charlstm import allocator
if sys.argv[3] == "op-first":
    import tensorflow as tf
    tf.constant(1.0) + 1.0
charlstm.train(sys.argv[1], sys.argv[2], embedding_dim=8, units=16, num_layers=1,
               batch_size=4, seq_len=16, epochs=1, eval_every=20, sample_chars=0)
print("pooled" if allocator.pooled() else "not pooled")
"""


# the `charlstm` command's entry point (setup.cfg: charlstm = charlstm.cli:cli) trains; then,
# as the process exits, it says whether its CPU allocator pools
COMMAND_THEN_ASK = """
import atexit, sys
from charlstm import allocator
atexit.register(lambda: print("pooled" if allocator.pooled() else "not pooled"))
from charlstm.cli import cli
cli(["train", *sys.argv[1:]])
"""


def test_the_command_trains_on_the_pooling_allocator(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(make_text(), encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPU_ALLOCATOR_USE_BFC"}
    args = [str(text), "--out", str(tmp_path / "run"), *TINY_TRAIN_ARGS]
    done = subprocess.run(
        [sys.executable, "-c", COMMAND_THEN_ASK, *args],
        env=environ, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "pooled"


def train_then_ask(tmp_path, order: str, **env: str) -> str:
    text = tmp_path / "text.txt"
    text.write_text(make_text(), encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPU_ALLOCATOR_USE_BFC"}
    done = subprocess.run(
        [sys.executable, "-c", TRAIN_THEN_ASK, str(text), str(tmp_path / "run"), order],
        env=environ | env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_training_asks_for_the_pooling_allocator_before_its_first_op(tmp_path):
    assert train_then_ask(tmp_path, "train-first") == "pooled"


@pytest.mark.parametrize(
    "order, env",
    [("train-first", {"TF_CPU_ALLOCATOR_USE_BFC": "false"}), ("op-first", {})],
    ids=["the-user-said-no", "an-op-ran-before"],
)
def test_the_allocator_stays_as_it_is_where_the_user_or_an_earlier_op_chose(tmp_path, order, env):
    # as it is: what a process that never imports charlstm has. That pools too where TensorFlow
    # runs oneDNN's CPU allocator (its default on CPUs with AVX-512), which keeps a pool of
    # its own; elsewhere it is malloc, which does not
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPU_ALLOCATOR_USE_BFC"} | env
    ask = "import tensorflow as tf; tf.constant(1.0) + 1.0; " + POOLED
    plain = subprocess.run([sys.executable, "-c", ask], env=environ, capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert train_then_ask(tmp_path, order, **env) == plain.stdout.strip().splitlines()[-1]
