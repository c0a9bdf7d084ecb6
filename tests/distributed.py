"""Training runs for tests/test_distribute.py, each in a process of its own (TensorFlow's
devices and cluster are fixed when it starts).

    python -m tests.distributed mirrored OUT
        two logical CPU devices; trains OUT/one (no strategy) and OUT/mirrored (both devices)
        on the same text, config and seed; writes OUT/losses.json
    python -m tests.distributed worker OUT CORPUS EPOCHS WEIGHTS [resume | MINUTES]
        one worker of the cluster in TF_CONFIG (--strategy multiworker) trains into OUT (with
        `resume`: `--resume --epochs EPOCHS` on the run there; with MINUTES: `--minutes`);
        its model's weights at the end go to WEIGHTS (.npz), whichever worker it is. With
        CHARLSTM_TEST_FIT_DELAY=SECONDS in the environment, it begins its fit that much later
        than its peer (so its own clock's deadline is later too).
"""

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from charlstm.config import RunConfig
from tests.conftest import make_text, tiny_config


def config(corpus: str, strategy: str, epochs: int = 1) -> RunConfig:
    """The tiny config in float32, without dropout (R replicas then take one device's steps),
    at a constant rate after the warm-up (a run of 1 epoch resumed to 2 then takes the steps
    of a run of 2)."""
    base = tiny_config(corpus, epochs=epochs, eval_every=20, strategy=strategy, schedule="constant")
    model = dataclasses.replace(base.model, dropout=0.0)
    return dataclasses.replace(base, model=model, precision="float32")


def losses_of(events) -> dict[int, float]:
    from charlstm.events import StepEvent  # noqa: PLC0415

    return {e.step: e.loss for e in events if isinstance(e, StepEvent)}


def mirrored(out: Path) -> None:
    import tensorflow as tf  # noqa: PLC0415

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from charlstm.trainer import train  # noqa: PLC0415

    corpus = out / "tiny.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    losses = {}
    for strategy in ("one", "mirrored"):
        events: list = []
        train(out / strategy, config(str(corpus), strategy), callback=events.append)
        losses[strategy] = losses_of(events)
    (out / "losses.json").write_text(json.dumps({**losses, "masks": masks_per_replica()}))


def masks_per_replica() -> list:
    """A dropout model's training-mode logits on the same ids, from each replica."""
    import tensorflow as tf  # noqa: PLC0415

    from charlstm.config import ModelConfig  # noqa: PLC0415
    from charlstm.distribute import Replicas, make_strategy  # noqa: PLC0415
    from charlstm.model import build_model  # noqa: PLC0415

    replicas = Replicas(make_strategy("mirrored"), 4)
    settings = ModelConfig(vocab_size=5, embedding_dim=4, units=8, num_layers=1, dropout=0.5,
                           recurrent_dropout=0.5)  # fmt: skip
    with replicas.scope():
        model = build_model(settings)
    replicas.decorrelate(model)
    ids = tf.zeros((2, 6), tf.int32)
    assert replicas.strategy is not None

    @tf.function
    def logits():
        return replicas.strategy.run(lambda: model(ids, training=True)[0])

    return [value.numpy().tolist() for value in logits().values]


def worker(out: Path, corpus: str, epochs: int, weights: Path, more: list[str]) -> None:
    from charlstm.api import quiet_tensorflow  # noqa: PLC0415

    # as a user's worker runs: no log level of the test suite's (tests.conftest sets one)
    os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
    quiet_tensorflow()  # as the command does first; the spy below imports TensorFlow early
    from charlstm import trainer  # noqa: PLC0415
    from charlstm.cli import cli  # noqa: PLC0415

    fit = trainer.Trainer.fit

    def fit_and_keep_weights(self, *args, **kwargs):  # a spy: fit runs as it is
        time.sleep(float(os.environ.get("CHARLSTM_TEST_FIT_DELAY", "0")))
        result = fit(self, *args, **kwargs)
        np.savez(weights, **{v.path: v.numpy() for v in self.model.weights})
        return result

    trainer.Trainer.fit = fit_and_keep_weights
    if more == ["resume"]:  # the run's own config: its strategy is multiworker
        cli.main(["train", "--out", str(out), "--resume", "--epochs", str(epochs)])
    else:
        settings = weights.with_suffix(".json")  # the tiny config, as `train --config` reads it
        settings.write_text(config(corpus, "multiworker", epochs).to_json())
        minutes = ["--minutes", more[0]] if more else []
        cli.main(["train", corpus, "--out", str(out), "--config", str(settings), *minutes])


if __name__ == "__main__":
    if sys.argv[1] == "mirrored":
        mirrored(Path(sys.argv[2]))
    else:
        worker(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), Path(sys.argv[5]), sys.argv[6:])
