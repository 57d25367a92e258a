"""Mounts every feature's router."""

from fastapi import FastAPI

from app.audit.router import router as audit_router
from app.auth.clients_router import router as clients_router
from app.auth.router import router as auth_router
from app.reports.router import router as reports_router
from app.system.router import router as system_router


def include_routers(app: FastAPI) -> None:
    app.include_router(system_router)
    app.include_router(auth_router)
    app.include_router(clients_router)
    app.include_router(audit_router)
    app.include_router(reports_router)
