"""Infrastructure dependencies, declared once as `Annotated` aliases.

The ones that only read `app.state` are `async`: FastAPI runs a plain `def`
dependency in the thread pool, a hop that costs more than the lookup.
"""

import asyncio
import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.db import get_session
from app.core.security import PasswordHasher


class RequestSlots:
    """How many requests of this process hold a database session at once.

    Past a few, more requests in the thread pool only share the GIL: a thread
    holding a row lock (the licence counters, the audit chain head) then waits
    behind dozens of others to send its COMMIT, and every signer waits behind it
    (a soak at 80 % of the maximum ran 46 threads a worker and fell behind by
    seconds). The rest wait here, in the event loop, before taking a connection.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        # One semaphore per event loop: tests run an app on several loops.
        self._by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Semaphore
        ] = weakref.WeakKeyDictionary()

    def __call__(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        slots = self._by_loop.get(loop)
        if slots is None:
            slots = self._by_loop[loop] = asyncio.Semaphore(self.size)
        return slots


async def admit_request(request: Request) -> AsyncIterator[None]:
    slots = request.app.state.request_slots()
    await slots.acquire()
    request.state.request_slot = slots
    try:
        yield
    finally:
        if request.state.request_slot is not None:
            slots.release()


@asynccontextmanager
async def slot_given_back(request: Request) -> AsyncIterator[None]:
    """Give the request's slot back while its body is read (an upload after the caller
    was authenticated): a sender trickling bytes must not keep others waiting."""
    slots: asyncio.Semaphore | None = getattr(request.state, "request_slot", None)
    if slots is None:
        yield
        return
    slots.release()
    request.state.request_slot = None
    try:
        yield
    finally:
        await slots.acquire()
        request.state.request_slot = slots


def open_session(
    request: Request,
    _admitted: Annotated[None, Depends(admit_request, scope="function")],
) -> Iterator[Session]:
    # The slot is taken first and given back after the commit.
    yield from get_session(request)


SessionDep = Annotated[Session, Depends(open_session, scope="function")]


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_password_hasher(request: Request) -> PasswordHasher:
    hasher: PasswordHasher = request.app.state.password_hasher
    return hasher


SettingsDep = Annotated[Settings, Depends(get_settings)]
PasswordHasherDep = Annotated[PasswordHasher, Depends(get_password_hasher)]
