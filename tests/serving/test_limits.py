"""LimitsMiddleware on a real Starlette app: 413 while streaming, 415, empty body, bounded in-flight (503)."""

from __future__ import annotations

import asyncio

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gliomagrade.serving.limits import LimitsMiddleware, ServingLimits


def _app(limits: ServingLimits, gate: asyncio.Event | None = None) -> Starlette:
    async def infer(request: Request) -> JSONResponse:
        body = await request.body()
        if gate is not None:
            await gate.wait()
        return JSONResponse({"bytes": len(body)})

    app = Starlette(routes=[Route("/v2/models/m/infer", infer, methods=["POST"])])
    app.add_middleware(LimitsMiddleware, limits=limits, server="test", model="m")
    return app


def _client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def test_size_type_and_empty_limits() -> None:
    asyncio.run(_size_type_and_empty())


async def _size_type_and_empty() -> None:
    async with _client(_app(ServingLimits(max_body_bytes=100))) as c:
        assert (await c.post("/v2/models/m/infer", content=b"x" * 100)).json() == {"bytes": 100}
        too_big = await c.post("/v2/models/m/infer", content=b"x" * 101)
        assert too_big.status_code == 413 and "101 bytes exceeds the limit of 100" in too_big.json()["error"]

        async def chunks():  # no Content-Length: the limit applies while the body streams in
            for _ in range(5):
                yield b"x" * 30

        streamed = await c.post("/v2/models/m/infer", content=chunks())
        assert streamed.status_code == 413
        wrong = await c.post("/v2/models/m/infer", content=b"{}", headers={"content-type": "multipart/form-data"})
        assert wrong.status_code == 415 and "multipart/form-data" in wrong.json()["error"]
        empty = await c.post("/v2/models/m/infer", content=b"")
        assert empty.status_code == 400 and empty.json()["error"] == "empty request body"


def test_in_flight_requests_are_bounded() -> None:
    asyncio.run(_in_flight())


async def _in_flight() -> None:
    gate = asyncio.Event()
    async with _client(_app(ServingLimits(max_in_flight=2), gate)) as c:
        held = [asyncio.create_task(c.post("/v2/models/m/infer", content=b"{}")) for _ in range(2)]
        await asyncio.sleep(0.05)
        busy = await c.post("/v2/models/m/infer", content=b"{}")
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        gate.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
        assert (await c.post("/v2/models/m/infer", content=b"{}")).status_code == 200
