"""The `charlstm` command: train, generate, evaluate, info, plot, export, serve, corpus.

A command parses its options, calls `charlstm.api` and presents what comes back; the defaults,
the checks and the work are the API's and `charlstm.config`'s.

stdout carries only the product (generated text, info, evaluate's numbers); progress, logs and
errors go to stderr. A user mistake is one line, "Error: ...", and exit status 1; a usage
mistake (unknown option, bad number) is one line and status 2; Ctrl-C is one line and status 130;
a reader that closes stdout early (`charlstm generate RUN | head`) ends the command quietly with
status 141, as a process killed by SIGPIPE would. TensorFlow is imported inside the commands so
that `--help` stays fast, without its start-up notes (`charlstm.quiet`; TF_CPP_MIN_LOG_LEVEL=0
shows them).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import sys
from typing import Any

import click

from charlstm import api
from charlstm.config import (
    GENERATE_LENGTH,
    DynamicConfig,
    InferenceConfig,
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


class _UsageException(click.ClickException):
    """A usage mistake as one line, with exit status 2."""

    exit_code = EXIT_USAGE


def _one_line_usage_error(err: click.UsageError) -> click.ClickException:
    where = err.ctx.command_path if err.ctx else "charlstm"
    return _UsageException(f"{err.format_message()} (see '{where} --help')")


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
    api.quiet_tensorflow()  # before any command imports TensorFlow
    _setup_logging(verbose)


class _Setting(click.Option):
    """The option of a config field; `declared` is the field's declaration (config.Option)."""

    def __init__(self, *args, declared: Option, **kwargs):
        super().__init__(*args, **kwargs)
        self.declared = declared


class _Declared:
    """A click type for a config field that refuses what the field does not take in config's
    words (`Option.check`, the library's own); `plain` parses the value first (click's int or
    float), so what is not a number at all is refused in click's."""

    declared: Option
    plain: click.ParamType | None = None

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)  # type: ignore[misc]
        except click.BadParameter:
            parsed = self.plain.convert(value, param, ctx) if self.plain else value
            try:
                self.declared.check(parsed)
            except CharlstmError as err:
                self.fail(str(err), param, ctx)  # type: ignore[attr-defined]
            raise


class _Choice(_Declared, click.Choice):
    """The choices a field declares."""

    def __init__(self, declared: Option):
        super().__init__(declared.choices)
        self.declared = declared


class _Range(_Declared):
    """The range a number field declares."""

    def __init__(self, declared: Option):
        r = declared.range
        assert r is not None
        super().__init__(r.min, r.max, min_open=r.min_open, max_open=r.max_open)  # type: ignore[call-arg]
        self.declared = declared


class _IntRange(_Range, click.IntRange):
    plain = click.INT


class _FloatRange(_Range, click.FloatRange):
    plain = click.FLOAT


def _options(declared: list[Option]):
    """click options for config fields, from what their `setting` declares: the help, the range
    or choices (refused in config's words); the defaults stay in the dataclass."""

    def decorate(func):
        for option in reversed(declared):
            kind: object = option.type
            if option.choices:
                kind = _Choice(option)
            elif option.range is not None:
                kind = {int: _IntRange, float: _FloatRange}[option.type](option)
            default = "none" if option.default is None else option.default
            flag = f"--{option.name.replace('_', '-')}"
            if option.type is bool:  # --name / --no-name
                flag, kind = f"{flag}/--no-{flag[2:]}", None
                default = "on" if option.default else "off"
            func = click.option(
                flag,
                option.name,
                cls=_Setting,
                declared=option,
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
@click.option(
    "--config",
    "config_file",
    default=None,
    help="Options from a JSON or TOML file (flat names such as units = 512, or a run's "
    "config.json, which repeats that run); options given on the command line win.",
)
@_options(options(RunConfig))
def train(corpus, out, resume, force, config_file, **settings) -> None:
    """Train on CORPUS: a UTF-8 text file, a folder or a quoted glob pattern ('texts/*.md') of
    them, or a corpus name (tinyshakespeare, python-stdlib; `charlstm corpus list`).

    Without CORPUS it trains on tinyshakespeare, which ships with charlstm. The files of a
    folder or pattern are read in sorted order; one that is not text is skipped with a
    warning. Progress goes to stderr; the run directory gets config.json, tokenizer.json,
    log.jsonl and checkpoints/.
    """
    plan = api.plan_training(
        corpus, out, resume=resume, force=force, config_file=config_file, **settings
    )
    # TensorFlow is imported once the options are known to be good (a few seconds)
    interrupted = api.TrainingInterrupted
    progress = _Progress()
    encoding: dict[str, _ByteBar] = {}  # a large file's hashing and encoding

    def callback(event) -> None:
        if isinstance(event, api.StartEvent):
            if not plan.corpus_named and event.resumed_step is None:
                click.echo(
                    f"no CORPUS given: training on {api.DEFAULT_CORPUS}, which ships with charlstm",
                    err=True,
                )
            click.echo(f"corpus: {event.corpus}", err=True)
            resumed = f", resuming at step {event.resumed_step}" if event.resumed_step else ""
            click.echo(
                f"run directory: {event.run_dir} ({event.parameters:,} parameters{resumed})",
                err=True,
            )
            click.echo("\n".join(event.config.describe()), err=True)
            click.echo(
                api.explain_precision(event.config.precision, event.config.model.cell), err=True
            )
            click.echo(event.kernel, err=True)
            click.echo(f"device: {event.device}", err=True)
        elif isinstance(event, api.EncodeEvent):
            verb = "hashing" if event.phase == "hash" else "encoding"
            bar = encoding.setdefault(event.phase, _ByteBar(f"{verb} {plan.corpus}"))
            bar(event.done, event.total)
            if event.done >= event.total:
                bar.close()
        elif isinstance(event, api.StepEvent):
            progress.step(event)
        elif isinstance(event, api.EvalEvent):
            progress.evaluation(event)

    try:
        result = plan.run(callback)
    except KeyboardInterrupt as err:
        progress.close()
        if isinstance(err, interrupted):
            saved = f"at step {err.step}, checkpoint saved"
        else:
            saved = "the last complete checkpoint is kept"
        click.echo(
            f"interrupted: {saved}; continue with: charlstm train --out {plan.out} --resume",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    progress.close()
    best = f"{result.best_val:.4f} nats/char" if result.best_val is not None else "n/a"
    click.echo(
        f"done ({result.stopped_by}): step {result.step}, best validation loss {best}; "
        f"generate with: charlstm generate {result.run_dir}",
        err=True,
    )


class _Progress:
    """Training progress on stderr: on a terminal a tqdm bar of the budget used (StepEvent's
    budget: the larger share of the epochs' steps and of the minutes, as the schedule counts
    it) with its ETA, loss and chars/s; validation lines always, above the bar."""

    def __init__(self) -> None:
        self.live = sys.stderr.isatty()
        self.bar: Any = None

    def step(self, e) -> None:
        if not self.live:
            return
        if self.bar is None:
            from tqdm import tqdm  # noqa: PLC0415

            self.bar = tqdm(total=1000, file=sys.stderr, bar_format="{l_bar}{bar}| "
                            "{elapsed}<{remaining} {postfix}", desc="training")  # fmt: skip
        done = min(int(1000 * e.budget), 1000)
        self.bar.set_postfix_str(
            f"epoch {e.epoch + 1} step {e.step} loss {e.loss:.4f} {e.chars_per_sec:,.0f} chars/s",
            refresh=False,
        )
        self.bar.update(done - self.bar.n)

    def evaluation(self, e) -> None:
        r = e.record
        train_loss = f"{r.train_loss:.4f}" if r.train_loss is not None else "n/a"
        lines = [
            f"step {r.step} epoch {r.epoch}: train {train_loss} val {r.val_loss:.4f} "
            f"nats/char ({r.val_bits_per_char:.3f} bits){' best' if e.is_best else ''}"
        ]
        if r.sample is not None:  # indented, so the text stands apart from the numbers
            lines += ["    " + line for line in r.sample.split("\n")]
        if self.bar is not None:
            self.bar.write("\n".join(lines), file=sys.stderr)
        else:
            click.echo("\n".join(lines), err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@cli.command()
@click.argument("run_dir")
@click.option("--format", "fmt", type=click.Choice(["savedmodel", "tflite", "keras", "web"]),
              required=True, help="savedmodel: generate(prime, settings) -> text and one step, "
              "for any TensorFlow runtime; tflite: one step (ids, states -> logits, states); "
              "keras: a .keras file; web: one HTML page that generates in any browser, "
              "offline.")  # fmt: skip
@click.option("--out", required=True,
              help="The folder to create (web: the .html file); it must not exist.")  # fmt: skip
def export(run_dir, fmt, out) -> None:
    """Write RUN_DIR's best model where charlstm is not needed to run it; print its path."""
    click.echo(str(api.export(run_dir, fmt, out)))


def _converse(lm: api.LanguageModel, conversation, length: int) -> None:
    """The --interactive loop: a prompt on stderr, a line from stdin, the reply on stdout."""
    lm.check_request(length)  # a bad --length is refused before the prompt
    while True:
        click.echo("> ", err=True, nl=False)
        line = sys.stdin.readline()
        if not line:  # Ctrl-D (end of input)
            click.echo(err=True)
            return
        for piece in conversation.reply(line.rstrip("\n") + "\n", length):
            click.echo(piece, nl=False)
        click.echo()


@cli.command()
@click.argument("run_dir")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 opens it to the network.")  # fmt: skip
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@_options(options(InferenceConfig))
def serve(run_dir, host, port, precision, kernel) -> None:
    """Play with RUN_DIR's model in the browser: a page to generate from (prime, length,
    temperature, top-k, top-p, seed; the text streams in) and its JSON API (POST /generate,
    POST /generate/stream, GET /info). Ctrl-C stops it."""
    api.check_run(run_dir)  # a bad run is refused before anything loads
    # the other face, the page and its JSON API: it imports only the API, as this one does
    from charlstm.serve import serve as serve_run  # noqa: PLC0415

    click.echo(f"serving {run_dir} on http://{host}:{port}/ (Ctrl-C stops)", err=True)
    serve_run(run_dir, host, port, precision, kernel)


@cli.command()
@click.argument("run_dir")
@click.option("--out", "out", default=None, help="The PNG to write [default: RUN_DIR/curves.png].")
def plot(run_dir, out) -> None:
    """Draw RUN_DIR's learning curves (training and validation loss, bits/char, against step)
    into a PNG, and print its path."""
    click.echo(str(api.plot(run_dir, out)))


@cli.command()
@click.argument("run_dir")
@click.option("--prime", default="", help="Text to start from (printed first).")
@click.option(
    "--length", default=GENERATE_LENGTH, show_default=True, help="Characters to generate."
)
@_options(options(SamplingConfig))
@click.option("--num-samples", default=1, show_default=True, help="Samples drawn in one batch.")
@click.option(
    "--stop",
    multiple=True,
    help="End each sample just after the first time it draws this text (kept; repeatable: "
    "the first of several). Not looked for in the prime.",
)
@click.option(
    "--interactive",
    is_flag=True,
    help="Read a prime per line from the terminal and answer each with --length characters; "
    "Ctrl-D ends.",
)
@_options(options(InferenceConfig))
@click.option(
    "--keep-state",
    is_flag=True,
    help="With --interactive: each line continues the text so far instead of starting afresh.",
)
def generate(
    run_dir, prime, length, num_samples, stop, interactive, precision, kernel, keep_state,
    **settings,
) -> None:  # fmt: skip
    """Generate text from the best checkpoint in RUN_DIR; the text streams to stdout."""
    # a non-finite value is refused before TensorFlow loads
    sampling = api.sampling_config(**settings)
    if keep_state and not interactive:
        raise click.UsageError("--keep-state is for --interactive")
    if interactive and (num_samples != 1 or prime or stop):
        raise click.UsageError(
            "--interactive reads its primes from the terminal, one sample, no --stop"
        )
    lm = api.load(run_dir, precision, kernel)  # a bad run is refused before TensorFlow loads
    given = dataclasses.asdict(sampling)
    if interactive:
        _converse(lm, lm.conversation(keep_state, **given), length)
        return
    if num_samples == 1:
        pieces = lm.stream(prime, length, stop=stop, **given)
        # the generator checks its arguments when first asked for a piece: ask before printing
        # the prime, so that a refused --length leaves stdout empty
        click.echo(prime + next(pieces), nl=False)
        for piece in pieces:
            click.echo(piece, nl=False)
        click.echo()
        return
    for i, sample in enumerate(lm.generate(prime, length, num_samples, stop, **given)):
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
@_options(options(DynamicConfig) + options(InferenceConfig))
@click.option(
    "--streams",
    type=click.IntRange(min=1),
    default=None,
    help="read the text as this many parallel streams, each from zero state [default: the "
    "run's batch size]; more streams start cold more often and score a little higher",
)
def evaluate(
    run_dir, text_file, as_json, encoding, errors, dynamic, precision, kernel, streams,
    **settings,
) -> None:  # fmt: skip
    """Loss of RUN_DIR's best checkpoint on TEXT_FILE (or a corpus name): nats/char,
    bits/char, perplexity.

    With --dynamic the text is read as one stream, each window scored and then learned from,
    beside the static loss of the same layout.
    """
    if streams is not None and dynamic:
        raise click.UsageError("--streams: dynamic evaluation reads the text as one stream")
    given = {k: v for k, v in settings.items() if v is not None}
    if given and not dynamic:
        names = ", ".join(f"--{name.replace('_', '-')}" for name in given)
        raise click.UsageError(f"{names}: dynamic evaluation's settings; add --dynamic")
    found = api.evaluate(
        run_dir, text_file, dynamic=dynamic, encoding=encoding, errors=errors,
        precision=precision, kernel=kernel, streams=streams, **given,
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps(found.to_dict()))
    elif found.dynamic is None:
        click.echo(_loss_line(found.static))
    else:
        click.echo(f"static   {_loss_line(found.static)}")
        click.echo(f"dynamic  {_loss_line(found.dynamic)}")


def _loss_line(loss) -> str:
    return (
        f"{loss.nats:.4f} nats/char  {loss.bits:.4f} bits/char  "
        f"perplexity {loss.perplexity:.3f}  ({loss.chars:,} characters)"
    )


@cli.command()
@click.argument("run_dir")
def info(run_dir) -> None:
    """Describe RUN_DIR: config, vocabulary, checkpoints, last log line."""
    i = api.info(run_dir)  # a bad run is refused before TensorFlow loads
    size = i.corpus_bytes
    lines = [
        f"run: {i.run}",
        f"corpus: {i.corpus} ({f'{size:,} bytes' if size else 'not found here'})",
        *i.config,
        f"parameters: {i.parameters:,}, vocabulary: {i.vocab_size} characters",
        "checkpoints: " + (", ".join(map(str, i.checkpoints)) or "none"),
    ]
    if i.checkpoints:
        lines.append(
            f"best validation loss: {i.best_val:.4f} nats/char at step {i.best_step}"
            if i.best_val is not None
            else "best validation loss: n/a"
        )
    if i.last:
        lines.append(
            f"last evaluation: step {i.last.step}, val {i.last.val_loss:.4f} nats/char, "
            f"{i.last.elapsed_s:.0f}s of training"
        )
    lines.append(f"software: TensorFlow {i.tensorflow}, Keras {i.keras}")
    lines.append(f"training here: {i.kernel}")
    lines.append(f"device here: {i.device}")
    click.echo("\n".join(lines))


@cli.group()
def corpus() -> None:
    """The corpora charlstm knows by name, and what is in a text."""


@corpus.command("list")
def corpus_list() -> None:
    """Name, size, where it is and licence of every catalogued corpus."""
    for entry in api.corpus_list():
        if entry.url is not None:
            size = f"{entry.bytes:,} bytes to download" if entry.bytes else "to download"
            where = str(entry.path) if entry.path is not None else f"not fetched ({entry.url})"
        else:
            size = f"{entry.bytes:,} bytes" if entry.bytes else "built on the fly"
            where = str(entry.path) if entry.path is not None else entry.source
        click.echo(f"{entry.name}\t{size}\t{where}\t{entry.licence}")


@corpus.command("fetch")
@click.argument("name_or_url")
@click.option("--sha256", default=None, help="For a URL: the SHA-256 the file must have.")
def corpus_fetch(name_or_url, sha256) -> None:
    """Download a catalogued corpus (`charlstm corpus list`), or the file at a URL, into the
    cache folder ($CHARLSTM_DATA, else the user's cache folder), check its size and SHA-256
    where known, and print the path of its text. A cut download resumes where it stopped, in
    this call or the next; a file already there is not downloaded again."""
    if sha256 is not None and not api.is_url(name_or_url):
        raise click.UsageError("--sha256 is for a URL; the catalogue has the corpus' own")
    with _ByteBar(f"downloading {name_or_url}") as bar:
        got = api.corpus_fetch(name_or_url, sha256, progress=bar)
    if not got.fetched:
        click.echo(f"{name_or_url}: already in the cache", err=True)
    click.echo(str(got.path))


@corpus.group("make")
def corpus_make() -> None:
    """Write a text of known entropy (charlstm.sources): its entropy rate is the best loss any
    model can reach on it, a floor to measure learning against."""


def _source_command(name: str, make) -> None:
    """`charlstm corpus make NAME --out FILE`, with an option for each argument of `make`."""
    params = inspect.signature(make).parameters.values()
    doc = inspect.getdoc(make)

    def command(out, force, as_json, **settings):
        made = api.make_text(name, out, force=force, **settings)
        if as_json:
            click.echo(json.dumps(made.to_dict()))
            return
        click.echo(
            f"{made.source}: {made.chars:,} characters in {made.path}\n"
            f"entropy rate: {made.rate_bits:.4f} bits/char ({made.rate_nats:.4f} nats/char)\n"
            f"the process' own loss on this text: {made.text_bits:.4f} bits/char"
        )

    for param in reversed(list(params)):
        flag = param.name.replace("_", "-")
        if isinstance(param.default, bool):  # a switch: --quotes / --no-quotes
            option = click.option(f"--{flag}/--no-{flag}", default=param.default,
                                  show_default=True)  # fmt: skip
        else:
            option = click.option(f"--{flag}", type=type(param.default), default=param.default,
                                  show_default=True)  # fmt: skip
        command = option(command)
    command = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(
        command
    )
    command = click.option("--force", is_flag=True, help="Replace the --out file if it exists.")(
        command
    )
    command = click.option("--out", required=True, help="The text file to write.")(command)
    corpus_make.command(name, help=doc)(command)


for _name, _make in api.SOURCES.items():
    _source_command(_name, _make)


class _ByteBar:
    """A tqdm progress bar of bytes on stderr, called with (done, total) as `download` and
    `encode_file` report progress; on a stderr that is not a terminal, one line when the work
    starts instead."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None  # a tqdm bar once the first report comes

    def __call__(self, done: int, total: int | None) -> None:
        if self.bar is None:
            from tqdm import tqdm  # noqa: PLC0415

            if not sys.stderr.isatty():
                size = f"{total:,} bytes" if total else "size not given"
                click.echo(f"{self.label} ({size})", err=True)
            self.bar = tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=self.label,
                file=sys.stderr, disable=not sys.stderr.isatty(),
            )  # fmt: skip
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@corpus.command("info")
@click.argument("name_or_path")
@_options(run_options("encoding", "errors"))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def corpus_info(name_or_path, encoding, errors, as_json) -> None:
    """Characters, distinct characters, the most common ones, lines, and two reference points
    for a model's bits/char: the unigram entropy and lzma's compressed size."""
    stats = api.corpus_info(name_or_path, encoding, errors)
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
