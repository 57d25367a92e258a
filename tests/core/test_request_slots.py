"""Requests past `SIGNVAULT_REQUEST_CONCURRENCY` wait their turn in the event loop: none refused,
and no more than that many hold a database connection at once."""

import asyncio
import threading
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.engine import Engine

from app.core.deps import RequestSlots
from tests.pdfs import make_pdf

CONCURRENCY = 2
REQUESTS = 12


def test_requests_past_the_concurrency_wait_for_a_slot_and_all_succeed(
    app: FastAPI, engine: Engine, admin_headers: dict[str, str]
) -> None:
    app.state.request_slots = RequestSlots(CONCURRENCY)
    lock = threading.Lock()
    held = {"now": 0, "most": 0}

    def checked_out(*_: object) -> None:
        with lock:
            held["now"] += 1
            held["most"] = max(held["most"], held["now"])

    def checked_in(*_: object) -> None:
        with lock:
            held["now"] -= 1

    event.listen(engine, "checkout", checked_out)
    event.listen(engine, "checkin", checked_in)

    async def burst() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=admin_headers
        ) as client:
            answers = await asyncio.gather(
                *(client.get("/api/v1/documents") for _ in range(REQUESTS))
            )
        return [answer.status_code for answer in answers]

    try:
        assert asyncio.run(burst()) == [200] * REQUESTS
    finally:
        event.remove(engine, "checkout", checked_out)
        event.remove(engine, "checkin", checked_in)
    assert 1 <= held["most"] <= CONCURRENCY


def test_a_trickled_upload_gives_its_slot_back_while_its_body_arrives(
    app: FastAPI, admin_headers: dict[str, str]
) -> None:
    app.state.request_slots = RequestSlots(1)
    pdf = make_pdf()

    async def scenario() -> tuple[int, int]:
        rest_may_come = asyncio.Event()

        async def trickle() -> AsyncIterator[bytes]:
            yield pdf[:100]
            await rest_may_come.wait()
            yield pdf[100:]

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://test", headers=admin_headers
        ) as client:
            upload = asyncio.create_task(
                client.post(
                    "/api/v1/documents",
                    content=trickle(),
                    headers={"Content-Type": "application/pdf"},
                )
            )
            # The one slot is free while the upload waits for its bytes.
            listed = await asyncio.wait_for(client.get("/api/v1/documents"), 30)
            rest_may_come.set()
            return listed.status_code, (await upload).status_code

    assert asyncio.run(scenario()) == (200, 201)
