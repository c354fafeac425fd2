"""The OpenAPI document behind `/docs`, with this service's own title, description and version.

BentoML 1.4 fills `info` from the Bento: its description (bentofile.yaml's `description`, docs/bento.md) and its
version. A service run from source (`bentoml serve` in a checkout) has no Bento, and BentoML writes its generic text
and version "None" there; the service's docstring stands in for the description, the project's version for the version.
"""

from __future__ import annotations

import inspect
from importlib import metadata
from typing import Any

PROJECT = "drybeans"


def openapi_document(service: Any) -> dict[str, Any]:
    """BentoML's OpenAPI document of `service` (a `bentoml.Service`), with our `info`."""
    document: dict[str, Any] = service.openapi_spec.asdict()
    document["info"] = info(service)
    return document


def info(service: Any) -> dict[str, str]:
    """Title, description and version: the Bento's when served from one, else the service's own."""
    bento = service.bento
    if bento is not None:
        return {"title": service.name, "description": bento.doc, "version": str(bento.tag.version)}
    return {"title": service.name, "description": inspect.getdoc(service.inner) or "", "version": project_version()}


def project_version() -> str:
    """The version in pyproject.toml, as installed; "dev" when the project is not installed."""
    try:
        return metadata.version(PROJECT)
    except metadata.PackageNotFoundError:
        return "dev"
