"""A trained model in the browser: one page and the JSON API behind it (Starlette, uvicorn).

    GET  /                  the page: prime, length, temperature, top-k, top-p, seed, Generate;
                            the text appears as it is drawn
    GET  /info              the run at a glance (`LanguageModel.info`), JSON
    POST /generate          {"prime": "...", "length": 200, "temperature": 0.8, "top_k": 0,
                             "top_p": 1.0, "seed": 0} -> {"text": "..."}
    POST /generate/stream   the same body -> the text as plain UTF-8, piece by piece

A bad body gets 400 with {"error": "<one line>"}. Every request samples with its own states
(the Sampler's compiled loops take and return them; nothing is shared between calls but the
weights), so concurrent requests never mix: a request gives the text the same settings give
alone. Requests run in Starlette's thread pool.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from typing import Any

from charlstm.config import SamplingConfig
from charlstm.errors import CharlstmError
from charlstm.sample import MAX_LENGTH

MAX_PRIME_CHARS = 10_000
_FIELDS = {"prime": str, "length": int, "temperature": float, "top_k": int, "top_p": float,
           "seed": int}  # fmt: skip
_DEFAULTS = {"prime": "", "length": 200, "temperature": 0.8, "top_k": 0, "top_p": 1.0, "seed": 0}


def parse_request(body: bytes) -> tuple[str, int, SamplingConfig]:
    """(prime, length, sampling) from a request's JSON body; CharlstmError, one line, if bad."""
    try:
        given = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError) as err:
        raise CharlstmError(f"the body is not JSON ({err})") from err
    if not isinstance(given, dict):
        raise CharlstmError("the body must be a JSON object")
    unknown = sorted(set(given) - set(_FIELDS))
    if unknown:
        raise CharlstmError(f"unknown field(s): {', '.join(unknown)}")
    values: dict[str, Any] = _DEFAULTS | given
    for name, kind in _FIELDS.items():
        value = values[name]
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok:
            raise CharlstmError(f"{name} must be {kind.__name__}, got {value!r}")
    if not 1 <= values["length"] <= MAX_LENGTH:
        raise CharlstmError(f"length must be in 1..{MAX_LENGTH:,}, got {values['length']}")
    if len(values["prime"]) > MAX_PRIME_CHARS:
        raise CharlstmError(f"prime must be at most {MAX_PRIME_CHARS:,} characters")
    sampling = SamplingConfig(
        temperature=float(values["temperature"]), top_k=values["top_k"],
        top_p=float(values["top_p"]), seed=values["seed"],
    )  # fmt: skip
    return values["prime"], values["length"], sampling


def make_app(lm):
    """The Starlette app serving `lm`, a charlstm.api.LanguageModel."""
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.requests import Request  # noqa: PLC0415
    from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    page = resources.files("charlstm").joinpath("serve.html").read_text(encoding="utf-8")

    def bad(err: CharlstmError) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=400)

    async def index(request: Request):
        return HTMLResponse(page)

    async def info(request: Request):
        return JSONResponse(json.loads(json.dumps(lm.info, default=str)))

    def _settings(body: bytes):
        prime, length, sampling = parse_request(body)
        return prime, length, dataclasses.asdict(sampling)

    async def generate(request: Request):
        try:
            prime, length, sampling = _settings(await request.body())
        except CharlstmError as err:
            return bad(err)
        from starlette.concurrency import run_in_threadpool  # noqa: PLC0415

        text = await run_in_threadpool(lm.generate, prime, length, **sampling)
        return JSONResponse({"text": text})

    async def stream(request: Request):
        try:
            prime, length, sampling = _settings(await request.body())
        except CharlstmError as err:
            return bad(err)
        return StreamingResponse(
            lm.stream(prime, length, chunk=16, **sampling), media_type="text/plain; charset=utf-8"
        )

    return Starlette(
        routes=[
            Route("/", index),
            Route("/info", info),
            Route("/generate", generate, methods=["POST"]),
            Route("/generate/stream", stream, methods=["POST"]),
        ]
    )


def serve(run_dir: str, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Load the run and serve it with uvicorn until interrupted."""
    import uvicorn  # noqa: PLC0415

    from charlstm.api import load  # noqa: PLC0415

    lm = load(run_dir)
    lm.generate("", 1)  # compile the loops before the first visitor waits for them
    uvicorn.run(make_app(lm), host=host, port=port, log_level="warning")
