"""Download a file over HTTP(S) into a cache: resumable, verified, never twice.

`download(url, dest)` writes to `dest.part` and renames it to `dest` only once the whole file
is there and matches its expected size and SHA-256, so `dest` is always complete. A transfer
cut halfway keeps `dest.part`; the next attempt (within the same call, up to `attempts`, or a
later call) asks the server for the rest with `Range: bytes=N-` and appends it, or starts over
when the server ignores the range.

Every file put in the cache gets a record beside it (`NAME.sha256`: its SHA-256 and size,
written atomically once the file is verified). A `dest` already there is used only after its
size and SHA-256 match what the caller expects or, where the caller expects nothing, the
record: a truncated or replaced file is downloaded again, never used silently.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from charlstm.errors import CharlstmError

log = logging.getLogger(__name__)

_CHUNK = 1 << 16
_USER_AGENT = "charlstm (https://github.com/charlstm/charlstm)"

# progress(bytes so far, total bytes or None when the server does not say)
Progress = Callable[[int, int | None], None]


def cache_dir() -> Path:
    """Where downloaded corpora go: `$CHARLSTM_DATA`, else the user's cache folder
    (`~/.cache/charlstm` on Linux, as platformdirs defines it for each system)."""
    import platformdirs  # noqa: PLC0415

    return Path(os.environ.get("CHARLSTM_DATA") or platformdirs.user_cache_dir("charlstm"))


@dataclass(frozen=True)
class Downloaded:
    """A file in the cache: its path, size, SHA-256 and whether this call fetched it."""

    path: Path
    bytes: int
    sha256: str
    fetched: bool


def sha256_of(path: Path, progress: Callable[[int, int], None] | None = None) -> str:
    """The file's SHA-256, read 16 MiB at a time; `progress(bytes so far, total)` after each."""
    digest = hashlib.sha256()
    total, done = path.stat().st_size, 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return digest.hexdigest()


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    attempts: int = 3,
    timeout: float = 30.0,
    progress: Progress | None = None,
) -> Downloaded:
    """Fetch `url` into `dest` unless `dest` is already there.

    Args:
        sha256, size: what the file must be (None: not checked). A mismatch removes the
            partial file and raises.
        attempts: tries in this call; each resumes where the last one was cut.
        timeout: seconds a connection may stay silent before the try counts as cut.
        progress: called with (bytes so far, total or None) as the bytes arrive.

    Raises:
        CharlstmError: the server refuses (HTTP 4xx/5xx), every try was cut (the part is kept
            for the next call), or the file is not the expected one.
    """
    dest = Path(dest)
    if dest.is_file():
        problem = cached_problem(dest, sha256, size)
        record = read_record(dest) if problem is None else None  # written or confirmed
        if record is not None:
            return Downloaded(dest, record.bytes, record.sha256, fetched=False)
        log.warning("%s: %s; downloading it again", dest, problem or "its record is unreadable")
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    cut = None
    for attempt in range(attempts):
        if attempt:
            time.sleep(min(2.0**attempt, 10.0))
        try:
            if _transfer(url, part, size, timeout, progress):
                break
        except urllib.error.HTTPError as err:
            raise CharlstmError(f"{url}: the server answered {err.code} {err.reason}") from err
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            cut = getattr(err, "reason", None) or err.__class__.__name__
        if attempt + 1 < attempts:
            have = part.stat().st_size if part.exists() else 0
            log.warning("%s: cut after %s bytes (%s); resuming", url, f"{have:,}", cut or "short")
    else:
        have = part.stat().st_size if part.exists() else 0
        raise CharlstmError(
            f"{url}: download cut {attempts} times ({cut or 'short transfer'}); "
            f"{have:,} bytes kept in {part}, the same command resumes from there"
        )
    return _verified(part, dest, url, sha256, size)


def _transfer(
    url: str, part: Path, size: int | None, timeout: float, progress: Progress | None
) -> bool:
    """One try: ask for the bytes after those in `part` and append them. True when the server
    says the file is complete (its length, or `size`, reached; or it sent to the end with no
    length given)."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http(s) only)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have and have == size:  # nothing left to send: complete
            return True
        raise
    with response:
        if have and response.status != 206:  # the server ignores ranges: start over
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else size
        with part.open("ab" if have else "wb") as out:
            if progress:
                progress(have, total)
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                have += len(chunk)
                if progress:
                    progress(have, total)
    return total is None or have >= total


def _verified(part: Path, dest: Path, url: str, sha256: str | None, size: int | None):
    got_size = part.stat().st_size
    got_sha = sha256_of(part)
    if size is not None and got_size != size:
        part.unlink()
        raise CharlstmError(
            f"{url}: {got_size:,} bytes where {size:,} were expected; the download was removed"
        )
    if sha256 is not None and got_sha != sha256.lower():
        part.unlink()
        raise CharlstmError(
            f"{url}: SHA-256 {got_sha} where {sha256.lower()} was expected; "
            "the download was removed"
        )
    os.replace(part, dest)
    write_record(dest, got_sha, got_size)
    return Downloaded(dest, got_size, got_sha, fetched=True)


@dataclass(frozen=True)
class Record:
    """What a cached file was when it was verified: its SHA-256 and size in bytes."""

    sha256: str
    bytes: int


def record_path(path: Path) -> Path:
    """Where `path`'s Record is kept: beside it, as NAME.sha256."""
    return path.with_name(path.name + ".sha256")


def write_record(path: Path, sha256: str, size: int) -> None:
    """Record `path`'s SHA-256 and size (one line, "SHA-256 SIZE"), atomically."""
    from charlstm.rundir import atomic_write_bytes  # noqa: PLC0415

    atomic_write_bytes(record_path(path), f"{sha256} {size}\n".encode())


def read_record(path: Path) -> Record | None:
    """`path`'s Record; None if there is none or it cannot be read as one."""
    try:
        sha, size = record_path(path).read_text(encoding="ascii").split()
        return Record(sha.lower(), int(size))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def cached_problem(path: Path, sha256: str | None = None, size: int | None = None) -> str | None:
    """What is wrong with cached file `path`, or None when it is what it should be: the given
    `sha256` and `size` where given, else its Record's. The size is compared first (a
    truncated file is found without reading it), then the SHA-256.

    A file with neither an expectation nor a Record (one cached before records were kept) is
    trusted now: its Record is written, and later uses are checked against it."""
    record = read_record(path)
    want_sha = sha256.lower() if sha256 else record.sha256 if record else None
    want_size = size if size is not None else record.bytes if record else None
    have_size = path.stat().st_size
    if want_size is not None and have_size != want_size:
        return f"{have_size:,} bytes where {want_size:,} were recorded (truncated or replaced)"
    have_sha = sha256_of(path)
    if want_sha is None:
        log.warning("%s: SHA-256 %s recorded; later uses are checked against it", path, have_sha)
        write_record(path, have_sha, have_size)
        return None
    if have_sha != want_sha:
        return f"SHA-256 {have_sha} where {want_sha} was recorded (replaced or damaged)"
    if record is None or record != Record(have_sha, have_size):
        write_record(path, have_sha, have_size)
    return None
