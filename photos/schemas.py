"""`POST /v1/photos`' answer: each bean's place in the photo and features beside what `/v1/classify` answers."""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.schemas import BeanPrediction, StoreStatus


class PhotoBean(BeanPrediction):
    """One bean found in the photo, measured and classified."""

    centroid: list[float] = Field(description="[x, y] in the photo's pixels (x: column, y: row)")
    bbox: list[int] = Field(description="[x0, y0, x1, y1]: columns x0 to x1 - 1, rows y0 to y1 - 1")
    contour: list[list[float]] = Field(description="the outline's [x, y] vertices, closed, within 1 pixel")
    features: dict[str, float] = Field(description="the 16 features as the dataset defines them, in the model's "
                                                   "pixels when both scales are known (see `scale`)")


class PhotoResponse(BaseModel):
    """The beans of one photo."""

    photo_id: str = Field(description="the request_id of the beans' records ('' when store was false)")
    model: str = Field(description="tag of the model that answered")
    stored: StoreStatus
    width: int = Field(description="the photo's width in pixels")
    height: int = Field(description="the photo's height in pixels")
    scale: str = Field(description="how the photo's pixels became the model's: converted between the two known "
                                   "scales, or assumed to be the model's own (said plainly when a scale is unknown)")
    pixels_per_mm: float | None = Field(description="the photo's scale: given, or found from the calibration disc")
    model_pixels_per_mm: float | None = Field(description="the scale of the model's training features; null for the "
                                                          "UCI dataset's, whose camera's scale is not published")
    beans: list[PhotoBean]
