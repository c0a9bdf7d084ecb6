"""`charlstm corpus fetch` against a real HTTP server on 127.0.0.1 (no other network): a good
file, a wrong checksum or size, a connection cut halfway (resumed with a Range request), a
server that ignores ranges, a missing file, a catalogued zip corpus unpacked and read by name,
a corrupt zip, and cached files truncated or replaced after they were verified."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import re
import threading
import zipfile
from pathlib import Path

import pytest

from charlstm import corpus
from charlstm.corpus import fetch_corpus, load_corpus
from charlstm.download import download, record_path
from charlstm.errors import CharlstmError
from tests.test_cli import run_charlstm

BODY = ("Of arms and the man I sing, who first from the shores of Troy\n" * 4000).encode()


class _Server(http.server.ThreadingHTTPServer):
    """Serves `files` (path -> bytes). `cuts`: how many more responses to break off after half
    their bytes; `ranges`: whether Range requests are honoured. `requests` records each
    request's path and Range header."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.cuts = 0
        self.ranges = True
        self.requests: list[tuple[str, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        server: _Server = self.server
        asked = self.headers.get("Range")
        server.requests.append((self.path, asked))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        if asked and server.ranges:
            start = int(re.fullmatch(r"bytes=(\d+)-", asked).group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        rest = body[start:]
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        if server.cuts:
            server.cuts -= 1
            self.wfile.write(rest[: len(rest) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(rest)

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fetch(url, cache: Path, *more):
    return run_charlstm("corpus", "fetch", url, *more, env={"CHARLSTM_DATA": str(cache)})


def test_fetch_good_file_once_and_never_again(server, tmp_path):
    server.files["/odyssey.txt"] = BODY
    cache = tmp_path / "cache"
    done = _fetch(f"{server.url}/odyssey.txt", cache, "--sha256", _sha(BODY))
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    assert path == cache / "odyssey.txt"
    assert path.read_bytes() == BODY
    assert sorted(p.name for p in cache.iterdir()) == ["odyssey.txt", "odyssey.txt.sha256"]
    assert len(server.requests) == 1

    again = _fetch(f"{server.url}/odyssey.txt", cache, "--sha256", _sha(BODY))
    assert again.returncode == 0 and again.stdout.strip() == str(path)
    assert "already in the cache" in again.stderr
    assert len(server.requests) == 1  # not downloaded again


def test_wrong_checksum_is_one_line_and_leaves_nothing(server, tmp_path):
    server.files["/odyssey.txt"] = BODY
    cache = tmp_path / "cache"
    done = _fetch(f"{server.url}/odyssey.txt", cache, "--sha256", "0" * 64)
    assert done.returncode == 1
    assert done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "SHA-256" in errors[0] and _sha(BODY) in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert list(cache.iterdir()) == []  # neither the file nor its part


def test_connection_cut_halfway_resumes_with_a_range_request(server, tmp_path):
    server.files["/odyssey.txt"] = BODY
    server.cuts = 1
    cache = tmp_path / "cache"
    done = _fetch(f"{server.url}/odyssey.txt", cache, "--sha256", _sha(BODY))
    assert done.returncode == 0, done.stderr
    assert (cache / "odyssey.txt").read_bytes() == BODY
    assert server.requests == [
        ("/odyssey.txt", None),
        ("/odyssey.txt", f"bytes={len(BODY) // 2}-"),  # the second try asked for the rest only
    ]


def test_every_try_cut_keeps_the_part_and_the_next_call_resumes(server, tmp_path):
    server.files["/odyssey.txt"] = BODY
    server.cuts = 3  # all three tries of one call
    cache = tmp_path / "cache"
    url = f"{server.url}/odyssey.txt"
    cut = _fetch(url, cache, "--sha256", _sha(BODY))
    assert cut.returncode == 1 and cut.stdout == ""
    error = [line for line in cut.stderr.splitlines() if line.startswith("Error")]
    assert len(error) == 1 and "resumes" in error[0], cut.stderr
    assert "Traceback" not in cut.stderr
    part = cache / "odyssey.txt.part"
    kept = part.stat().st_size
    assert 0 < kept < len(BODY) and part.read_bytes() == BODY[:kept]
    assert not (cache / "odyssey.txt").exists()

    done = _fetch(url, cache, "--sha256", _sha(BODY))
    assert done.returncode == 0, done.stderr
    assert (cache / "odyssey.txt").read_bytes() == BODY
    assert server.requests[-1] == ("/odyssey.txt", f"bytes={kept}-")


def test_a_server_that_ignores_ranges_gets_the_whole_file_again(server, tmp_path):
    server.files["/odyssey.txt"] = BODY
    server.cuts, server.ranges = 1, False
    got = download(f"{server.url}/odyssey.txt", tmp_path / "o.txt", sha256=_sha(BODY))
    assert got.path.read_bytes() == BODY and got.fetched
    assert got.bytes == len(BODY) and got.sha256 == _sha(BODY)


def test_missing_file_is_one_line(server, tmp_path):
    cache = tmp_path / "cache"
    done = _fetch(f"{server.url}/nothing.txt", cache)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().count("\n") == 0 and "404" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not cache.exists() or not any(cache.iterdir())


def test_unknown_corpus_name_is_one_line(tmp_path):
    done = _fetch("no-such-corpus", tmp_path / "cache")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().count("\n") == 0 and "enwik8" in done.stderr, done.stderr


def test_catalogued_zip_corpus_is_fetched_unpacked_and_read_by_name(server, tmp_path, monkeypatch):
    """The catalogue's downloadable entries (enwik8, text8) are zips with one text inside:
    the same path, with a catalogue whose entry points at the local server."""
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as zf:
        zf.writestr("iliad", BODY)
    _catalogue_zip(server, monkeypatch, tmp_path, packed.getvalue())

    with pytest.raises(CharlstmError, match="charlstm corpus fetch iliad"):
        load_corpus("iliad")
    path, fetched = fetch_corpus("iliad")
    assert fetched and path == tmp_path / "cache" / "iliad"
    assert load_corpus("iliad").text == BODY.decode()
    assert fetch_corpus("iliad") == (path, False)
    assert len(server.requests) == 1


def test_the_catalogue_names_url_size_and_checksum_fields_for_every_download():
    downloads = [e for e in corpus.catalogue() if e.url]
    assert {e.name for e in downloads} >= {"enwik8", "text8", "warandpeace"}
    for e in downloads:
        assert e.url.startswith(("http://", "https://"))
        assert e.download and e.path


def test_the_catalogue_pins_or_trusts_on_first_use_every_download():
    for e in corpus.catalogue():
        if e.url:
            assert (e.sha256 is None) == e.trust_on_first_use, e.name
    assert next(e for e in corpus.catalogue() if e.name == "warandpeace").trust_on_first_use


def test_a_size_that_does_not_match_removes_the_download(server, tmp_path):
    server.files["/odyssey.txt"] = BODY
    dest = tmp_path / "cache" / "odyssey.txt"
    with pytest.raises(CharlstmError, match=f"{len(BODY):,} bytes where {len(BODY) + 1:,}"):
        download(f"{server.url}/odyssey.txt", dest, size=len(BODY) + 1)
    assert list(dest.parent.iterdir()) == []  # neither the file, its part, nor a record


def test_a_truncated_or_replaced_cached_file_is_downloaded_again(server, tmp_path):
    """A URL fetched without --sha256 is checked against the record written when it came."""
    server.files["/odyssey.txt"] = BODY
    cache, url = tmp_path / "cache", f"{server.url}/odyssey.txt"
    assert _fetch(url, cache).returncode == 0
    path = cache / "odyssey.txt"
    assert record_path(path).read_text() == f"{_sha(BODY)} {len(BODY)}\n"

    for damaged in (BODY[: len(BODY) // 3], BODY[:-5] + b"XXXXX"):  # truncated; same size
        path.write_bytes(damaged)
        asked = len(server.requests)
        again = _fetch(url, cache)
        assert again.returncode == 0, again.stderr
        assert path.read_bytes() == BODY
        assert len(server.requests) == asked + 1  # downloaded again
        warned = [line for line in again.stderr.splitlines() if "downloading it again" in line]
        assert len(warned) == 1 and "recorded" in warned[0], again.stderr

    asked = len(server.requests)
    assert _fetch(url, cache).returncode == 0 and len(server.requests) == asked  # intact: kept


@pytest.fixture
def local_warandpeace(server, tmp_path, monkeypatch):
    """The catalogue's War and Peace (trusted on first use), served by the local server; the
    cache in tmp_path/cache."""
    server.files["/warpeace_input.txt"] = BODY
    shipped = corpus.catalogue()
    here = [
        dataclasses.replace(e, url=f"{server.url}/warpeace_input.txt")
        if e.name == "warandpeace" else e
        for e in shipped
    ]  # fmt: skip
    monkeypatch.setattr(corpus, "catalogue", lambda: here)
    monkeypatch.setenv("CHARLSTM_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_damaged_cached_text_is_refused_in_one_line_and_fetch_repairs_it(
    server, local_warandpeace, tmp_path, caplog
):
    """Trust on first use: the first download's SHA-256 is recorded and said in one line;
    a later truncated or replaced text never trains silently (the installed command, with the
    shipped catalogue, refuses it), and `fetch` downloads it again."""
    cache = local_warandpeace
    with caplog.at_level("WARNING", logger="charlstm.corpus"):
        path, fetched = fetch_corpus("warandpeace")
    assert fetched and path == cache / "warandpeace.txt"
    told = [
        r.getMessage() for r in caplog.records if "recorded on first download" in r.getMessage()
    ]
    assert len(told) == 1 and _sha(BODY) in told[0]
    env = {"CHARLSTM_DATA": str(cache)}

    path.write_bytes(BODY[:-5] + b"XXXXX")  # replaced, same size
    info = run_charlstm("corpus", "info", "warandpeace", env=env)
    assert info.returncode == 1 and info.stdout == "", info.stderr
    assert info.stderr.count("\n") == 1 and "SHA-256" in info.stderr, info.stderr
    assert "charlstm corpus fetch warandpeace" in info.stderr

    path.write_bytes(BODY[:1000])  # truncated
    out = tmp_path / "run"
    train = run_charlstm("train", "warandpeace", "--out", str(out), "--minutes", "0.05", env=env)
    assert train.returncode == 1, train.stderr
    errors = [line for line in train.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "1,000 bytes where" in errors[0], train.stderr
    assert "Traceback" not in train.stderr and not out.exists()

    asked = len(server.requests)
    assert fetch_corpus("warandpeace") == (path, True)
    assert len(server.requests) == asked + 1 and path.read_bytes() == BODY
    assert run_charlstm("corpus", "info", "warandpeace", env=env).returncode == 0


def test_a_damaged_unpacked_text_is_unpacked_again_from_the_verified_zip(
    server, tmp_path, monkeypatch
):
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as zf:
        zf.writestr("iliad", BODY)
    _catalogue_zip(server, monkeypatch, tmp_path, packed.getvalue())
    path, _ = fetch_corpus("iliad")
    path.write_bytes(BODY[:100])
    with pytest.raises(CharlstmError, match="100 bytes where .*charlstm corpus fetch iliad"):
        load_corpus("iliad")
    assert fetch_corpus("iliad") == (path, False)  # the zip was there and intact
    assert len(server.requests) == 1 and path.read_bytes() == BODY
    record_path(path).unlink()  # a text nobody verified is not trusted either
    with pytest.raises(CharlstmError, match="no record of its SHA-256"):
        load_corpus("iliad")


def test_a_corrupt_zip_is_one_line_and_leaves_no_text(server, tmp_path, monkeypatch):
    """The bytes match the catalogue (the publisher's file is broken), yet are no zip."""
    broken = b"PK\x03\x04" + BODY[:5000]
    _catalogue_zip(server, monkeypatch, tmp_path, broken)
    with pytest.raises(CharlstmError, match="not a zip with iliad in it") as raised:
        fetch_corpus("iliad")
    assert "\n" not in str(raised.value)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [
        "iliad.zip",
        "iliad.zip.sha256",
    ]


def _catalogue_zip(server, monkeypatch, tmp_path, data: bytes) -> None:
    """A catalogue entry "iliad": `data` served as iliad.zip, pinned by its SHA-256."""
    server.files["/iliad.zip"] = data
    entry = corpus.Entry(
        name="iliad", path="iliad", url=f"{server.url}/iliad.zip",
        download="iliad.zip", member="iliad", source="a test", licence="none",
        bytes=len(data), sha256=_sha(data), note="",
    )  # fmt: skip
    shipped = corpus.catalogue()
    monkeypatch.setattr(corpus, "catalogue", lambda: [*shipped, entry])
    monkeypatch.setenv("CHARLSTM_DATA", str(tmp_path / "cache"))
