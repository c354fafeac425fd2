"""The BentoML internals the service relies on, each checked against the installed BentoML in a second.

BentoML is pinned exactly (pyproject.toml); an upgrade is that one line, and these tests say at once which
reliance it broke. Each names the system test that exercises the same reliance end to end.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import bentoml

ROOT = Path(__file__).resolve().parents[1]
BENTOML_PACKAGES = Path(bentoml.__file__).resolve().parents[1]


def test_workers_are_given_the_listening_socket_and_backlog() -> None:
    """serving/listener.py takes the descriptor `--fd` and the `--backlog` a worker is started with
    (end to end: test_listener.py)."""
    from _bentoml_impl.worker.service import main

    options = {option for parameter in main.params for option in parameter.opts}
    assert {"--fd", "--backlog"} <= options


def test_the_service_builds_its_app_with_to_asgi_and_takes_middleware() -> None:
    """serving/metrics.py wraps the app `to_asgi` builds and adds middleware (end to end: test_hardening.py's
    bounded metrics)."""
    from service import DryBeans
    from serving.metrics import RouteLabels

    assert type(DryBeans).__name__ == "RouteLabelledService"  # the class swap took
    assert isinstance(DryBeans.to_asgi(), RouteLabels)


def test_metrics_are_extended_by_a_service_method() -> None:
    """service.py's `__metrics__` adds the spool depth and the monitoring gauges to /metrics (end to end:
    test_monitoring_service.py)."""
    from _bentoml_impl.server.app import ServiceAppFactory

    assert "__metrics__" in inspect.getsource(ServiceAppFactory.metrics)


def test_api_exceptions_are_logged_where_the_filter_listens() -> None:
    """api/rest_errors.py's filter turns a client's error, which BentoML logs with a traceback, into one INFO line
    (end to end: test_bad_requests.py's log check)."""
    from bentoml._internal.server import http_app

    assert http_app.logger.name == "bentoml._internal.server.http_app"
    assert "logger.error" in inspect.getsource(http_app.log_exception)
    assert logging.getLogger("bentoml._internal.server.http_app") is http_app.logger


def test_routes_name_the_server_as_the_shortcut_does() -> None:
    """serving/shortcut.py answers with the `Server` header BentoML's routes send (end to end:
    test_shortcut.py compares both paths' headers)."""
    from _bentoml_impl.server import app

    assert 'f"BentoML Service/{self.service.name}"' in inspect.getsource(app)


def test_bentoml_serves_probes_that_ours_answer_first() -> None:
    """serving/probes.py answers /readyz and /livez before BentoML's own handlers (end to end:
    test_service_storage.py and test_hardening.py read the JSON reports)."""
    from _bentoml_impl.server.app import ServiceAppFactory

    assert {"livez", "readyz"} <= set(vars(ServiceAppFactory))


def test_the_dockerfile_template_extends_blocks_that_exist() -> None:
    """deploy/image/Dockerfile.template calls BentoML's blocks and names its build stage (end to end:
    test_container.py builds and runs the image)."""
    template = (ROOT / "deploy/image/Dockerfile.template").read_text()
    base = (BENTOML_PACKAGES / "bentoml/_internal/container/frontend/dockerfile/templates/base.j2").read_text()
    for block in ("SETUP_BENTO_COMPONENTS", "SETUP_BENTO_USER", "SETUP_BENTO_ENVARS"):
        assert block in template
        assert f"{{% block {block} %}}" in base
    assert "base-container" in template and " as base-container" in base
    assert "__base_image__" in template and "__base_image__" in base


def test_swagger_ui_ships_with_bentoml() -> None:
    """console/routes.py serves /docs with the Swagger UI files BentoML's package carries (end to end:
    test_console.py renders /docs in Chromium)."""
    from console.routes import SWAGGER_FILES, SWAGGER_UI

    for name in SWAGGER_FILES:
        assert (SWAGGER_UI / name).stat().st_size > 10_000
