"""What the console page is rendered with: the model's tag, and each feature's description, unit and range."""

from __future__ import annotations

from typing import Any

from api.schemas import EXAMPLE_BEAN, Bean
from data.schema import CLASSES, FEATURES
from serving.running import RunningService

# Measured on the bean's photograph: lengths in pixels, areas in square pixels; the rest are ratios.
UNITS = {"Area": "px²", "ConvexArea": "px²", "Perimeter": "px", "MajorAxisLength": "px", "MinorAxisLength": "px",
         "EquivDiameter": "px", "ShapeFactor1": "1/px", "ShapeFactor2": "1/px"}
CHUNK_BEANS = 250  # beans per request when classifying a file: small enough to show progress


def page_context(service: RunningService) -> dict[str, Any]:
    """Template variables for the page of `service` (the worker's DryBeans instance)."""
    ranges = service.classifier.metadata.get("dataset", {}).get("feature_ranges") or {}
    features = [{"name": name, "description": Bean.model_fields[name].description, "unit": UNITS.get(name, "ratio"),
                 "example": EXAMPLE_BEAN[name], "range": ranges.get(name)} for name in FEATURES]
    return {"model_tag": service.classifier.tag, "features": features, "classes": CLASSES,
            "config": {"features": list(FEATURES), "classes": list(CLASSES), "max_beans": service.max_beans,
                       "chunk_beans": CHUNK_BEANS}}
