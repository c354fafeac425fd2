"""The prediction routes, and only they, skip BentoML's tracing middleware by default (issue #11)."""

from __future__ import annotations

import pytest
from opentelemetry.util.http import ExcludeList

from service import PREDICTION_URLS

EXCLUDED = ExcludeList(list(PREDICTION_URLS))
BASE = "http://drybeans.example:3000"


@pytest.mark.parametrize("path", ["/predict", "/v1/classify", "/v2/models/drybean_svc/infer",
                                  "/v2/models/drybean_svc/versions/abc123/infer"])
def test_prediction_routes_are_not_traced_by_default(path: str) -> None:
    assert EXCLUDED.url_disabled(BASE + path)


@pytest.mark.parametrize("path", ["/v1/predictions", "/v1/predictions/counts", "/v1/feedback", "/v1/quality",
                                  "/v2/models/drybean_svc", "/v2/models/other/infer", "/readyz", "/"])
def test_every_other_route_keeps_its_tracing(path: str) -> None:
    assert not EXCLUDED.url_disabled(BASE + path)
