"""`POST /v1/photos` against a real `bentoml serve` recording into MariaDB: a synthetic photo's beans found,
measured, classified as `/v1/classify` classifies their features, and recorded under the photo's id; every refusal
a 4xx that says what went wrong, with nothing recorded."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import text

from data.schema import FEATURES
from photos.pipeline import ASSUMED
from tests.servers import MySQLDatabase, Server, bentoml_serve
from tests.synthetic_photos import held_out_rows, render, scatter

pytestmark = pytest.mark.system
WIDTH, HEIGHT = 1400, 1000


@pytest.fixture(scope="module")
def server(trained_model_home: Path, mysql_db: MySQLDatabase, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[Server]:
    with bentoml_serve(mysql_db.env, tmp_path_factory.mktemp("logs")) as running:
        yield running


@pytest.fixture(scope="module")
def photo() -> tuple[bytes, np.ndarray]:
    """A PNG of 8 held-out beans (one touching pair), lightly blurred and noisy, and the rows drawn."""
    rows = held_out_rows(8, seed=3)[list(FEATURES)].to_numpy()
    return render(scatter(rows, WIDTH, HEIGHT, pairs=1), WIDTH, HEIGHT, blur=1.0, noise=5).encode(), rows


def post_photo(server: Server, content: bytes, **fields: str) -> httpx.Response:
    with server.client() as http:
        return http.post("/v1/photos", files={"image": ("beans.png", content, "image/png")}, data=fields, timeout=60)


def stored_rows(mysql_db: MySQLDatabase, request_id: str) -> list[tuple[Any, ...]]:
    with mysql_db.engine().connect() as connection:
        return [tuple(row) for row in connection.execute(text(
            "SELECT bean_index, name FROM drybeans WHERE request_id = :id ORDER BY bean_index"), {"id": request_id})]


def record_count(mysql_db: MySQLDatabase) -> int:
    with mysql_db.engine().connect() as connection:
        return int(connection.scalar(text("SELECT COUNT(*) FROM drybeans")) or 0)


def test_every_bean_is_found_measured_classified_and_recorded_under_the_photo_id(
        server: Server, mysql_db: MySQLDatabase, photo: tuple[bytes, np.ndarray]) -> None:
    content, rows = photo
    response = post_photo(server, content)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["width"], answer["height"], answer["stored"]) == (WIDTH, HEIGHT, "committed")
    assert answer["scale"] == ASSUMED and answer["pixels_per_mm"] is None and answer["model_pixels_per_mm"] is None
    beans = answer["beans"]
    assert len(beans) == len(rows)
    measured = np.array([[bean["features"][name] for name in FEATURES] for bean in beans])
    for row in rows:  # each drawn bean found once: the nearest measured area within 0.5%
        area = FEATURES.index("Area")
        assert np.min(np.abs(measured[:, area] / row[area] - 1)) < 0.005
    with server.client() as http:
        classified = http.post("/v1/classify", json={"beans": [bean["features"] for bean in beans], "store": False})
    assert [bean["label"] for bean in beans] == [bean["label"] for bean in classified.json()["predictions"]]
    assert all(bean["consistent"] and len(bean["contour"]) >= 8 for bean in beans)
    assert all(x0 <= x < x1 and y0 <= y < y1 for bean in beans
               for (x, y), (x0, y0, x1, y1) in [(bean["centroid"], bean["bbox"])])
    assert stored_rows(mysql_db, answer["photo_id"]) == [(index, bean["label"]) for index, bean in enumerate(beans)]
    assert [bean["record_id"] is not None for bean in beans] == [True] * len(beans)


def test_a_scale_given_for_a_model_of_unknown_scale_is_said_not_used(server: Server,
                                                                     photo: tuple[bytes, np.ndarray]) -> None:
    content, rows = photo
    answer = post_photo(server, content, pixels_per_mm="12.5", store="false").json()
    assert answer["pixels_per_mm"] == 12.5 and answer["stored"] == "skipped"
    assert answer["scale"].startswith(ASSUMED) and "12.5 pixels per mm cannot be converted" in answer["scale"]
    assert len(answer["beans"]) == len(rows)


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height pixels (a decompression bomb's shape): no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + header
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(header)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)))


REFUSALS = [
    ("not an image", b"name,Area\nbean,1\n", {}, 422, "not a PNG or JPEG"),
    ("empty file", b"", {}, 422, "empty"),
    ("a bomb's header", png_declaring(20_000, 20_000), {}, 422, "400 megapixels"),
    ("no bean", render([], 400, 300).encode(), {}, 422, "no bean"),
    ("both scales", b"", {"pixels_per_mm": "10", "disc_mm": "20"}, 422, "not both"),
    ("a background of another kind", b"", {"background": "grey"}, 422, "background"),
]


@pytest.mark.parametrize(("content", "fields", "status", "says"), [case[1:] for case in REFUSALS],
                         ids=[case[0] for case in REFUSALS])
def test_a_photo_that_cannot_be_measured_is_refused_with_what_went_wrong(
        server: Server, mysql_db: MySQLDatabase, content: bytes, fields: dict[str, str], status: int,
        says: str) -> None:
    before = record_count(mysql_db)
    response = post_photo(server, content, **fields)
    assert response.status_code == status, response.text
    assert says in str(response.json()), response.text
    assert record_count(mysql_db) == before
