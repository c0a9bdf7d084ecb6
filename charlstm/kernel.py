"""The compiled LSTM kernel: kernels/lstm.cc built on first use, loaded once, never required.

`charlstm/kernels/lstm.cc` holds two TensorFlow ops for the CPU, the forward and backward
loops of `charlstm.fused` with each step's recurrent product through MKL's cblas_sgemm (or
in bfloat16: MKL's, or the file's own AVX512-BF16 product on a CPU without AMX). They
are compiled with the system's C++ compiler (`$CXX`, else g++) against the installed
TensorFlow's headers and the MKL of the Python environment (`pip install mkl mkl-include`,
which setup.cfg installs on x86_64) into the user's cache folder (kernels/ in
`~/.cache/charlstm` on Linux, as platformdirs names it; not $CHARLSTM_DATA, which is for
texts), under a name made of the TensorFlow version, the source's SHA-256, the compiler
flags and the CPU's flags. The first use builds it (about ten seconds, one log line); every
later one loads the file. Two processes building at once take turns on a lock; the second
finds the first's file.

Where it cannot be built or loaded (no compiler, no MKL, another CPU architecture or system,
TensorFlow without headers) `load()` says why, and the layers run the XLA loops instead, with
the same equations.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import glob
import hashlib
import logging
import os
import platform
import shutil
import site
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from charlstm.config import KERNELS
from charlstm.errors import CharlstmError

log = logging.getLogger(__name__)

SOURCES = [Path(__file__).with_name("kernels") / name for name in ("lstm.cc", "generate.cc")]
# included by the sources: part of the cache key, not compiled on their own
HEADERS = [Path(__file__).with_name("kernels") / "bf16.h"]
_FLAGS = ["-shared", "-fPIC", "-O3", "-march=native", "-w"]


@dataclass(frozen=True)
class Loaded:
    """The compiled kernel's ops (`charlstm_lstm_forward`, `charlstm_lstm_backward`) and file,
    or why there are none (`ops` None, `reason` set)."""

    ops: Any | None
    path: Path | None
    reason: str


@functools.cache
def load() -> Loaded:
    """The compiled kernel, built first if it is not in the cache; once per process."""
    try:
        path = _build()
        import tensorflow as tf  # noqa: PLC0415

        return Loaded(tf.load_op_library(str(path)), path, "")
    except CharlstmError as err:
        return Loaded(None, None, str(err))
    except (OSError, RuntimeError, ValueError) as err:  # tf.load_op_library's refusals
        return Loaded(None, None, f"the built kernel does not load ({err})")


def ops() -> Any:
    """The compiled kernel's ops (`load`).

    Raises:
        CharlstmError: it cannot be built or loaded here, and why.
    """
    loaded = load()
    if loaded.ops is None:
        raise CharlstmError(f"the compiled kernel cannot run: {loaded.reason}")
    return loaded.ops


# auto takes the compiled kernel for float32 products in layers of at most this many units: at
# 2 x 256 it trained 1.14 x as fast as the XLA step, at 2 x 512 0.98 x (AMD EPYC Zen 3, 2 cores,
# docs/results.md). With bfloat16 products on a CPU with bfloat16 instructions it takes it at
# every size: 1.66 x the XLA loops at 2 x 256 and 1.60 x at 2 x 512 (AMD EPYC Zen 4).
AUTO_MAX_UNITS = 256


def choose(
    kernel: str, precision: str, cell: str = "lstm", units: int = 0, generation: bool = False,
    flags: frozenset[str] | None = None, members: int = 1,
) -> str:  # fmt: skip
    """ "compiled" or "xla" for a requested `kernel` (KERNELS), the resolved precision,
    ModelConfig.cell and ModelConfig.units; generation: for the sampling loop (the generation
    op) rather than the layers' window loops; flags: the CPU's (default: this one's); members:
    ModelConfig.members (the generation op draws from one model, so an ensemble's draws run in
    the XLA loop).

    auto: the compiled kernel where it loads, the cell is lstm, no GPU is in use, and either
    the products run in bfloat16 on a CPU with bfloat16 instructions (`precision.BF16_FLAGS`)
    or they run in float32 in layers of at most AUTO_MAX_UNITS units (window loops only: the
    generation op ran faster than XLA's loop at every size measured); otherwise the XLA loops,
    with one warning line when the kernel does not load. compiled: the compiled kernel (in
    float32 or bfloat16), or a CharlstmError saying why it cannot run.
    """
    if kernel not in KERNELS:
        raise CharlstmError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    if kernel == "xla":
        return "xla"
    import tensorflow as tf  # noqa: PLC0415

    from charlstm.precision import cpu_has_bf16  # noqa: PLC0415

    why, unbuilt = "", False
    if cell != "lstm":
        why = f"the compiled kernel runs the lstm cell only, not {cell}"
    elif generation and members > 1:
        why = f"the generation op draws from one model, not an ensemble of {members}"
    elif precision != "float32" and kernel == "auto" and not cpu_has_bf16(flags):
        why = "auto takes bfloat16 products to the compiled kernel only on a CPU that has them"
    elif kernel == "auto" and precision == "float32" and units > AUTO_MAX_UNITS and not generation:
        why = f"auto takes the XLA loops above {AUTO_MAX_UNITS} units (measured faster)"
    elif tf.config.list_physical_devices("GPU"):
        why = "a GPU runs the XLA/cuDNN loops"
    else:
        why = load().reason
        unbuilt = bool(why)
    if not why:
        return "compiled"
    if kernel == "compiled":
        raise CharlstmError(f"--kernel compiled cannot run: {why}")
    if unbuilt:
        _warn_unavailable(why)
    return "xla"


@functools.cache
def _warn_unavailable(why: str) -> None:
    """One warning line per process, however many loops fall back."""
    log.warning("compiled LSTM kernel unavailable (%s); running the XLA loops", why)


def describe(kernel: str) -> str:
    """One line saying which kernel a run uses, for the start of a command."""
    if kernel == "compiled":
        return f"kernel: compiled (MKL, {load().path})"
    return "kernel: xla"


def _build() -> Path:
    """The kernel's shared library in the cache, built if it is not there.

    Raises:
        CharlstmError: why it cannot be built here.
    """
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise CharlstmError(
            f"built for Linux on x86_64 only, not {sys.platform} {platform.machine()}"
        )
    compiler = shutil.which(os.environ.get("CXX") or "g++")
    if compiler is None:
        raise CharlstmError(f"no C++ compiler ({os.environ.get('CXX') or 'g++'}) on PATH")
    include, library = _mkl()
    import tensorflow as tf  # noqa: PLC0415

    tf_include = Path(tf.sysconfig.get_include())
    if not (tf_include / "tensorflow" / "core" / "framework" / "op.h").is_file():
        raise CharlstmError(f"TensorFlow {tf.__version__} has no C++ headers at {tf_include}")
    command = [compiler, *_FLAGS, *tf.sysconfig.get_compile_flags(), f"-I{include}",
               *map(str, SOURCES), *tf.sysconfig.get_link_flags(), str(library),
               f"-Wl,-rpath,{library.parent}"]  # fmt: skip
    key = hashlib.sha256(
        "\n".join(
            [
                *(source.read_text() for source in [*SOURCES, *HEADERS]),
                tf.__version__,
                *command[1:],
                _cpu_flags(),
            ]
        ).encode()
    ).hexdigest()[:16]
    import platformdirs  # noqa: PLC0415

    folder = Path(platformdirs.user_cache_dir("charlstm")) / "kernels"
    path = folder / f"lstm-{key}.so"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    with _locked(folder / f"lstm-{key}.lock"):
        if path.is_file():  # another process built it while this one waited
            return path
        started = time.monotonic()
        fd, part = tempfile.mkstemp(dir=folder, prefix=f".lstm-{key}.", suffix=".so")
        os.close(fd)
        try:
            done = subprocess.run([*command, "-o", part], capture_output=True, text=True,
                                  check=False)  # fmt: skip
            if done.returncode != 0:
                errors = [line for line in done.stderr.splitlines() if "error" in line]
                raise CharlstmError(
                    f"the compiler failed ({(errors or done.stderr.splitlines() or ['?'])[0]})"
                )
            os.replace(part, path)
        finally:
            Path(part).unlink(missing_ok=True)
        log.warning("built the compiled LSTM kernel in %.1f s (once): %s",
                    time.monotonic() - started, path)  # fmt: skip
    return path


def _mkl() -> tuple[Path, Path]:
    """MKL's include folder and cblas library where pip's mkl-include and mkl put them: under
    this environment's prefix, else the base Python's (a venv made with
    --system-site-packages) or the user's (pip install --user)."""
    prefixes = dict.fromkeys([sys.prefix, sys.base_prefix, site.getuserbase()])
    for prefix in map(Path, prefixes):
        libraries = sorted(glob.glob(str(prefix / "lib" / "libmkl_rt.so*")))
        if (prefix / "include" / "mkl_cblas.h").is_file() and libraries:
            return prefix / "include", Path(libraries[-1])
    raise CharlstmError(f"MKL is not installed in {sys.prefix} (pip install mkl mkl-include)")


def _cpu_flags() -> str:
    from charlstm.precision import cpu_flags  # noqa: PLC0415

    return " ".join(sorted(cpu_flags()))


@contextlib.contextmanager
def _locked(path: Path):
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
