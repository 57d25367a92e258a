"""Mounts every feature's router."""

from fastapi import FastAPI

from app.access.router import departments_router, roles_router, users_router
from app.audit.router import router as audit_router
from app.auth.clients_router import router as clients_router
from app.auth.router import router as auth_router
from app.auth.router import well_known_router
from app.batches.router import router as batches_router
from app.certificates.router import clients_router as certificate_clients_router
from app.certificates.router import router as certificates_router
from app.certificates.router import users_router as certificate_users_router
from app.documents.router import router as documents_router
from app.license.router import router as license_router
from app.notifications.router import router as notifications_router
from app.reports.router import router as reports_router
from app.settings.router import router as settings_router
from app.signing.router import router as signing_router
from app.signing_profiles.router import router as signing_profiles_router
from app.system.router import router as system_router


def include_routers(app: FastAPI) -> None:
    app.include_router(system_router)
    app.include_router(auth_router)
    app.include_router(well_known_router)
    app.include_router(clients_router)
    app.include_router(license_router)
    app.include_router(users_router)
    app.include_router(departments_router)
    app.include_router(roles_router)
    app.include_router(settings_router)
    app.include_router(batches_router)
    app.include_router(certificates_router)
    app.include_router(certificate_users_router)
    app.include_router(certificate_clients_router)
    app.include_router(audit_router)
    app.include_router(reports_router)
    app.include_router(notifications_router)
    app.include_router(documents_router)
    app.include_router(signing_router)
    app.include_router(signing_profiles_router)
