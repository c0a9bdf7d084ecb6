"""Fine-tuning against training from scratch, at equal minutes.

For each BASE:TARGET pair: train a base run on BASE for --base-minutes (kept in --out and
reused by later calls), then on TARGET for each of --minutes, from scratch (`charlstm train
TARGET --minutes M`, the preset that budget picks) and fine-tuned (`charlstm train TARGET
--minutes M --init-from BASE_RUN`, the fine-tuning recipe, or each --rates multiple of the
base's peak rate); a run already in --out is kept and reused. Each run's score is the loss
of its final weights on TARGET's whole validation part (the log's last val_loss_all,
nats/char); a fine-tuned run's step 0 is the base's loss there. Prints one JSON line per
run, then a Markdown table, with the CPU and date.

    python scripts/fine_tune.py                    # both directions at 1, 3 and 9 minutes
    python scripts/fine_tune.py --pairs tinyshakespeare:python-stdlib --minutes 3 \\
        --rates 1 0.3 0.1 --no-scratch             # the recipe's peak rate
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

from charlstm.quiet import install as quiet_tensorflow

quiet_tensorflow()  # TensorFlow's start-up notes off stderr, before charlstm.precision imports it

from charlstm.precision import cpu_name  # noqa: E402


def _charlstm(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "charlstm", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"charlstm {' '.join(args)} failed:\n{done.stderr}")


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _base(corpus: str, minutes: float, out: Path) -> Path:
    run = out / f"base-{corpus}-{minutes:g}min"
    if not (run / "log.jsonl").is_file():
        _charlstm("train", corpus, "--out", str(run), "--force", "--minutes", str(minutes))
    return run


def _row(kind: str, base: str, target: str, minutes: float, run: Path) -> dict:
    log = _log(run)
    config = json.loads((run / "config.json").read_text())
    return {
        "start": kind,
        "base": base,
        "target": target,
        "minutes": minutes,
        "preset": config["preset"],
        "peak_rate": config["train"]["learning_rate"],
        "steps": log[-1]["step"],
        "step0_val": log[0]["val_loss"] if log[0]["step"] == 0 else None,
        # the whole validation part (val_loss_all: when the passes during training score a head)
        "val_loss": log[-1].get("val_loss_all") or log[-1]["val_loss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    pairs = ["tinyshakespeare:python-stdlib", "python-stdlib:tinyshakespeare"]
    parser.add_argument("--pairs", nargs="+", default=pairs, help="BASE:TARGET corpora")
    parser.add_argument("--base-minutes", type=float, default=5.0)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 3.0, 9.0])
    parser.add_argument("--rates", type=float, nargs="*", default=[],
                        help="fine-tune at these multiples of the base's peak rate "
                        "[default: the recipe's]")  # fmt: skip
    parser.add_argument("--no-scratch", action="store_true", help="fine-tuned runs only")
    parser.add_argument("--out", type=Path, default=Path("runs/fine-tune"))
    args = parser.parse_args()

    machine = cpu_name()
    rows = []
    for pair in args.pairs:
        source, target = pair.split(":")
        base = _base(source, args.base_minutes, args.out)
        base_rate = json.loads((base / "config.json").read_text())["train"]["learning_rate"]
        for minutes in args.minutes:
            runs = [] if args.no_scratch else [("scratch", [])]
            tuned = ["--init-from", str(base)]
            runs += [(f"fine-tuned x{r:g}", [*tuned, "--learning-rate", str(base_rate * r)])
                     for r in args.rates] or [("fine-tuned", tuned)]  # fmt: skip
            for kind, options in runs:
                run = args.out / f"{target}-{minutes:g}min-{kind.replace(' ', '-')}-from-{source}"
                if not (run / "log.jsonl").is_file():  # a finished run is kept and reused
                    _charlstm("train", target, "--out", str(run), "--force", "--minutes",
                              str(minutes), *options)  # fmt: skip
                row = _row(kind, source, target, minutes, run)
                row |= {"cpu": machine, "date": datetime.date.today().isoformat()}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\n{machine}, {datetime.date.today().isoformat()}; validation loss, nats/char\n")
    print("| target | base | minutes | start | preset | steps | loss at step 0 | loss at the end |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        step0 = f"{r['step0_val']:.3f}" if r["step0_val"] is not None else ""
        base = f"{r['base']} ({args.base_minutes:g} min)"
        print(f"| {r['target']} | {base} | {r['minutes']:g} | {r['start']} | {r['preset']} | "
              f"{r['steps']:,} | {step0} | {r['val_loss']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
