"""TensorFlow's start-up notes kept off the screen, for a process that asks for it.

TensorFlow 2.21 writes notes to file descriptor 2 while it is imported, before its own log
settings apply ("WARNING: All log messages before absl::InitializeLog() is called ...", "oneDNN
custom operations are on ..."): in a terminal, and in a notebook, whose kernel shows what is
written to its descriptor 2. `install()` (`charlstm.api.quiet_tensorflow`; the `charlstm`
command calls it before any command runs; a notebook may call it in its first cell) arranges
that the first import of tensorflow (by charlstm or anything else) runs with descriptor 2 on
/dev/null (with its first look for devices, where a CUDA build without a GPU driver logs an
error), and sets TF_CPP_MIN_LOG_LEVEL to 2 (errors only) for what TensorFlow logs later, 3
(fatal only) in a worker of a cluster (TF_CONFIG set).

The user's choice wins: with TF_CPP_MIN_LOG_LEVEL set to 0 or 1 beforehand, nothing is hidden.
An import that fails still raises its exception, printed as usual once descriptor 2 is back. A
TensorFlow imported before `install()` has already printed its notes.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` through the other finders, and loads it with fd 2 on /dev/null."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the real finders take it from here
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _Silenced(spec.loader)
        return spec


class _Silenced(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with silenced_stderr():
            self.loader.exec_module(module)
            # a CUDA build on a machine without a working driver logs "failed call to cuInit" as
            # an error when it first looks for devices: it looks now (listing the physical
            # devices neither starts the runtime nor fixes its configuration), and
            # `precision.describe_device` says in words when a GPU is here but unusable
            module.config.list_physical_devices()

    def __getattr__(self, name):  # the rest of the loader's interface (get_resource_reader, ...)
        return getattr(self.loader, name)


class silenced_stderr:  # noqa: N801 (used as a context manager, like contextlib's)
    """File descriptor 2 on /dev/null inside the block; Python's sys.stderr is flushed first."""

    saved: int | None = None

    def __enter__(self):
        sys.stderr.flush()
        try:
            self.saved = os.dup(2)
        except OSError:  # no descriptor 2 (a detached process): nothing to hide
            self.saved = None
            return self
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            os.dup2(self.saved, 2)
            os.close(self.saved)


def install() -> None:
    """Hide TensorFlow's import-time notes (module docstring), unless the user asked for logs
    or TensorFlow is already imported."""
    # a worker of a cluster (TF_CONFIG set): TensorFlow logs every failed call to a lost peer
    # as an error; charlstm says what failed in one line (charlstm.distribute)
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if "TF_CONFIG" in os.environ else "2")
    if level in ("0", "1") or "tensorflow" in sys.modules:
        return
    if not any(isinstance(finder, _QuietImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())
