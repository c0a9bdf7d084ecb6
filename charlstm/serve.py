"""A trained model in the browser: one page and the JSON API behind it (Starlette, uvicorn).

    GET  /                  the page: prime, length, temperature, top-k, top-p, seed, stop,
                            Generate; the text appears as it is drawn
    GET  /info              the run at a glance (`LanguageModel.info`), JSON
    POST /generate          {"prime": "...", "length": 500, "temperature": 1.0, "top_k": 0,
                             "top_p": 1.0, "seed": 0, "stop": ""} -> {"text": "..."}
                            (stop: a text or a list of texts; the text ends just after the
                            first one drawn, as `charlstm generate --stop`)
    POST /generate/stream   the same body -> the text as plain UTF-8, piece by piece
    POST /inside            {"text": "...", "layer": 0, "quantity": "c"} -> {"chars": [...],
                            "layers": L, "units": H, "values": base64 of float32 (T, H),
                            "top": T lists of five [character, probability]}: the text read
                            from zero states (`explore.probe.trace`), one layer's c, h or gate
                            (i, f, g, o) after each character, and the likeliest next ones;
                            the page's inside view (inside.js) colours the text with it

A field left out of the body takes its default: `GENERATE_LENGTH` and SamplingConfig's, the
ones `charlstm generate` takes (`defaults`), which the page also starts with. A bad body gets 400
with {"error": "<one line>"}. Every request samples with its own states (the Sampler's compiled
loops take and return them; nothing is shared between calls but the weights), so concurrent
requests never mix: a request gives the text the same settings give alone. Requests run in
Starlette's thread pool.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast

import numpy as np

from charlstm import api
from charlstm.config import GENERATE_LENGTH, SamplingConfig, from_dict
from charlstm.errors import CharlstmError

MAX_PRIME_CHARS = 10_000
# /generate/stream hands the text out this many characters at a time
STREAM_CHUNK = 16
# the longest text /inside reads
MAX_INSIDE_CHARS = 5_000
# where serve.html's script takes the defaults of its fields, and the inside view's code
_DEFAULTS_MARK = "__DEFAULTS__"
_INSIDE_MARK = "__INSIDE__"


@dataclass(frozen=True)
class _Inside:
    """A POST /inside body."""

    text: str = ""
    layer: int = 0
    quantity: str = "c"


def inside(lm: api.LanguageModel, body: bytes) -> dict[str, Any]:
    """POST /inside's answer (module docstring) to a JSON body (`LanguageModel.inside`);
    CharlstmError, one line, if the body is bad."""
    try:
        given = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError) as err:
        raise CharlstmError(f"the body is not JSON ({err})") from err
    request: _Inside = from_dict(_Inside, given)
    if len(request.text) > MAX_INSIDE_CHARS:
        raise CharlstmError(f"text must be at most {MAX_INSIDE_CHARS:,} characters")
    seen = lm.inside(request.text, request.layer, request.quantity)
    values = np.ascontiguousarray(seen.values, "<f4")
    return {
        "chars": seen.chars,
        "layers": seen.layers,
        "units": values.shape[1],
        "values": base64.b64encode(values.tobytes()).decode("ascii"),
        "top": seen.top,
    }


@dataclass(frozen=True)
class _Text:
    """A request's fields besides the sampling, which are SamplingConfig's, and stop."""

    prime: str = ""
    length: int = GENERATE_LENGTH


def defaults() -> dict[str, Any]:
    """Every request field's default, by name: what an empty body asks for."""
    return dataclasses.asdict(_Text()) | dataclasses.asdict(SamplingConfig()) | {"stop": ""}


def parse_request(body: bytes) -> tuple[str, int, tuple[str, ...], SamplingConfig]:
    """(prime, length, stop texts, sampling) from a request's JSON body, its types and ranges
    checked by `charlstm.config.from_dict`; CharlstmError, one line, if bad. The length's range
    is the model's to check (`LanguageModel.check_request`)."""
    try:
        given = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError) as err:
        raise CharlstmError(f"the body is not JSON ({err})") from err
    if not isinstance(given, dict):
        raise CharlstmError("the body must be a JSON object")
    unknown = sorted(set(given) - set(defaults()))
    if unknown:
        raise CharlstmError(f"unknown field(s): {', '.join(unknown)}")
    stop = given.pop("stop", "")
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise CharlstmError("stop must be a text or a list of texts")
    if sum(map(len, stops)) > MAX_PRIME_CHARS:
        raise CharlstmError(f"stop must be at most {MAX_PRIME_CHARS:,} characters in all")
    text_fields = {f.name for f in dataclasses.fields(_Text)}
    text: _Text = from_dict(_Text, {k: v for k, v in given.items() if k in text_fields})
    sampling = from_dict(SamplingConfig, {k: v for k, v in given.items() if k not in text_fields})
    if len(text.prime) > MAX_PRIME_CHARS:
        raise CharlstmError(f"prime must be at most {MAX_PRIME_CHARS:,} characters")
    return text.prime, text.length, tuple(stops), sampling


def page() -> str:
    """serve.html, its fields' defaults filled in from `defaults`."""
    files = resources.files("charlstm")
    html = files.joinpath("serve.html").read_text(encoding="utf-8")
    assert html.count(_DEFAULTS_MARK) == 1, "serve.html takes its defaults in one place"
    view = files.joinpath("inside.js").read_text(encoding="utf-8")
    # "<" escaped: a "</script>" in a value cannot end the script
    return html.replace(_INSIDE_MARK, view).replace(
        _DEFAULTS_MARK, json.dumps(defaults()).replace("<", "\\u003c")
    )


def make_app(lm: api.LanguageModel):
    """The Starlette app serving `lm`, a loaded run (`charlstm.api.load`)."""
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.concurrency import run_in_threadpool  # noqa: PLC0415
    from starlette.requests import Request  # noqa: PLC0415
    from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    html = page()

    def bad(err: CharlstmError) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=400)

    async def index(request: Request):
        return HTMLResponse(html)

    async def info(request: Request):
        return JSONResponse(lm.info.to_dict())

    def _settings(body: bytes) -> tuple[str, int, tuple[str, ...], dict[str, Any]]:
        prime, length, stop, sampling = parse_request(body)
        lm.check_request(length)  # the limits `charlstm generate` has
        return prime, length, stop, dataclasses.asdict(sampling)

    async def generate(request: Request):
        try:
            prime, length, stop, sampling = _settings(await request.body())
        except CharlstmError as err:
            return bad(err)
        text = await run_in_threadpool(lm.generate, prime, length, None, stop, **sampling)
        return JSONResponse({"text": text})

    async def stream(request: Request):
        try:
            prime, length, stop, sampling = _settings(await request.body())
        except CharlstmError as err:
            return bad(err)
        pieces = cast(
            Iterator[str], lm.stream(prime, length, chunk=STREAM_CHUNK, stop=stop, **sampling)
        )
        return StreamingResponse(pieces, media_type="text/plain; charset=utf-8")

    async def look_inside(request: Request):
        body = await request.body()
        try:
            return JSONResponse(await run_in_threadpool(inside, lm, body))
        except CharlstmError as err:
            return bad(err)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/info", info),
            Route("/generate", generate, methods=["POST"]),
            Route("/generate/stream", stream, methods=["POST"]),
            Route("/inside", look_inside, methods=["POST"]),
        ]
    )


def serve(
    run_dir: str, host: str = "127.0.0.1", port: int = 8000, precision: str | None = None,
    kernel: str | None = None,
) -> None:  # fmt: skip
    """Load the run (`charlstm.api.load`, products in `precision`, loops on `kernel`) and
    serve it with uvicorn until interrupted."""
    import uvicorn  # noqa: PLC0415

    lm = api.load(run_dir, precision, kernel)
    # compile the loops the page uses before the first visitor waits for them: one for each
    # chunk size (a request of any length, seed or temperature reuses it)
    lm.generate("", 1)
    "".join(cast(Iterator[str], lm.stream("", 1, chunk=STREAM_CHUNK)))
    uvicorn.run(make_app(lm), host=host, port=port, log_level="warning")
