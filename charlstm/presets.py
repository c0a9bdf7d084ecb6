"""Recipes by time budget: the options each preset sets, and how `--preset auto` picks one.

    tiny    2 x 128, batch 32 x 64, Adam           up to 2 minutes, or a corpus under 300,000
                                                   chars
    small   2 x 256, batch 64 x 50, AdamW decay    up to 5 minutes (10 on a float32 CPU), or
            0.2, cosine to 0                       any corpus without a budget
    medium  2 x 512, batch 32 x 50, as small       up to 30 minutes
    large   medium's, 4 members: an ensemble of    beyond
            four medium models trained side by
            side, each in a quarter of the budget

An option given explicitly always wins over its preset's. The dataclass defaults are small's
but for its weight decay and the end of its schedule: a RunConfig built in code keeps plain
Adam and a cosine to 0.1 x the peak. What each preset reaches on Tiny Shakespeare, and on
which machine, is in docs/results.md. One medium model did best at 15 minutes (1.3497) and
over-fitted longer budgets (1.3570 at 30, 1.3671 at 60), as every single model tried for the
hour did (1.3547 at best); four medium models averaged, each in a quarter of the hour, scored
1.3072. Whether four members beat one medium model at 30 minutes or less is not measured.

A float32 CPU (no bfloat16 products, no GPU) runs small on the compiled kernel at about 4 x
medium's steps, and there small beat medium at 9 minutes (1.441 against 1.461 nats/char, AMD
EPYC Zen 3; 1.438 against 1.4435 on TensorFlow's pooling allocator). At 15 minutes on the
pooling allocator medium won (1.4111 against 1.4233); before it they had tied there (1.4217).
So small keeps budgets up to 10 minutes there, about where the two cross. With the recipes
below small still won there at 9 minutes: 1.4332 against 1.4394 (2026-12-07).

Small and medium read windows of 50 characters: twice the updates of windows of 100 for the
same characters. On a float32 CPU small scored lower with them at 5 and 9 minutes than with
windows of 100 or 25; with bfloat16 products medium scored 1.3962 at 9 minutes against 1.4121
(docs/training.md#presets). Medium reads 32 streams, not 64: with bfloat16 products that
bought 1.8 x the updates in 9 minutes and scored 1.3886 and 1.3891 against 1.3962 and 1.3989.
Small's and medium's learning rates fall to 0 at the end of the budget instead of to 0.1 x
the peak: small scored 1.4111 at 5 minutes against 1.4346, medium 1.3611 and 1.3659 at 9
minutes against 1.3886 and 1.3891 (bfloat16 products). Together medium's windows, streams and
schedule bought 0.05 at 9 minutes with bfloat16 products but 0.004 on a float32 CPU (1.4394
against 1.4435), where medium trains on a quarter of small's characters. Tiny's falls to
0.1 x its peak: to 0, its minute scored 1.5617 against 1.5464. Large takes all of medium's.
"""

from __future__ import annotations

SMALL_UP_TO = 5  # minutes: the last budget that picks small where the products run in bfloat16
SMALL_UP_TO_FLOAT32_CPU = 10  # ... and where they run in float32 on a CPU

PRESETS: dict[str, dict[str, object]] = {
    "tiny": {"embedding_dim": 32, "units": 128, "num_layers": 2, "dropout": 0.1,
             "batch_size": 32, "seq_len": 64, "warmup_steps": 20},
    "small": {"embedding_dim": 64, "units": 256, "num_layers": 2, "dropout": 0.2,
              "weight_decay": 0.2, "batch_size": 64, "seq_len": 50, "warmup_steps": 50,
              "lr_floor": 0.0},
    "medium": {"embedding_dim": 64, "units": 512, "num_layers": 2, "dropout": 0.2,
               "weight_decay": 0.2, "batch_size": 32, "seq_len": 50, "warmup_steps": 50,
               "lr_floor": 0.0},
    "large": {"embedding_dim": 64, "units": 512, "num_layers": 2, "dropout": 0.2,
              "weight_decay": 0.2, "batch_size": 32, "seq_len": 50, "warmup_steps": 50,
              "lr_floor": 0.0, "members": 4},
}  # fmt: skip


def choose_preset(
    minutes: float | None, corpus_chars: int | None = None, float32_cpu: bool = False
) -> str:
    """The preset for a time budget and a corpus of `corpus_chars` characters.

    With a budget: tiny up to 2 minutes, small up to 5 (up to 10 where `float32_cpu`: the run's
    products run in float32 on a CPU), medium up to 30, large beyond. Without one (the run
    ends after its epochs): tiny for a corpus under 300,000 characters, else small.
    """
    if minutes is None:
        return "tiny" if corpus_chars is not None and corpus_chars < 300_000 else "small"
    small = SMALL_UP_TO_FLOAT32_CPU if float32_cpu else SMALL_UP_TO
    for name, up_to in (("tiny", 2), ("small", small), ("medium", 30)):
        if minutes <= up_to:
            return name
    return "large"
