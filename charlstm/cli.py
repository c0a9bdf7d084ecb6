"""The `charlstm` command: train, generate, evaluate, info. Thin over the library.

stdout carries only the product (generated text, info, evaluate's numbers); progress, logs and
errors go to stderr. A user mistake is one line, "Error: ...", and exit status 1; a usage
mistake (unknown option, bad number) is one line and status 2; Ctrl-C is one line and status 130;
a reader that closes stdout early (`charlstm generate RUN | head`) ends the command quietly with
status 141, as a process killed by SIGPIPE would. TensorFlow is imported inside the commands so
that `--help` stays fast.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

import click

from charlstm.config import (
    DynamicConfig,
    Option,
    RunConfig,
    SamplingConfig,
    options,
    run_options,
)
from charlstm.errors import CharlstmError

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
# 128 + SIGPIPE: what the shell reports for a producer the reader stopped, as in `yes | head`, so
# `set -o pipefail` scripts see charlstm like any other Unix tool; 0 would hide that it was cut off
EXIT_CLOSED_PIPE = 141


class _Group(click.Group):
    """Turns CharlstmError, usage errors and Ctrl-C into one line on stderr, and a closed stdout
    into a quiet exit."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CharlstmError as err:
            raise click.ClickException(str(err)) from err
        except click.UsageError as err:
            raise _one_line_usage_error(err) from err
        except KeyboardInterrupt:
            # what was already streamed stays on stdout; click's own "Aborted!" would exit 1
            if sys.stderr.isatty():
                click.echo(err=True)  # off the line the terminal's "^C" is on
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:
            _drop_stdout()
            sys.exit(EXIT_CLOSED_PIPE)

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as err:
            raise _one_line_usage_error(err) from err


def _drop_stdout() -> None:
    """stdout's reader has gone: point file descriptor 1 at /dev/null, so that the flush of
    what is still buffered, at exit, cannot fail again ("Exception ignored ... BrokenPipeError")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _one_line_usage_error(err: click.UsageError) -> click.ClickException:
    where = err.ctx.command_path if err.ctx else "charlstm"
    exc = click.ClickException(f"{err.format_message()} (see '{where} --help')")
    exc.exit_code = EXIT_USAGE
    return exc


def _import_tensorflow() -> None:
    """Import TensorFlow with its C++ start-up notes kept off the terminal.

    TensorFlow 2.21 writes notes (oneDNN, absl) to file descriptor 2 before its log settings
    apply, so fd 2 points at /dev/null during the import; TF_CPP_MIN_LOG_LEVEL=0 keeps them.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        import tensorflow  # noqa: F401, PLC0415

        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401, PLC0415
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _LogFormatter(logging.Formatter):
    """Info lines as they are; warnings and errors with their level in front."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno == logging.INFO:
            return message
        return f"{record.levelname.lower()}: {message}"


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormatter())
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("charlstm").setLevel(logging.INFO if verbose else logging.WARNING)


@click.group(cls=_Group)
@click.version_option(package_name="charlstm")
@click.option("-v", "--verbose", is_flag=True, help="Show library logs on stderr.")
def cli(verbose: bool) -> None:
    """Character-level LSTM language models: train on text, generate, evaluate."""
    _setup_logging(verbose)


def _options(declared: list[Option]):
    """click options for config fields, from what their `setting` declares: the help, the range
    (click.IntRange / FloatRange) or choices; the defaults stay in the dataclass."""

    def decorate(func):
        for option in reversed(declared):
            kind = option.type
            if option.choices:
                kind = click.Choice(option.choices)
            elif option.range is not None:
                r = option.range
                kind = {int: click.IntRange, float: click.FloatRange}[option.type](
                    r.min, r.max, min_open=r.min_open, max_open=r.max_open
                )
            default = "none" if option.default is None else option.default
            flag = f"--{option.name.replace('_', '-')}"
            if option.type is bool:  # --name / --no-name
                flag, kind = f"{flag}/--no-{flag[2:]}", None
                default = "on" if option.default else "off"
            func = click.option(
                flag,
                option.name,
                type=kind,
                default=None,  # unset options leave the dataclass default in place
                help=f"{option.help} [default: {default}]",
            )(func)
        return func

    return decorate


@cli.command()
@click.argument("corpus", required=False)
@click.option("--out", "out", default=None, help="Run directory [default: runs/<corpus name>].")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out from its last checkpoint (start it if there is none).",
)
@click.option("--force", is_flag=True, help="Replace a run or files already in --out.")
@_options(options(RunConfig))
def train(corpus, out, resume, force, **settings) -> None:
    """Train on CORPUS: a UTF-8 text file, a folder or a quoted glob pattern ('texts/*.md') of
    them, or a corpus name (tinyshakespeare, python-stdlib; `charlstm corpus list`).

    Without CORPUS it trains on tinyshakespeare, which ships with charlstm. The files of a
    folder or pattern are read in sorted order; one that is not text is skipped with a
    warning. Progress goes to stderr; the run directory gets config.json, tokenizer.json,
    log.jsonl and checkpoints/.
    """
    from charlstm.corpus import DEFAULT_CORPUS, corpus_label, corpus_size  # noqa: PLC0415

    _import_tensorflow()
    from charlstm.precision import explain  # noqa: PLC0415
    from charlstm.train import (  # noqa: PLC0415 (slow import)
        EvalEvent,
        StartEvent,
        StepEvent,
        TrainingInterrupted,
        train,
    )

    given = {k: v for k, v in settings.items() if v is not None}
    name = corpus or DEFAULT_CORPUS
    if out is None:
        out = Path("runs") / corpus_label(name)
    if resume and (Path(out) / "config.json").exists():
        _check_resume_options(Path(out), corpus, given)
    # the corpus' size in bytes stands for its characters when a preset is chosen
    config = RunConfig.from_options(name, corpus_chars=corpus_size(name), **given)
    progress = _Progress()

    def callback(event) -> None:
        if isinstance(event, StartEvent):
            if not corpus and event.resumed_step is None:
                click.echo(
                    f"no CORPUS given: training on {DEFAULT_CORPUS}, which ships with charlstm",
                    err=True,
                )
            click.echo(f"corpus: {event.corpus}", err=True)
            resumed = f", resuming at step {event.resumed_step}" if event.resumed_step else ""
            click.echo(
                f"run directory: {event.run_dir} ({event.parameters:,} parameters{resumed})",
                err=True,
            )
            click.echo("\n".join(event.config.describe()), err=True)
            click.echo(explain(event.config.precision, event.config.model.cell), err=True)
        elif isinstance(event, StepEvent):
            progress.step(event)
        elif isinstance(event, EvalEvent):
            progress.evaluation(event)

    try:
        result = train(
            out,
            config,
            resume=resume,
            force=force,
            epochs=given.get("epochs") if resume else None,
            minutes=given.get("minutes") if resume else None,
            callback=callback,
        )
    except KeyboardInterrupt as err:
        progress.close()
        if isinstance(err, TrainingInterrupted):
            saved = f"at step {err.step}, checkpoint saved"
        else:
            saved = "the last complete checkpoint is kept"
        click.echo(
            f"interrupted: {saved}; continue with: charlstm train --out {out} --resume", err=True
        )
        sys.exit(EXIT_INTERRUPTED)
    progress.close()
    best = f"{result.best_val:.4f} nats/char" if result.best_val is not None else "n/a"
    click.echo(
        f"done ({result.stopped_by}): step {result.step}, best validation loss {best}; "
        f"generate with: charlstm generate {result.run_dir}",
        err=True,
    )


def _check_resume_options(out: Path, corpus: str | None, given: dict) -> None:
    """With --resume, options other than --epochs/--minutes must agree with the run's config."""
    from charlstm.corpus import corpus_key  # noqa: PLC0415
    from charlstm.rundir import RunDir  # noqa: PLC0415

    saved = RunDir.open(out).config
    values = saved.option_values()
    if "val_file" in given:  # compared as saved: a file by its absolute path
        given = {**given, "val_file": corpus_key(given["val_file"]) if given["val_file"] else ""}
    differ = [
        f"--{name.replace('_', '-')}"
        for name, value in given.items()
        if name not in ("epochs", "minutes")
        and values[name] != value
        and not (name == "preset" and value == "auto")
    ]
    if corpus and corpus_key(corpus) != corpus_key(saved.corpus):
        differ.append("CORPUS")
    if differ:
        raise CharlstmError(
            f"--resume continues {out} as its config.json says; {', '.join(differ)} differ "
            "from it (only --epochs and --minutes may change); use another --out for a new run"
        )


class _Progress:
    """Draws training progress on stderr: a live line on a terminal, eval lines always."""

    def __init__(self) -> None:
        self.live = sys.stderr.isatty()
        self.drawn = False

    def step(self, e) -> None:
        if self.live:
            line = (
                f"\repoch {e.epoch + 1} {e.window + 1}/{e.windows_per_epoch} step {e.step} "
                f"loss {e.loss:.4f} {e.chars_per_sec:,.0f} chars/s {e.elapsed_s:,.0f}s"
            )
            click.echo(line.ljust(79), err=True, nl=False)
            self.drawn = True

    def evaluation(self, e) -> None:
        self.close()
        r = e.record
        train_loss = f"{r['train_loss']:.4f}" if r["train_loss"] is not None else "n/a"
        click.echo(
            f"step {r['step']} epoch {r['epoch']}: train {train_loss} val {r['val_loss']:.4f} "
            f"nats/char ({r['val_bits_per_char']:.3f} bits){' best' if e.is_best else ''}",
            err=True,
        )

    def close(self) -> None:
        if self.drawn:
            click.echo(err=True)
            self.drawn = False


@cli.command()
@click.argument("run_dir")
@click.option("--prime", default="", help="Text to start from (printed first).")
@click.option("--length", default=500, show_default=True, help="Characters to generate.")
@_options(options(SamplingConfig))
@click.option("--num-samples", default=1, show_default=True, help="Samples drawn in one batch.")
def generate(run_dir, prime, length, num_samples, **settings) -> None:
    """Generate text from the best checkpoint in RUN_DIR; the text streams to stdout."""
    from charlstm.rundir import RunDir  # noqa: PLC0415

    sampling = SamplingConfig(**{k: v for k, v in settings.items() if v is not None})
    run = RunDir.open(Path(run_dir))  # needs no TensorFlow: a bad run is refused at once
    _import_tensorflow()
    from charlstm.sample import Sampler  # noqa: PLC0415 (slow import)

    sampler = Sampler(run.load_model(), run.tokenizer)
    if num_samples == 1:
        pieces = sampler.generate(prime, length, sampling)
        # the generator checks its arguments when first asked for a piece: ask before printing
        # the prime, so that a refused --length leaves stdout empty
        click.echo(prime + next(pieces), nl=False)
        for piece in pieces:
            click.echo(piece, nl=False)
        click.echo()
        return
    samples = [
        "".join(parts) for parts in zip(*sampler.generate(prime, length, sampling, num_samples))
    ]
    for i, sample in enumerate(samples):
        click.echo(f"--- sample {i + 1} ---", err=True)
        click.echo(prime + sample)


@cli.command()
@click.argument("run_dir")
@click.argument("text_file")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_options(run_options("encoding", "errors"))
@click.option(
    "--dynamic",
    is_flag=True,
    help="Also score the text while adapting the weights to it (dynamic evaluation), and "
    "print the static and the dynamic loss; the run directory is not changed.",
)
@_options(options(DynamicConfig))
@_options(run_options("precision"))
def evaluate(run_dir, text_file, as_json, encoding, errors, dynamic, precision, **settings) -> None:
    """Loss of RUN_DIR's best checkpoint on TEXT_FILE (or a corpus name): nats/char,
    bits/char, perplexity.

    With --dynamic the text is read as one stream, each window scored and then learned from,
    beside the static loss of the same layout.
    """
    from charlstm.corpus import load_corpus  # noqa: PLC0415
    from charlstm.rundir import RunDir  # noqa: PLC0415

    dynamic_names = [o.name for o in options(DynamicConfig)]
    given = {k: settings[k] for k in dynamic_names if settings[k] is not None}
    if given and not dynamic:
        names = ", ".join(f"--{name.replace('_', '-')}" for name in given)
        raise click.UsageError(f"{names}: dynamic evaluation's settings; add --dynamic")
    dynamic_config = DynamicConfig(**given)  # a non-finite value is refused before the import
    # neither needs TensorFlow: a bad run or text is refused at once
    run = RunDir.open(Path(run_dir))
    text = load_corpus(text_file, encoding or "utf-8", errors or "strict").text
    _import_tensorflow()
    from charlstm.evaluate import (  # noqa: PLC0415 (slow import)
        dynamic_evaluate,
        eval_windows,
        evaluate_windows,
    )
    from charlstm.precision import resolve  # noqa: PLC0415

    dtype = resolve(precision or "auto", run.config.model.cell)
    ids = run.tokenizer.encode(text)
    head = {"run_dir": str(run_dir), "text_file": text_file, "precision": dtype}
    if not dynamic:
        windows = eval_windows(ids, run.config.train.batch_size, run.config.train.seq_len)
        loss = evaluate_windows(run.load_model(matmul_dtype=dtype), windows)
        click.echo(json.dumps({**head, **loss.as_dict()}) if as_json else _loss_line(loss))
        return
    # one stream: each window is predicted by weights that have read only the text before it
    windows = eval_windows(ids, 1, run.config.train.seq_len)
    # a fresh copy in memory: dynamic evaluation changes its weights
    model = run.load_model(matmul_dtype=dtype)
    static = evaluate_windows(model, windows)
    adapted = dynamic_evaluate(model, windows, dynamic_config)
    if as_json:
        click.echo(
            json.dumps(
                {
                    **head,
                    **dataclasses.asdict(dynamic_config),
                    "static": static.as_dict(),
                    "dynamic": adapted.as_dict(),
                }
            )
        )
    else:
        click.echo(f"static   {_loss_line(static)}")
        click.echo(f"dynamic  {_loss_line(adapted)}")


def _loss_line(loss) -> str:
    return (
        f"{loss.nats:.4f} nats/char  {loss.bits:.4f} bits/char  "
        f"perplexity {loss.perplexity:.3f}  ({loss.chars:,} characters)"
    )


@cli.command()
@click.argument("run_dir")
def info(run_dir) -> None:
    """Describe RUN_DIR: config, vocabulary, checkpoints, last log line."""
    from charlstm.rundir import RunDir  # noqa: PLC0415

    run = RunDir.open(Path(run_dir))  # needs no TensorFlow: a bad run is refused at once
    _import_tensorflow()
    from charlstm.model import build_model, check_fits  # noqa: PLC0415 (slow import)

    checkpoints = run.checkpoints()
    records = run.read_log()
    c = run.config
    check_fits(c.model)  # the count comes from the model itself, built only if it fits
    params = build_model(c.model).count_params()
    lines = [
        f"run: {run.path}",
        f"corpus: {c.corpus}",
        *c.describe(),
        f"parameters: {params:,}",
        "checkpoints: " + (", ".join(str(k.step) for k in checkpoints) or "none"),
    ]
    if checkpoints:
        p = checkpoints[-1].progress
        best = p.get("best_val")
        lines.append(
            f"best validation loss: {best:.4f} nats/char at step {p.get('best_step')}"
            if best is not None
            else "best validation loss: n/a"
        )
    if records:
        r = records[-1]
        lines.append(
            f"last evaluation: step {r['step']}, val {r['val_loss']:.4f} nats/char, "
            f"{r['elapsed_s']:.0f}s of training"
        )
    click.echo("\n".join(lines))


@cli.group()
def corpus() -> None:
    """The corpora charlstm knows by name, and what is in a text."""


@corpus.command("list")
def corpus_list() -> None:
    """Name, size, where it is and licence of every catalogued corpus."""
    from charlstm.corpus import catalogue, corpus_path  # noqa: PLC0415

    for entry in catalogue():
        path = corpus_path(entry["name"])
        size = f"{entry['bytes']:,} bytes" if entry["bytes"] else "built on the fly"
        where = str(path) if path is not None else entry["source"]
        click.echo(f"{entry['name']}\t{size}\t{where}\t{entry['licence']}")


@corpus.command("info")
@click.argument("name_or_path")
@_options(run_options("encoding", "errors"))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def corpus_info(name_or_path, encoding, errors, as_json) -> None:
    """Characters, distinct characters, the most common ones, lines, and two reference points
    for a model's bits/char: the unigram entropy and lzma's compressed size."""
    from charlstm.corpus import load_corpus, text_stats  # noqa: PLC0415

    text = load_corpus(name_or_path, encoding or "utf-8", errors or "strict").text
    stats = text_stats(text)
    if as_json:
        click.echo(json.dumps({"corpus": name_or_path, **dataclasses.asdict(stats)}))
        return
    common = ", ".join(f"{ch!r} {n / stats.chars:.1%}" for ch, n in stats.most_common)
    click.echo(
        "\n".join(
            [
                f"corpus: {name_or_path}",
                f"characters: {stats.chars:,} ({stats.distinct} distinct), lines: {stats.lines:,}",
                f"most common: {common}",
                f"unigram entropy: {stats.unigram_bits:.3f} bits/char "
                "(a model that ignores context scores this at best)",
                f"lzma (preset 9e): {stats.lzma_bits:.3f} bits/char",
            ]
        )
    )
