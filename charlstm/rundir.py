"""The run directory: config, tokenizer, checkpoints of weights and training state, and the log.

    RUN_DIR/
      config.json                RunConfig, written when the run starts
      tokenizer.json             the CharTokenizer
      log.jsonl                  one JSON object per evaluation
      tensorboard/               TensorBoard event files (unless turned off)
      train.lock                 while a run trains: the writer's process id
      checkpoints/step-00001200/
        model.safetensors        model weights, named by variable path
        train_state.safetensors  optimizer variables, carried (h, c), dropout RNG state
        progress.json            step, epoch, window, best validation loss, elapsed time
        manifest.json            written last: SHA-256 of each file above

Every file is written to a temporary name in its folder, flushed, fsync'd and renamed over the
final name, so a crash leaves the old file or the new one, never half of one. A checkpoint
counts only once its manifest exists and every hash matches. Loading rebuilds the model from
our code and config.json, then assigns tensors after checking names, shapes and dtypes:
safetensors is a bounded JSON header plus raw buffers, so no file here can run code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors
import safetensors.numpy

from charlstm.config import RunConfig
from charlstm.errors import CharlstmError
from charlstm.records import LogRecord, Progress
from charlstm.tokenizer import CharTokenizer

CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
LOG = "log.jsonl"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
MODEL = "model.safetensors"
TRAIN_STATE = "train_state.safetensors"
PROGRESS = "progress.json"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "charlstm-checkpoint/1"
# what a manifest names and hashes: exactly these files of its own folder, nothing else
HASHED = (MODEL, TRAIN_STATE, PROGRESS)
LOCK = "train.lock"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves either the old file or the new one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tensors_to_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    # np.ascontiguousarray would turn 0-d arrays (the step counter) into shape (1,)
    return safetensors.numpy.save({k: np.require(v, requirements="C") for k, v in tensors.items()})


def read_tensors(path: Path) -> dict[str, np.ndarray]:
    """Read a safetensors file; a malformed one raises CharlstmError naming it."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise CharlstmError(f"{path}: cannot read ({err.strerror})") from err
    return tensors_from_bytes(data, str(path))


def tensors_from_bytes(data: bytes, source: str) -> dict[str, np.ndarray]:
    """A safetensors file's bytes as tensors; malformed ones raise CharlstmError naming
    `source`."""
    try:
        return safetensors.numpy.load(data)
    except Exception as err:  # safetensors reports a bad header as its own error type
        raise CharlstmError(f"{source}: not a valid safetensors file ({err})") from err


def variables_by_path(variables) -> dict:
    """{variable.path: variable}: the names a model's weights are saved under."""
    return {v.path: v for v in variables}


# safetensors' dtype names, for reading a header without reading the tensors
_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64",
           "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64", "U8": "uint8",
           "BOOL": "bool"}  # fmt: skip

Layout = dict[str, tuple[str, tuple[int, ...]]]  # tensor name -> (dtype name, shape)


def read_layout(path: Path) -> Layout:
    """Names, dtypes and shapes of a safetensors file's tensors, from its header alone."""
    try:
        with safetensors.safe_open(str(path), framework="numpy") as f:
            return {
                name: (_DTYPES.get(f.get_slice(name).get_dtype(), "?"),
                       tuple(f.get_slice(name).get_shape()))
                for name in f.keys()
            }  # fmt: skip
    except OSError as err:
        raise CharlstmError(f"{path}: cannot read ({err.strerror})") from err
    except Exception as err:  # safetensors reports a bad header as its own error type
        raise CharlstmError(f"{path}: not a valid safetensors file ({err})") from err


def check_layout(found: Layout, needed: Layout, source: str) -> None:
    """Refuse tensors that are not exactly the ones needed: names, dtypes and shapes.

    Raises:
        CharlstmError: a name missing or extra, or a shape or dtype differing.
    """
    missing, extra = sorted(set(needed) - set(found)), sorted(set(found) - set(needed))
    if missing or extra:
        raise CharlstmError(
            f"{source} does not match the model: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    for name, (dtype, shape) in needed.items():
        if found[name] != (dtype, shape):
            raise CharlstmError(
                f"{source}: tensor {name} is {found[name][0]}{list(found[name][1])}, "
                f"the model needs {dtype}{list(shape)}"
            )


def assign_tensors(by_path: dict, tensors: dict[str, np.ndarray], source: str) -> None:
    """Assign tensors to the variables of the same name, after checking they match exactly.

    Args:
        by_path: name -> Keras variable.
        tensors: name -> array, e.g. read from a safetensors file.
        source: where the tensors came from, for messages.

    Raises:
        CharlstmError: a name missing or extra, or a shape or dtype differing.
    """
    check_layout(
        {name: (str(t.dtype), tuple(t.shape)) for name, t in tensors.items()},
        {name: (str(np.dtype(v.dtype)), tuple(v.shape)) for name, v in by_path.items()},
        source,
    )
    for name, var in by_path.items():
        var.assign(tensors[name])


@contextlib.contextmanager
def run_lock(path: Path):
    """Hold `path/train.lock` (creating the folder) while inside: one writer per run.

    The lock is the kernel's (`flock`) on that file, which also holds the writer's process
    id for messages: a killed writer's lock is released with its process, so a later writer
    takes it over, and of processes racing for it exactly one wins. The file is removed on
    leaving, while still locked; a process that locked a file since removed or replaced
    tries again on the new one.

    Raises:
        CharlstmError: a live process holds the lock; the lock file cannot be written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CharlstmError(f"{path}: exists and is not a folder; choose another --out")
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CharlstmError(f"{path}: cannot create the run folder ({err.strerror})") from err
    lock = path / LOCK
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as err:  # a full disk, say
            raise CharlstmError(
                f"cannot write {lock} ({err.strerror}); nothing was changed; {intact(path)}"
            ) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if created:  # a folder this call made, unless the holder's files are in it now
                with contextlib.suppress(OSError):
                    path.rmdir()
            raise CharlstmError(
                f"{path} is in use by another charlstm train (process {_lock_holder(lock)}); "
                "wait for it to finish or stop it"
            ) from None
        if _inode(lock) == os.fstat(fd).st_ino:
            break
        os.close(fd)  # its holder removed or replaced the file meanwhile: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
    except OSError as err:  # a full disk, say
        lock.unlink(missing_ok=True)
        os.close(fd)
        raise CharlstmError(
            f"cannot write {lock} ({err.strerror}); nothing was changed; {intact(path)}"
        ) from err
    _clear_temporaries(path)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)  # still locked: no other process holds this file
        os.close(fd)


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _lock_holder(lock: Path) -> int | None:
    """The process id a lock file names (None if it names none)."""
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint folder and its progress record."""

    path: Path
    progress: Progress

    @property
    def step(self) -> int:
        return self.progress.step

    def model_tensors(self) -> dict[str, np.ndarray]:
        return read_tensors(self.path / MODEL)

    def train_state_tensors(self) -> dict[str, np.ndarray]:
        return read_tensors(self.path / TRAIN_STATE)


class RunDir:
    """A charlstm run directory. `create` starts one; `open` checks and reads one."""

    def __init__(self, path: Path, config: RunConfig, tokenizer: CharTokenizer):
        self.path = Path(path)
        self.config = config
        self.tokenizer = tokenizer

    @classmethod
    def create(
        cls, path: Path, config: RunConfig, tokenizer: CharTokenizer, force: bool = False
    ) -> RunDir:
        """Start a run in `path`: a new or empty folder, or any folder with force=True.

        With force, the old run's files (config, tokenizer, log, checkpoints, TensorBoard
        events) are removed; files charlstm did not write are left alone.
        """
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise CharlstmError(f"{path}: exists and is not a folder; choose another --out")
        if path.is_dir() and not force and not _nothing_to_keep(path):
            what = "another run" if (path / CONFIG).exists() else "files"
            raise CharlstmError(
                f"{path} already holds {what}; pass --resume to continue it, --force to "
                "replace it, or choose another --out"
            )
        if config.model.vocab_size != tokenizer.vocab_size:
            raise ValueError("config.model.vocab_size must equal tokenizer.vocab_size")
        path.mkdir(parents=True, exist_ok=True)
        # tokenizer.json, then config.json: a kill leaves a folder `_nothing_to_keep` accepts
        try:
            for name in (CONFIG, TOKENIZER, LOG, CHECKPOINTS, TENSORBOARD):
                _remove(path / name)
            atomic_write_bytes(path / TOKENIZER, tokenizer.to_json().encode("utf-8"))
            atomic_write_bytes(path / CONFIG, config.to_json().encode("utf-8"))  # the run begins
        except OSError as err:
            raise CharlstmError(f"cannot start a run in {path} ({err.strerror})") from err
        return cls(path, config, tokenizer)

    @classmethod
    def open(cls, path: Path) -> RunDir:
        """Read and check a run directory's config and tokenizer."""
        path = Path(path)
        if not path.is_dir():
            raise CharlstmError(f"{path}: no such run directory")
        if not (path / CONFIG).is_file():
            raise CharlstmError(f"{path}: not a charlstm run directory (no {CONFIG})")
        try:
            text = (path / CONFIG).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise CharlstmError(f"{path / CONFIG}: cannot read ({err})") from err
        config = RunConfig.from_json(text, source=str(path / CONFIG))
        tokenizer = CharTokenizer.load(path / TOKENIZER)
        if tokenizer.vocab_size != config.model.vocab_size:
            raise CharlstmError(
                f"{path / TOKENIZER} has {tokenizer.vocab_size} tokens but {CONFIG} says "
                f"vocab_size {config.model.vocab_size}; the run directory is inconsistent"
            )
        return cls(path, config, tokenizer)

    def save_config(self, config: RunConfig) -> None:
        """Rewrite config.json, e.g. when a resumed run is given more epochs or minutes."""
        atomic_write_bytes(self.path / CONFIG, config.to_json().encode("utf-8"))
        self.config = config

    def resume_config(
        self, epochs: int | None = None, minutes: float | None = None,
        strategy: str | None = None, kernel: str | None = None,
    ) -> RunConfig:  # fmt: skip
        """The config a resumed run goes on with, saved: its own, with a new epoch limit,
        `minutes` more than the time spent so far, another strategy or kernel, where given."""
        given = (("epochs", epochs), ("minutes", minutes), ("strategy", strategy))
        overrides: dict = {k: v for k, v in given if v}
        if minutes and self.checkpoints():
            overrides["minutes"] = self.latest_checkpoint().progress.elapsed_s / 60 + minutes
        config = self.config
        if overrides or (kernel and kernel != config.kernel):
            train = dataclasses.replace(config.train, **overrides)
            self.save_config(
                dataclasses.replace(config, train=train, kernel=kernel or config.kernel)
            )
        return self.config

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """A failed write inside (a full disk, say) becomes one line naming the checkpoint
        that is left in use."""
        try:
            yield
        except OSError as err:
            raise CharlstmError(
                f"cannot write in {self.path} ({err.strerror}); {self.intact()}"
            ) from err

    # checkpoints

    def write_checkpoint(
        self,
        model_tensors: dict[str, np.ndarray],
        train_state_tensors: dict[str, np.ndarray],
        progress: Progress,
        keep: int,
    ) -> Checkpoint:
        """Write the checkpoint of step `progress.step`, then prune to the newest `keep` plus
        the best one."""
        step = progress.step
        self.check_finite(model_tensors, step)  # never a checkpoint that loads as NaN
        folder = self.path / CHECKPOINTS / f"step-{step:08d}"
        _remove(folder)  # an incomplete leftover of a killed run, or a re-save of this step
        files = {
            MODEL: tensors_to_bytes(model_tensors),
            TRAIN_STATE: tensors_to_bytes(train_state_tensors),
            PROGRESS: json.dumps(progress.to_dict(), indent=2).encode("utf-8"),
        }
        manifest = {
            "format": MANIFEST_FORMAT,
            "step": step,
            "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
        }
        files[MANIFEST] = json.dumps(manifest, indent=2).encode("utf-8")  # written last
        try:
            folder.mkdir(parents=True)
            _fsync_dir(folder.parent)  # the new folder's entry in checkpoints/
            for name, data in files.items():
                atomic_write_bytes(folder / name, data)
        except OSError as err:  # a full disk, say: the checkpoints before this one are intact
            shutil.rmtree(folder, ignore_errors=True)
            raise CharlstmError(
                f"cannot write checkpoint {step} in {self.path} ({err.strerror}); {self.intact()}"
            ) from err
        self._prune(keep, best_step=progress.best_step)
        return Checkpoint(folder, progress)

    def _prune(self, keep: int, best_step: int | None) -> None:
        complete = [c.path for c in self.checkpoints()]
        kept = set(complete[-keep:])
        if best_step is not None:
            kept.add(self.path / CHECKPOINTS / f"step-{best_step:08d}")
        pruned = [f for f in (self.path / CHECKPOINTS).glob("step-*") if f not in kept]
        for folder in pruned:
            _remove(folder)
        if pruned:  # the removals' entries in checkpoints/
            _fsync_dir(self.path / CHECKPOINTS)

    def checkpoints(self) -> list[Checkpoint]:
        """Complete checkpoints, oldest first; incomplete or corrupt ones are passed over."""
        return complete_checkpoints(self.path)

    def check_finite(self, model_tensors: dict[str, np.ndarray], step: int) -> None:
        """Refuse weights holding NaN or infinity, naming the checkpoint left in use.

        Raises:
            CharlstmError: a tensor is not finite.
        """
        for name, tensor in model_tensors.items():
            if not np.isfinite(tensor).all():
                raise CharlstmError(
                    f"weight {name} became non-finite at step {step}; nothing was saved; "
                    f"{self.intact()} (or restart with a lower --learning-rate)"
                )

    def intact(self) -> str:
        """Which checkpoint a failure left in use, and how to continue: for messages."""
        return intact(self.path)

    def latest_checkpoint(self) -> Checkpoint:
        """The newest complete checkpoint.

        Raises:
            CharlstmError: there is none (`_none_complete` says why).
        """
        found = self.checkpoints()
        if not found:
            raise self._none_complete()
        return found[-1]

    def best_checkpoint(self) -> Checkpoint:
        """The checkpoint of the lowest validation loss, else the newest complete one.

        Raises:
            CharlstmError: there is no complete checkpoint.
        """
        found = self.checkpoints()
        if not found:
            raise self._none_complete()
        best_step = found[-1].progress.best_step
        return next((c for c in found if c.step == best_step), found[-1])

    def _none_complete(self) -> CharlstmError:
        """No complete checkpoint: none written yet, or every folder fails its manifest."""
        folders = list((self.path / CHECKPOINTS).glob("step-*"))
        if not folders:
            return CharlstmError(f"{self.path}: no complete checkpoint yet; train first")
        return CharlstmError(
            f"{self.path}: none of its {len(folders)} checkpoint folder(s) passes its manifest "
            "check (damaged or altered: a file missing, changed, or named outside the folder); "
            "train again with --force, or restore the folder"
        )

    def check_model(self, checkpoint: Checkpoint | None = None) -> Checkpoint:
        """The checkpoint (default: best), once its weights file holds the tensors config.json
        names and the model fits in memory; nothing is allocated.

        Raises:
            CharlstmError: a damaged weights file, or a model too big for the memory.
        """
        from charlstm.model import check_fits, weight_shapes

        checkpoint = checkpoint or self.best_checkpoint()
        needed = {
            name: ("float32", shape) for name, shape in weight_shapes(self.config.model).items()
        }
        check_layout(read_layout(checkpoint.path / MODEL), needed, str(checkpoint.path / MODEL))
        check_fits(self.config.model)
        return checkpoint

    def load_model(
        self, checkpoint: Checkpoint | None = None, matmul_dtype: str = "float32",
        kernel: str = "xla",
    ):  # fmt: skip
        """Rebuild the model from config.json and assign a checkpoint's weights (default: best);
        its products in `matmul_dtype` (`charlstm.precision`) and its loops on `kernel`
        (`charlstm.kernel`), whatever the run trained with."""
        # TensorFlow loads only when a model is needed
        from charlstm.model import build_model

        checkpoint = self.check_model(checkpoint)
        model = build_model(self.config.model, matmul_dtype=matmul_dtype, kernel=kernel)
        assign_tensors(
            variables_by_path(model.weights),
            checkpoint.model_tensors(),
            str(checkpoint.path / MODEL),
        )
        return model

    # log

    def tensorboard_dir(self) -> Path:
        """The folder for TensorBoard event files; a symlink there is removed, never followed."""
        folder = self.path / TENSORBOARD
        if folder.is_symlink():
            folder.unlink()
        return folder

    def append_log(self, record: LogRecord) -> None:
        with open(self.path / LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps(record.to_dict()) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_log(self) -> list[LogRecord]:
        """The log's records, oldest first; a line cut short by a crash mid-append is skipped."""
        path = self.path / LOG
        if not path.exists():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(LogRecord.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                continue
        return records

    def truncate_log(self, step: int) -> None:
        """Drop log records after `step`, so a resumed run logs no step twice."""
        kept = [r.to_dict() for r in self.read_log() if r.step <= step]
        atomic_write_bytes(self.path / LOG, "".join(json.dumps(r) + "\n" for r in kept).encode())


def complete_checkpoints(path: Path) -> list[Checkpoint]:
    """The complete checkpoints of run folder `path`, oldest first."""
    found: list[Checkpoint] = []
    if (path / CHECKPOINTS).is_symlink():  # never read (or write) outside the run
        return found
    for folder in sorted((path / CHECKPOINTS).glob("step-*")):
        if folder.is_symlink():
            continue
        progress = _complete(folder)
        if progress is not None:
            found.append(Checkpoint(folder, progress))
    return found


@contextlib.contextmanager
def worker_home(out: Path, chief: bool, copy: bool = False) -> Iterator[Path]:
    """Where this process writes the run: `out` for the chief (every process but the non-chief
    workers of a multi-worker strategy); else a temporary folder, removed after, holding with
    `copy` what resuming `out` needs (`copy_for_resume`: the chief may be rewriting `out`
    meanwhile)."""
    if chief:
        yield out
        return
    with tempfile.TemporaryDirectory(prefix="charlstm-worker-") as folder:
        home = Path(folder) / "run"
        if copy:
            copy_for_resume(out, home)
        yield home


def copy_for_resume(src: Path, dst: Path) -> None:
    """Copy what resuming run folder `src` needs into new folder `dst`: config.json,
    tokenizer.json and the complete checkpoints; not the lock, the log, TensorBoard's files or
    a write's temporaries. `src` may be changing meanwhile (a multi-worker chief resumes it while
    the other workers copy it): every file there is replaced by an atomic rename, so a copy
    reads an old or a new file whole, and a checkpoint that is pruned or left incomplete while
    it is copied is left out."""
    (dst / CHECKPOINTS).mkdir(parents=True)
    for name in (CONFIG, TOKENIZER):
        shutil.copyfile(src / name, dst / name)
    for checkpoint in complete_checkpoints(src):
        folder = dst / CHECKPOINTS / checkpoint.path.name
        try:
            shutil.copytree(checkpoint.path, folder)
        except (OSError, shutil.Error):  # pruned mid-copy
            shutil.rmtree(folder, ignore_errors=True)
            continue
        if _complete(folder) is None:  # a file replaced mid-copy: the hashes tell
            shutil.rmtree(folder)


def intact(path: Path) -> str:
    """Which checkpoint of run folder `path` a failure left in use, and how to continue."""
    found = complete_checkpoints(path)
    if not found:
        return "there is no complete checkpoint yet"
    return (
        f"the newest complete checkpoint, step {found[-1].step}, is intact; "
        f"continue with: charlstm train --out {path} --resume"
    )


def _complete(folder: Path) -> Progress | None:
    """progress.json of a checkpoint folder whose manifest checks out, else None: the manifest
    names exactly HASHED (no other name, so no path outside the folder is ever read), each a
    regular file of the folder (not a symlink), whose SHA-256 matches."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("format") != MANIFEST_FORMAT:
            return None
        files = manifest["files"]
        if not isinstance(files, dict) or sorted(files) != sorted(HASHED):
            return None
        for name, digest in files.items():
            if not stat.S_ISREG((folder / name).lstat().st_mode):
                return None
            if hashlib.sha256((folder / name).read_bytes()).hexdigest() != digest:
                return None
        return Progress.from_dict(json.loads((folder / PROGRESS).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _nothing_to_keep(path: Path) -> bool:
    """True if `path` holds only what a run leaves before its first complete checkpoint (its
    lock, tokenizer, config, log, TensorBoard events, incomplete checkpoint folders, write
    temporaries): a run started there afresh loses nothing."""
    own = (LOCK, TOKENIZER, CONFIG, LOG, TENSORBOARD, CHECKPOINTS)
    return all(p.name in own or _temporary(p) for p in path.iterdir()) and not (
        complete_checkpoints(path)
    )


def _temporary(path: Path) -> bool:
    """An `atomic_write_bytes` temporary (".NAME.XXXX.tmp"), left by a killed write."""
    return path.name.startswith(".") and path.name.endswith(".tmp") and not path.is_symlink()


def _clear_temporaries(path: Path) -> None:
    """Remove the write temporaries a killed writer left in run folder `path` and its
    checkpoint folders (called with the run's lock held: no write of another is under way)."""
    folders = [path]
    if not (path / CHECKPOINTS).is_symlink():  # never reach outside the run
        folders += [f for f in (path / CHECKPOINTS).glob("step-*") if not f.is_symlink()]
    for folder in folders:
        for found in folder.glob(".*.tmp"):
            if _temporary(found):
                found.unlink(missing_ok=True)


def _remove(path: Path) -> None:
    """Remove a file, a symlink (never what it points to) or a folder of charlstm's."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
