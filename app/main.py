"""The application factory."""

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import (
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

import app
from app.access.throttle import UnauthenticatedThrottleMiddleware
from app.api import include_routers
from app.audit import anchors
from app.auth import signing_keys
from app.auth.router import UNAUTHENTICATED_PATHS
from app.certificates.vault import Vault
from app.console.router import install_console
from app.core.blobstores import blob_store_for
from app.core.config import Settings, load_settings
from app.core.crypto import (
    EnvelopeCipher,
    configured_master_key,
    data_dir_key_file,
    load_master_key,
    read_master_key_file,
    rereadable_key_file,
)
from app.core.db import make_engine, make_sessionmaker
from app.core.deps import RequestSlots
from app.core.errors import install_error_handlers
from app.core.freespace import watched_filesystems
from app.core.metrics import Metrics, MetricsMiddleware
from app.core.middleware import (
    BodyLimit,
    BodySizeLimitMiddleware,
    ForwardedMiddleware,
    RequestContextMiddleware,
)
from app.core.schemas import Problem
from app.core.security import PasswordHasher
from app.core.storage import make_private_dir
from app.license import service as license_service
from app.signing.engine import MAX_IMAGE_BYTES
from app.signing.validation import load_trust_roots
from app.worker import BackgroundWorker

# Swagger UI's files ship in a Python package: the docs work on air-gapped networks.
SWAGGER_STATIC_DIR = Path(fastapi_offline.__file__).parent / "static"
SWAGGER_STATIC_URL = "/docs-static"


def create_served_app() -> FastAPI:
    """The app as `signvault serve` runs it in each worker process.

    Once built, everything alive (modules, routes, the app) is moved out of the
    garbage collector's generations: it lives as long as the process, and each
    full collection would otherwise walk all of it again (~0.5 ms a signing
    request measured).
    """
    api = create_app()
    gc.collect()
    gc.freeze()
    return api


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    make_private_dir(settings.data_dir)
    engine = make_engine(
        settings.effective_database_url,
        sqlite_busy_timeout=settings.sqlite_busy_timeout_seconds,
        pool_size=settings.database_pool_size,
    )
    filesystems = watched_filesystems(settings)
    metrics = Metrics(filesystems)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        worker = background_worker(_app) if settings.background_in_process else None
        if worker is not None:
            worker.start()
        yield
        if worker is not None:
            worker.stop()
        engine.dispose()

    api = FastAPI(
        title="SignVault",
        version=app.__version__,
        description="Self-hosted PAdES signing server: certificate vault, documents, signing, audit.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    api.state.settings = settings
    api.state.engine = engine
    api.state.sessionmaker = make_sessionmaker(engine)
    api.state.request_slots = RequestSlots(settings.request_concurrency)
    license_service.bind_issuer_key(api.state.sessionmaker, settings)
    api.state.password_hasher = PasswordHasher(
        time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib
    )
    api.state.cipher = _load_cipher(settings, api.state.sessionmaker)
    api.state.token_keys = signing_keys.token_keys(
        api.state.sessionmaker, api.state.cipher, settings
    )
    api.state.vault = Vault(cipher=api.state.cipher, settings=settings)
    api.state.metrics = metrics
    api.state.filesystems = filesystems
    api.state.blobs = blob_store_for(settings)
    api.state.trust_roots = load_trust_roots(settings.trust_roots_file)

    install_error_handlers(api)
    anchors.install_log_handler()
    include_routers(api)
    _install_docs(api)
    install_console(api)

    if settings.cors_origins:
        api.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID"],
        )
    api.add_middleware(BodySizeLimitMiddleware, **body_limits(settings))
    api.add_middleware(
        UnauthenticatedThrottleMiddleware,
        sessionmaker=api.state.sessionmaker,
        settings=settings,
        paths=UNAUTHENTICATED_PATHS,
    )
    api.add_middleware(MetricsMiddleware, metrics=metrics)
    api.add_middleware(RequestContextMiddleware)
    if settings.trusted_proxies:
        api.add_middleware(ForwardedMiddleware, trusted=settings.trusted_proxies)
    return api


def body_limits(settings: Settings) -> dict[str, Any]:
    """The body size limits, per content type and for the routes that carry files."""
    json_limit = BodyLimit(settings.max_json_bytes, "setting SIGNVAULT_MAX_JSON_BYTES")
    pkcs12_in_json = BodyLimit(
        _base64_size(settings.pkcs12_max_bytes) + settings.max_json_bytes,
        "SIGNVAULT_PKCS12_MAX_BYTES in base64, plus SIGNVAULT_MAX_JSON_BYTES",
    )
    image_in_json = BodyLimit(
        _base64_size(MAX_IMAGE_BYTES) + settings.max_json_bytes,
        "a stamp image's 1 MB in base64, plus SIGNVAULT_MAX_JSON_BYTES",
    )
    return {
        "upload": BodyLimit(
            settings.max_upload_bytes, "setting SIGNVAULT_MAX_UPLOAD_BYTES"
        ),
        "upload_paths": {
            # A licence file is at most 64 KiB, whichever way it is sent.
            "/api/v1/license": json_limit,
            "/api/v1/batches": BodyLimit(
                settings.batch_max_upload_bytes,
                "setting SIGNVAULT_BATCH_MAX_UPLOAD_BYTES",
            ),
        },
        "structured": json_limit,
        "structured_paths": {
            r"/api/v1/certificates(/inspect)?/base64": pkcs12_in_json,
            r"/api/v1/documents/[^/]+/sign": image_in_json,
            r"/api/v1/batches": image_in_json,
        },
    }


def _base64_size(size: int) -> int:
    return (size + 2) // 3 * 4


def background_worker(api: FastAPI) -> BackgroundWorker:
    """The background work over this app's database, keys and blobs (not started)."""
    return BackgroundWorker(
        api.state.sessionmaker,
        settings=api.state.settings,
        cipher=api.state.cipher,
        vault=api.state.vault,
        blobs=api.state.blobs,
        trust_roots=api.state.trust_roots,
        metrics=api.state.metrics,
    )


def _load_cipher(
    settings: Settings, factory: sessionmaker[Session]
) -> EnvelopeCipher | None:
    """The envelope cipher, or None when the master key is missing (then /ready says so).

    Raises:
        MasterKeyError: the configured key or secret file is unusable (`serve` says so first).
    """
    configured = configured_master_key(settings)
    key_file = data_dir_key_file(settings)
    try:
        with factory() as session:
            master_key = load_master_key(configured, key_file, session)
    except SQLAlchemyError:
        # Database not reachable or not migrated yet: /ready reports that; retry on next start.
        master_key = configured or read_master_key_file(key_file)
    if master_key is None:
        return None
    # A key file (the data dir's, or a mounted secret) is re-read after a rotation.
    return EnvelopeCipher(master_key, key_file=rereadable_key_file(settings))


def _install_docs(api: FastAPI) -> None:
    api.mount(
        SWAGGER_STATIC_URL,
        StaticFiles(directory=SWAGGER_STATIC_DIR),
        name="docs-static",
    )

    @api.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="SignVault API",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url=f"{SWAGGER_STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_STATIC_URL}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @api.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = get_openapi(
                title=api.title,
                version=api.version,
                description=api.description,
                routes=api.routes,
            )
            schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
                Problem.model_json_schema()
            )
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]
