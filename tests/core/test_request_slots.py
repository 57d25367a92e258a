"""Requests past `SIGNVAULT_REQUEST_CONCURRENCY` wait their turn in the event loop: none refused,
and no more than that many hold a database connection at once."""

import asyncio
import threading

import httpx
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.engine import Engine

from app.core.deps import RequestSlots

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
