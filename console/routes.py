"""The console's routes: the page, its static files, `GET /v1/model`, and `/docs` (Swagger UI) over the OpenAPI
document with our own info.

Each handler reads the running service (serving/running.py); none runs on `/predict`.
"""

from __future__ import annotations

from pathlib import Path

import bentoml
from fastapi import APIRouter, HTTPException
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import FileResponse, HTMLResponse, JSONResponse

from api import errors
from console.model_card import ModelCard, model_card
from console.openapi import openapi_document
from console.page import page_context
from serving.running import running_service

HERE = Path(__file__).parent
STATIC = {path.name: path for path in (HERE / "static").iterdir() if path.is_file()}  # served by name, nothing else
# Swagger UI as BentoML ships it (the files of its own /static_content): served from here, no CDN, no new package.
SWAGGER_UI = Path(bentoml.__file__).parent / "_internal" / "server" / "static_content"
SWAGGER_FILES = ("swagger-ui-bundle.js", "swagger-ui.css")
TEMPLATES = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(),
                        trim_blocks=True, lstrip_blocks=True)

router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def console() -> HTMLResponse:
    """The console page."""
    return HTMLResponse(TEMPLATES.get_template("console.html").render(page_context(running_service())))


@router.get("/console/static/{name}", include_in_schema=False)
def static(name: str) -> FileResponse:
    """The console's script and style sheet."""
    if name not in STATIC:
        raise HTTPException(404, f"no static file {name!r}")
    return FileResponse(STATIC[name], headers={"Cache-Control": "no-cache"})


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
def docs() -> HTMLResponse:
    """The interactive API documentation (BentoML's usual home for it, `/`, is the console here)."""
    return HTMLResponse(TEMPLATES.get_template("docs.html").render())


@router.get("/docs/swagger-ui/{name}", include_in_schema=False)
def swagger_ui(name: str) -> FileResponse:
    """Swagger UI's script and style sheet."""
    if name not in SWAGGER_FILES:
        raise HTTPException(404, f"no Swagger UI file {errors.shown(name)}")
    return FileResponse(SWAGGER_UI / name, headers={"Cache-Control": "max-age=3600"})


@router.get("/v1/model", tags=["Model"])
def model() -> ModelCard:
    """The champion (the model that answers): tag, training date and holdout metrics, from the model store's
    metadata. Every loaded model and its role: GET /v1/models."""
    service = running_service()
    champion = service.classifier
    return model_card(champion.tag, service.trained_at[champion.version], champion.metadata)


@router.get("/docs.json", include_in_schema=False)
def openapi() -> JSONResponse:
    """BentoML's OpenAPI document, with this service's title, description and version."""
    return JSONResponse(openapi_document(running_service().bento_service))
