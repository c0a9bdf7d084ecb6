"""charlstm: character-level LSTM language models on Keras 3.

The data flows one way:
text -> tokenizer -> TBPTT batches -> model -> checkpoint -> sampler -> text.
Importing this package stays cheap and changes nothing in the process: TensorFlow loads only
with the modules that need it. `charlstm.api.quiet_tensorflow()` keeps its start-up notes off
the screen where that is wanted (the `charlstm` command calls it).

    import charlstm
    lm = charlstm.train("tinyshakespeare", "runs/demo", minutes=1)
    lm = charlstm.load("runs/demo")
    print(lm.generate("ROMEO:", 200, seed=1))

(`charlstm.api`; the training loop itself is `charlstm.trainer`.)
"""

__version__ = "0.1.0"


def load(run_dir, precision: str | None = None, kernel: str | None = None):
    """`charlstm.api.load`: the run in `run_dir`, loaded, as a LanguageModel; `precision` of
    the products (None: float32, `charlstm.config.InferenceConfig`), `kernel` of the loops
    (None: auto, `charlstm.kernel.choose`)."""
    from charlstm.api import load as _load  # noqa: PLC0415 (imports TensorFlow)

    return _load(run_dir, precision, kernel)


def train(text_or_path=None, out=None, **options):
    """`charlstm.api.train`: train on a corpus (a path, a name or the text) into `out` (None:
    runs/<corpus>), or resume the run there (resume=True), and return the loaded
    LanguageModel."""
    from charlstm.api import train as _train  # noqa: PLC0415 (imports TensorFlow)

    return _train(text_or_path, out, **options)
