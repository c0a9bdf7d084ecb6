"""A large corpus in bounded memory: encoding speed, peak memory and time to the first step.

Builds corpora of the given sizes (Tiny Shakespeare repeated, each copy with its lines in
another order, so the text is not one period), then for each trains in a fresh process
(`charlstm.trainer.train`, the same as `charlstm train FILE`) until the first few steps, twice:
cold (the file is hashed and encoded into the cache's id file) and warm (the id file is
mapped). Prints one JSON line per run: size, encode MB/s, seconds to the first step, peak RSS,
the machine.

    python scripts/scale.py                   # 100 MB and 1 GB, in a temporary folder
    python scripts/scale.py --mb 100 --keep DIR
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "corpora" / "tinyshakespeare.txt"

# run in the child: train until `steps` steps are done, then report
_CHILD = r"""
import json, os, resource, sys, time
start = time.monotonic()
from charlstm.quiet import install
install()
from charlstm.config import ModelConfig, RunConfig, TrainConfig
from charlstm.events import EncodeEvent, StepEvent
from charlstm.trainer import train

corpus, out, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen = {"encode": [], "first_step": None}

class Enough(Exception):
    pass

def callback(event):
    if isinstance(event, EncodeEvent):
        seen["encode"].append((event.phase, time.monotonic() - start, event.done))
    elif isinstance(event, StepEvent):
        if seen["first_step"] is None:
            seen["first_step"] = time.monotonic() - start
        if event.step >= steps:
            raise Enough

config = RunConfig(
    model=ModelConfig(embedding_dim=64, units=256, num_layers=2),
    train=TrainConfig(batch_size=64, seq_len=100, epochs=1, val_fraction=0.0005,
                      test_fraction=0.0005, eval_every=10_000),
    corpus=corpus,
)
try:
    train(out, config, force=True, callback=callback)
except Enough:
    pass
encode = [t for phase, t, _ in seen["encode"] if phase == "encode"]
hashed = [t for phase, t, _ in seen["encode"] if phase == "hash"]
print(json.dumps({
    "hash_s": (hashed[-1] - hashed[0]) if len(hashed) > 1 else None,
    "encode_s": (encode[-1] - (hashed[-1] if hashed else encode[0])) if encode else None,
    "first_step_s": seen["first_step"],
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def build_corpus(path: Path, megabytes: int, seed: int = 0) -> int:
    """Write about `megabytes` MB of shuffled-line copies of Tiny Shakespeare; returns bytes."""
    lines = CORPUS.read_text(encoding="utf-8").splitlines(keepends=True)
    rng = random.Random(seed)
    target, written = megabytes * 1_000_000, 0
    with path.open("w", encoding="utf-8") as out:
        while written < target:
            rng.shuffle(lines)
            block = "".join(lines)
            out.write(block)
            written += len(block.encode("utf-8"))
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--steps", type=int, default=3, help="steps to train before stopping")
    parser.add_argument("--keep", type=Path, default=None, help="folder for corpora and runs")
    args = parser.parse_args()
    from charlstm.precision import cpu_name  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "CHARLSTM_DATA": str(root / "data"), "TF_CPP_MIN_LOG_LEVEL": "2"}
        for mb in args.mb:
            corpus = root / f"corpus-{mb}mb.txt"
            size = build_corpus(corpus, mb) if not corpus.exists() else corpus.stat().st_size
            for attempt in ("cold", "warm"):
                started = time.monotonic()
                done = subprocess.run(
                    [sys.executable, "-c", _CHILD, str(corpus), str(root / f"run-{mb}"),
                     str(args.steps)],
                    env=env, capture_output=True, text=True, check=False,
                )  # fmt: skip
                if done.returncode != 0:
                    sys.exit(f"{mb} MB {attempt}: failed\n{done.stderr[-3000:]}")
                got = json.loads(done.stdout.strip().splitlines()[-1])
                encode_s = got["encode_s"]
                print(json.dumps({
                    "bytes": size,
                    "attempt": attempt,
                    "hash_s": got["hash_s"],
                    "encode_s": encode_s,
                    "encode_mb_per_s": size / 1e6 / encode_s if encode_s else None,
                    "first_step_s": got["first_step_s"],
                    "peak_rss_mb": got["peak_rss_mb"],
                    "wall_s": time.monotonic() - started,
                    "machine": f"{cpu_name()}, {os.cpu_count()} cores",
                    "date": time.strftime("%Y-%m-%d"),
                }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
