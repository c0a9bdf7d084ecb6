"""Encode speed of CharTokenizer in MB/s, against a per-character regex WordLevel baseline.

The corpus (tinyshakespeare by default) is repeated to about --megabytes of UTF-8 and encoded
--repeats times by each tokenizer, alternating, in the same run. Medians are reported because
other work on the machine makes single timings noisy. Both tokenizers must give the same ids.

The baseline is the textbook character tokenizer: a WordLevel model over the same vocabulary
behind an NFC normalizer and a `Split` pre-tokenizer that isolates every character with a regex.
It runs through the same `encode_batch_fast` over the same chunks, with its ids turned into one
array by `np.asarray`.

    python scripts/tokenizer_speed.py                # a table on stdout
    python scripts/tokenizer_speed.py --json         # one JSON object on stdout
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tokenizers
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

from charlstm.corpus import read_text
from charlstm.errors import CharlstmError
from charlstm.tokenizer import UNK, CharTokenizer

DEFAULT_CORPUS = Path(__file__).resolve().parents[1] / "corpora" / "tinyshakespeare.txt"
BASELINE_CHUNK_CHARS = 1 << 16


def regex_wordlevel(vocab: dict[str, int]) -> Callable[[str], np.ndarray]:
    """The baseline: text -> (N,) int32 ids with a per-character Split and a WordLevel model."""
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")

    def encode(text: str) -> np.ndarray:
        chunks = [
            text[i : i + BASELINE_CHUNK_CHARS] for i in range(0, len(text), BASELINE_CHUNK_CHARS)
        ]
        encodings = tokenizer.encode_batch_fast(chunks, add_special_tokens=False)
        return np.concatenate([np.asarray(e.ids, dtype=np.int32) for e in encodings])

    return encode


def measure(
    encoders: dict[str, Callable[[str], np.ndarray]], text: str, repeats: int
) -> dict[str, dict[str, list[float]]]:
    """Wall and CPU seconds (all threads) of each encoder on `text`, `repeats` times.

    The encoders take turns, so a burst of other work on the machine hits both alike; CPU
    seconds are what the encoder costs whatever else runs beside it.
    """
    seconds = {name: {"wall": [], "cpu": []} for name in encoders}
    for _ in range(repeats):
        for name, encode in encoders.items():
            wall, cpu = time.perf_counter(), time.process_time()
            encode(text)
            seconds[name]["cpu"].append(time.process_time() - cpu)
            seconds[name]["wall"].append(time.perf_counter() - wall)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="UTF-8 text file")
    parser.add_argument("--megabytes", type=float, default=8.0, help="repeat the corpus to this")
    parser.add_argument("--repeats", type=int, default=5, help="timed encodes per tokenizer")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.repeats < 1 or args.megabytes <= 0:
        parser.error("--repeats must be at least 1 and --megabytes above 0")

    try:
        corpus = read_text(args.corpus)
    except CharlstmError as err:
        sys.exit(f"Error: {err}")
    copies = math.ceil(args.megabytes * 1e6 / len(corpus.encode("utf-8")))
    text = corpus * copies
    megabytes = len(text.encode("utf-8")) / 1e6

    char_tokenizer = CharTokenizer.build(corpus)
    baseline = regex_wordlevel(char_tokenizer.tokenizer.get_vocab())
    if not np.array_equal(char_tokenizer.encode(text), baseline(text)):
        sys.exit("Error: CharTokenizer and the baseline disagree on the ids")
    print(f"encoding {megabytes:.1f} MB, {args.repeats} times each ...", file=sys.stderr)
    seconds = measure(
        {"CharTokenizer.encode": char_tokenizer.encode, "regex WordLevel baseline": baseline},
        text,
        args.repeats,
    )

    results = {
        name: {
            "median_s": statistics.median(times["wall"]),
            "min_s": min(times["wall"]),
            "median_mb_per_s": megabytes / statistics.median(times["wall"]),
            "median_cpu_s": statistics.median(times["cpu"]),
        }
        for name, times in seconds.items()
    }
    report = {
        "corpus": str(args.corpus),
        "megabytes": megabytes,
        "characters": len(text),
        "vocab_size": char_tokenizer.vocab_size,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "tokenizers": tokenizers.__version__,
        "results": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{megabytes:.1f} MB ({len(text):,} characters, vocabulary {char_tokenizer.vocab_size}), "
        f"median of {args.repeats}; {report['cpus']} CPUs, "
        f"load {report['load_average_1min']:.1f}, tokenizers {tokenizers.__version__}"
    )
    for name, result in results.items():
        print(
            f"  {name:26s} {result['median_mb_per_s']:6.1f} MB/s  "
            f"(median {result['median_s']:.3f} s, best {result['min_s']:.3f} s, "
            f"CPU {result['median_cpu_s']:.3f} s)"
        )


if __name__ == "__main__":
    main()
