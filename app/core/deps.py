"""Infrastructure dependencies, declared once as `Annotated` aliases.

The ones that only read `app.state` are `async`: FastAPI runs a plain `def`
dependency in the thread pool, a hop that costs more than the lookup.
"""

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.db import get_session
from app.core.security import PasswordHasher

SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_password_hasher(request: Request) -> PasswordHasher:
    hasher: PasswordHasher = request.app.state.password_hasher
    return hasher


SettingsDep = Annotated[Settings, Depends(get_settings)]
PasswordHasherDep = Annotated[PasswordHasher, Depends(get_password_hasher)]
