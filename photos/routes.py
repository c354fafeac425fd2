"""`POST /v1/photos`: a photo of beans measured (photos/pipeline.py) and each bean classified and recorded as
`/v1/classify` does, with its place in the photo."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, File, Form, UploadFile
from starlette.responses import Response

from config import get_settings
from photos.schemas import PhotoResponse
from serving.answers import photo_answer
from serving.running import running_service
from trust.assessment import DEFAULT_COVERAGE
from trust.conformal import MAX_COVERAGE, MIN_COVERAGE

if TYPE_CHECKING:
    from photos.pipeline import Photo

router = APIRouter(prefix="/v1/photos", tags=["Photos"])
# Lower bounds as OpenAPI 3.0's `minimum` (BentoML's schema is 3.0, which has no numeric exclusiveMinimum).
MIN_SCALE = 0.001  # pixels per mm
MIN_DISC_MM = 0.1


@router.post("", response_model=PhotoResponse, responses={
    413: {"description": "the file is over DRYBEANS_MAX_BODY_BYTES"},
    422: {"description": "not a PNG or JPEG, too many megapixels, empty, no bean, one region filling the frame, "
                         "too many beans, or a form field out of range: the message says which"}})
async def classify_photo(
    image: Annotated[UploadFile, File(description="a PNG or JPEG photo of beans on a plain light or dark background")],
    pixels_per_mm: Annotated[float | None, Form(ge=MIN_SCALE, description="the photo's scale, when known")] = None,
    disc_mm: Annotated[float | None, Form(ge=MIN_DISC_MM, description="the diameter (mm) of a flat calibration "
                                          "disc photographed with the beans: it gives the photo's scale")] = None,
    background: Annotated[Literal["light", "dark"] | None, Form(description="the background; left out: decided "
                                                                            "from the photo's edges")] = None,
    store: Annotated[bool, Form(description="record the predictions, under the photo's id")] = True,
    coverage: Annotated[float, Form(ge=MIN_COVERAGE, le=MAX_COVERAGE, description="the prediction sets' coverage"
                                    )] = DEFAULT_COVERAGE,
) -> Response:
    """Find every whole bean in a photo (beans cut by the frame and specks are left out, touching beans separated),
    measure its 16 features as the dataset defines them, and classify it with everything `/v1/classify` gives."""
    settings = get_settings()
    service = running_service()
    data = await image.read()
    # About 0.6 s of pixels for 12 megapixels: off the event loop. A photo it cannot measure: PhotoRefused, 422.
    photo = await asyncio.to_thread(_read_photo, data, background=background, pixels_per_mm=pixels_per_mm,
                                    disc_mm=disc_mm, max_bytes=settings.max_body_bytes,
                                    max_megapixels=settings.max_photo_megapixels,
                                    max_beans=settings.max_beans_per_photo)
    model_pixels_per_mm = service.classifier.metadata.get("pixels_per_mm")
    rows, scale = photo.rows_for_model(model_pixels_per_mm)
    answered = await service.score_and_record(rows, store=store, want_ids=True, coverage=coverage)
    return Response(photo_answer(answered, photo, scale=scale, model_pixels_per_mm=model_pixels_per_mm),
                    media_type="application/json")


def _read_photo(data: bytes, **options: Any) -> Photo:
    """photos.pipeline's read_photo, imported by the first photo: scikit-image and scipy.ndimage took 0.3 s of every
    worker's start (and of `bentoml serve`'s own)."""
    from photos.pipeline import read_photo

    return read_photo(data, **options)
