from pathlib import Path

from fastapi.testclient import TestClient

from app.core.config import Settings
from app.core.migrations import head_revision
from app.main import create_app
from tests.factories import assert_problem, bearer, login, make_user


def test_health_is_public_and_ok(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}


def test_ready_reports_each_check(client: TestClient) -> None:
    body = client.get("/ready").json()
    assert body == {
        "status": "ready",
        "checks": {
            "database": "ok",
            "migrations": head_revision(),
            "token_key": "ok",
            "master_key": "ok",
            "storage": "ok",
        },
    }


def test_ready_is_503_before_migrations(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'empty.db'}",
    )
    app = create_app(settings)
    with TestClient(app) as client:
        body = assert_problem(client.get("/ready"), 503, "service_unavailable")
    assert "signvault migrate" in body["detail"]


def test_ready_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/none",
    )
    app = create_app(settings)
    with TestClient(app) as client:
        assert (
            "not reachable"
            in assert_problem(client.get("/ready"), 503, "service_unavailable")[
                "detail"
            ]
        )
        # any other route answers 503 too, not 500
        response = client.post(
            "/api/v1/auth/login", json={"username": "a", "password": "b"}
        )
        assert_problem(response, 503, "database_unavailable")


def test_docs_work_offline(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "/docs-static/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    assert client.get("/docs-static/swagger-ui-bundle.js").status_code == 200
    assert client.get("/docs-static/swagger-ui.css").status_code == 200
    schema = client.get("/openapi.json").json()
    flows = schema["components"]["securitySchemes"]["OAuth2"]["flows"]
    assert flows["password"]["tokenUrl"] == "/api/v1/auth/token"
    assert "Problem" in schema["components"]["schemas"]


def test_metrics_count_requests_by_route(client: TestClient) -> None:
    client.get("/health")
    client.get("/api/v1/clients/00000000-0000-0000-0000-000000000000")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert (
        'signvault_http_requests_total{method="GET",route="/health",status="200"} 1.0'
        in text
    )
    assert 'route="/api/v1/clients/{client_id}",status="401"' in text
    assert "signvault_http_request_duration_seconds_bucket" in text
    assert 'signvault_problems_total{code="not_authenticated"} 1.0' in text


def test_metrics_can_require_a_token(settings: Settings) -> None:
    private = settings.model_copy(update={"metrics_public": False})
    app = create_app(private)
    try:
        with TestClient(app) as client:
            assert_problem(client.get("/metrics"), 401, "not_authenticated")
            signer = make_user(
                app.state.sessionmaker, app.state.password_hasher, username="sig"
            )
            assert_problem(
                client.get(
                    "/metrics", headers=bearer(login(client, signer)["access_token"])
                ),
                403,
                "forbidden",
            )
            admin = make_user(
                app.state.sessionmaker,
                app.state.password_hasher,
                username="boss",
                roles=("administrator",),
            )
            assert (
                client.get(
                    "/metrics", headers=bearer(login(client, admin)["access_token"])
                ).status_code
                == 200
            )
    finally:
        app.state.engine.dispose()
