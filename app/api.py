"""Mounts every feature's router."""

from fastapi import FastAPI

from app.auth.clients_router import router as clients_router
from app.auth.router import router as auth_router
from app.batches.router import router as batches_router
from app.certificates.router import router as certificates_router
from app.certificates.router import users_router as certificate_users_router
from app.documents.router import router as documents_router
from app.license.router import router as license_router
from app.signing.router import router as signing_router
from app.system.router import router as system_router


def include_routers(app: FastAPI) -> None:
    app.include_router(system_router)
    app.include_router(auth_router)
    app.include_router(clients_router)
    app.include_router(documents_router)
    app.include_router(signing_router)
    app.include_router(batches_router)
    app.include_router(certificates_router)
    app.include_router(certificate_users_router)
    app.include_router(license_router)
