"""Train on Tiny Shakespeare for a time budget and score the file's last 10%, as the README's
results table does: `charlstm train FILE --minutes M` (plus any options given after `--`), then
`charlstm evaluate` on the last 10% of the characters, which the default 90/5/5 split never
trains on, read as 64 streams whatever the run's batch (the anchors' layout: each stream starts
cold, so fewer streams would score a little lower). Prints one JSON line: minutes, options,
steps, wall time, nats/char, bits/char, parameters, a 300-character sample at temperature
0.8, date, machine.

    python scripts/reproduce.py --minutes 9
    python scripts/reproduce.py --minutes 9 -- --dropout 0.2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from charlstm.quiet import install as quiet_tensorflow

quiet_tensorflow()  # TensorFlow's start-up notes off stderr, before charlstm.precision imports it

from charlstm.precision import cpu_name  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1] / "corpora" / "tinyshakespeare.txt"
STREAMS = 64  # the held-out text's layout, as scripts/anchor_torch.py scores it


def _charlstm(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "charlstm", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"charlstm {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=9.0)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--out", type=Path, default=None, help="run folder [default: a temp one]")
    parser.add_argument("options", nargs="*", help="more `charlstm train` options, after --")
    args = parser.parse_args()

    text = args.corpus.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        held_out = Path(tmp) / "last10.txt"
        held_out.write_text(text[len(text) - len(text) // 10 :], encoding="utf-8")
        out = args.out or Path(tmp) / "run"
        start = time.monotonic()
        _charlstm("train", str(args.corpus), "--out", str(out), "--force",
                  "--minutes", str(args.minutes), *args.options)  # fmt: skip
        wall = time.monotonic() - start
        # scored in float32 whatever the run trained in: the exact loss
        scoring = ["--json", "--precision", "float32", "--streams", str(STREAMS)]
        score = json.loads(_charlstm("evaluate", str(out), str(held_out), *scoring))
        info = _charlstm("info", str(out))
        sample = _charlstm("generate", str(out), "--temperature", "0.8", "--length", "300",
                           "--seed", "1")  # fmt: skip
        log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    print(
        json.dumps(
            {
                "minutes": args.minutes,
                "options": args.options,
                "steps": log[-1]["step"],
                "wall_s": round(wall, 1),
                "last10_nats_per_char": round(score["nats_per_char"], 4),
                "last10_bits_per_char": round(score["bits_per_char"], 4),
                "streams": score["streams"],
                "val_curve": [
                    (r["step"], round(r["elapsed_s"]), round(r["val_loss"], 3)) for r in log
                ],  # fmt: skip
                "info": info.splitlines()[2:6],
                "sample": sample,
                "date": time.strftime("%Y-%m-%d"),
                "machine": f"{cpu_name()}, {os.cpu_count()} cores",
            }
        )
    )


if __name__ == "__main__":
    main()
