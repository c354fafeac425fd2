"""The console's "Classify a photo" panel in a real browser against a real `bentoml serve` (the fixtures of
tests/test_console.py): a synthetic photo of beans drawn from held-out rows (tests/synthetic_photos.py) uploaded
through the panel, its beans outlined over the photo and listed as `POST /v1/photos` classifies the same file; a
file that is not a photo, and a bad scale, refused with the API's own message."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect

from data.schema import FEATURES
from tests import test_console
from tests.servers import MySQLDatabase, Server
from tests.synthetic_photos import held_out_rows, render, scatter
from tests.test_console import RECORD_VIOLATIONS, WAIT_MS, newest_id, open_console

pytestmark = pytest.mark.browser

# tests/test_console.py's fixtures, which pytest finds by their names in this module: its server and browser.
browser, server, shots = test_console.browser, test_console.server, test_console.shots
two_models, read_token = test_console.two_models, test_console.read_token  # what its server needs

WIDTH, HEIGHT = 1600, 1200
BEANS, PAIRS = 9, 1  # beans drawn, the last two of them touching
GIANT = 1.8  # the smallest bean drawn this many times larger, same shape: a size its shape has in no variety
SUBMIT = "#photo-form button[type=submit]"


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PNG of BEANS beans on a light background, slightly blurred and noisy, one of them a giant."""
    rows = held_out_rows(BEANS, seed=7)[list(FEATURES)].to_numpy()
    giant = int(np.argmin(rows[:BEANS - 2 * PAIRS, FEATURES.index("Area")]))
    rows[giant, [FEATURES.index("MajorAxisLength"), FEATURES.index("MinorAxisLength")]] *= GIANT  # same shape
    drawn = render(scatter(rows, WIDTH, HEIGHT, pairs=PAIRS, seed=3), WIDTH, HEIGHT, blur=1.0, noise=4.0, seed=3)
    assert len(drawn.beans) == BEANS
    path = tmp_path_factory.mktemp("console-photos") / "beans.png"
    path.write_bytes(drawn.encode("PNG"))
    return path


def classified_photo(server: Server, path: Path, **form: str) -> httpx.Response:
    """POST /v1/photos with the file, not stored unless the form says so."""
    return httpx.post(f"{server.url}/v1/photos", files={"image": (path.name, path.read_bytes())},
                      data={"store": "false", **form}, timeout=60)


def upload(page: Page, path: Path) -> None:
    page.set_input_files("#photo-file", str(path))
    page.locator(SUBMIT).click()


def watch_violations(page: Page) -> None:
    """Record the page's Content-Security-Policy violations from a reload on (window.cspViolations)."""
    page.context.add_init_script(RECORD_VIOLATIONS)
    page.reload()
    expect(page.locator("#model-facts")).to_contain_text("holdout accuracy", timeout=WAIT_MS)


def grey_at(page: Page, points: list[list[float]]) -> list[int]:
    """The drawn canvas's red level at each [x, y] of the photo's pixels."""
    return page.evaluate("""([points, width, height]) => {
        const canvas = document.querySelector("#photo-canvas");
        const context = canvas.getContext("2d");
        return points.map(([x, y]) => context.getImageData(Math.floor(x * canvas.width / width),
                                                           Math.floor(y * canvas.height / height), 1, 1).data[0]);
    }""", [points, WIDTH, HEIGHT])


def top_probability(bean: dict[str, Any]) -> str:
    """The highest probability, and its variety when that is not the label (a vote tie)."""
    top, probability = max(bean["probabilities"].items(), key=lambda item: item[1])
    return f"{probability:.3f}" + ("" if top == bean["label"] else f" ({top})")


def flags(bean: dict[str, Any]) -> list[str]:
    return [name for name, raised in (("needs review", bean["needs_review"]), ("inconsistent", not bean["consistent"]),
                                      ("out of distribution", bean["in_distribution"] is False)) if raised]


def test_a_photos_beans_are_outlined_over_it_and_listed_as_the_api_classifies_them(
        browser: Browser, server: Server, mysql_db: MySQLDatabase, photo: Path, shots: Path) -> None:
    answer = classified_photo(server, photo)
    assert answer.status_code == 200, answer.text
    expected = answer.json()
    beans = expected["beans"]
    assert len(beans) == BEANS and (expected["width"], expected["height"]) == (WIDTH, HEIGHT)
    reviewed = [bean["needs_review"] for bean in beans]
    assert any(reviewed), "the giant bean should be one to review"

    page = open_console(browser, server)
    watch_violations(page)
    before = newest_id(mysql_db)
    upload(page, photo)
    rows = page.locator("#photo-beans tbody tr")
    expect(rows).to_have_count(BEANS, timeout=WAIT_MS)
    overlay = page.locator("#photo-overlay")
    expect(overlay).to_have_attribute("viewBox", f"0 0 {WIDTH} {HEIGHT}")
    expect(overlay.locator(".outline")).to_have_count(BEANS)
    expect(overlay.locator(".review .outline")).to_have_count(sum(reviewed))
    expect(overlay.locator(".label")).to_have_text(
        [f"{i} {bean['label']}{'⚑ review' if bean['needs_review'] else ''}" for i, bean in enumerate(beans, 1)])
    assert overlay.locator(".outline").evaluate_all("outlines => outlines.map(o => o.points.numberOfItems)") == [
        len(bean["contour"]) for bean in beans]
    expect(page.locator("#photo-scale")).to_have_text(f"Scale: {expected['scale']}")

    for i, bean in enumerate(beans):
        expect(rows.nth(i).locator("td")).to_have_text([str(i + 1), bean["label"], top_probability(bean),
                                                         ", ".join(bean["prediction_set"]) or "none likely enough",
                                                         ", ".join(flags(bean)) or "none",
                                                         f"{bean['features']['Area']:.0f}",
                                                         f"{bean['features']['MajorAxisLength']:.1f}",
                                                         f"{bean['features']['MinorAxisLength']:.1f}"])
    assert [row.get_attribute("class") == "flagged" for row in rows.all()] == [bool(flags(bean)) for bean in beans]

    # The photo itself under the outlines: each centroid on a dark bean, the corners on the light background.
    assert all(level < 128 for level in grey_at(page, [bean["centroid"] for bean in beans]))
    assert all(level > 128 for level in grey_at(page, [[2, 2], [WIDTH - 3, HEIGHT - 3]]))

    expect(page.locator("#photo-stored")).to_have_text(
        re.compile(rf"Recorded in the database: {BEANS} records under request \S+\."))
    assert newest_id(mysql_db) - before == BEANS
    assert page.evaluate("window.cspViolations") == []
    expect(page.locator("#photo-error")).to_have_text("")
    page.locator("#photo").screenshot(path=shots / "photo.png")
    page.context.close()


def test_the_panel_sends_the_scale_background_and_store_choice_and_fits_a_phone(
        browser: Browser, server: Server, mysql_db: MySQLDatabase, photo: Path, shots: Path) -> None:
    answer = classified_photo(server, photo, background="light", pixels_per_mm="10")
    assert answer.status_code == 200, answer.text
    expected = answer.json()
    assert "10" in expected["scale"]
    page = open_console(browser, server, width=390)
    before = newest_id(mysql_db)
    page.select_option("#photo-background", "light")
    page.fill("#photo-ppm", "10")
    page.uncheck("#photo-store")
    upload(page, photo)
    expect(page.locator("#photo-beans tbody tr")).to_have_count(BEANS, timeout=WAIT_MS)
    expect(page.locator("#photo-scale")).to_have_text(f"Scale: {expected['scale']}")
    expect(page.locator("#photo-beans tbody td:nth-child(2)")).to_have_text([b["label"] for b in expected["beans"]])
    expect(page.locator("#photo-stored")).to_have_text("Not recorded.")
    assert newest_id(mysql_db) == before
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    stage = page.locator("#photo-stage").bounding_box()
    assert stage is not None and stage["x"] + stage["width"] <= 390
    page.locator("#photo").screenshot(path=shots / "photo-390.png")
    page.context.close()


def test_a_file_that_is_not_a_photo_and_a_bad_scale_show_the_apis_message(
        browser: Browser, server: Server, photo: Path, tmp_path: Path, shots: Path) -> None:
    notes = tmp_path / "beans.csv"
    notes.write_text("Area,Perimeter\n28395,610.291\n")
    not_a_photo = classified_photo(server, notes)
    assert not_a_photo.status_code == 422
    bad_scale = classified_photo(server, photo, pixels_per_mm="-2")
    assert bad_scale.status_code in (400, 422)

    page = open_console(browser, server)
    error = page.locator("#photo-error")
    expect(error).to_have_attribute("role", "alert")
    upload(page, photo)
    expect(page.locator("#photo-result")).to_be_visible(timeout=WAIT_MS)
    upload(page, notes)
    expect(error).to_have_text(not_a_photo.json()["error"], timeout=WAIT_MS)
    expect(page.locator("#photo-result")).to_be_hidden()  # the previous photo's answer is gone
    page.locator("#photo").screenshot(path=shots / "photo-refused.png")

    page.fill("#photo-ppm", "-2")
    upload(page, photo)
    expect(error).to_have_text(bad_scale.json()["error"], timeout=WAIT_MS)
    page.context.close()
