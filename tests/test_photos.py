"""photos/: beans found and measured in synthetic photos whose true shapes are known (tests/synthetic_photos.py),
drawn from held-out rows of the dataset; what is refused, and why; scales; the extract command."""

from __future__ import annotations

import io
import math
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from api import errors
from data.readers import read_dataset, validate
from data.schema import FEATURES, LABEL
from photos.__main__ import main
from photos.pipeline import Photo, read_photo
from photos.scale import rescale
from photos.segment import Background
from tests.synthetic_photos import (
    Rendered,
    Superellipse,
    disc_row,
    encode,
    held_out_rows,
    render,
    scatter,
)
from trust.consistency import consistent

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 2000, 1500
SINGLES, PAIRS = 8, 2  # beans apart, and pairs of touching beans, per photo
MEASURED = ("Area", "MajorAxisLength", "MinorAxisLength", "Perimeter")
TOLERANCE = {"Area": 0.005, "MajorAxisLength": 0.005, "MinorAxisLength": 0.005, "Perimeter": 0.03}
CENTROID_PIXELS = 2.0  # how far a found bean's centroid may lie from the drawn one's centre
COLUMN = {name: FEATURES.index(name) for name in FEATURES}


@dataclass(frozen=True)
class Scene:
    """A photo as drawn (its beans, in order: singles, then pairs) and as read."""

    name: str
    drawn: Rendered
    photo: Photo


SCENES: dict[str, tuple[Background, float, float, str]] = {  # name: (background, blur sigma, noise sd, format)
    "light, sharp, PNG": ("light", 0.0, 0.0, "PNG"),
    "dark, blur 1, noise 6, PNG": ("dark", 1.0, 6.0, "PNG"),
    "light, blur 2, noise 12, JPEG": ("light", 2.0, 12.0, "JPEG"),
    "dark, blur 2, noise 12, JPEG": ("dark", 2.0, 12.0, "JPEG"),
}


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return held_out_rows(len(SCENES) * (SINGLES + 2 * PAIRS) + 20, seed=24)[list(FEATURES)].to_numpy()


@pytest.fixture(scope="module")
def scenes(rows: np.ndarray) -> list[Scene]:
    built = []
    per_scene = SINGLES + 2 * PAIRS
    for index, (name, (background, blur, noise, image_format)) in enumerate(SCENES.items()):
        beans = scatter(rows[index * per_scene:(index + 1) * per_scene], WIDTH, HEIGHT, pairs=PAIRS, seed=index)
        drawn = render(beans, WIDTH, HEIGHT, background=background, blur=blur, noise=noise, seed=index)
        built.append(Scene(name, drawn, read_photo(drawn.encode(image_format))))
    return built


def matches(drawn: list[Superellipse], photo: Photo) -> list[int]:
    """For each drawn bean, the index of the found bean whose centroid is nearest its centre."""
    centroids = np.array([bean.centroid for bean in photo.beans]).reshape(-1, 2)
    found = []
    for bean in drawn:
        distances = np.hypot(*(centroids - np.asarray(bean.center)).T)
        nearest = int(distances.argmin())
        assert distances[nearest] < CENTROID_PIXELS, f"no bean found within {CENTROID_PIXELS} px of {bean.center}"
        found.append(nearest)
    return found


def truth(bean: Superellipse) -> dict[str, float]:
    return {"Area": bean.area, "MajorAxisLength": bean.major_axis, "MinorAxisLength": bean.minor_axis,
            "Perimeter": bean.perimeter}


def relative_errors(scenes: list[Scene]) -> dict[str, np.ndarray]:
    errors: dict[str, list[float]] = {name: [] for name in MEASURED}
    for scene in scenes:
        measured = scene.photo.rows()
        for bean, index in zip(scene.drawn.beans, matches(scene.drawn.beans, scene.photo), strict=True):
            for name, value in truth(bean).items():
                errors[name].append(measured[index, COLUMN[name]] / value - 1)
    return {name: np.array(values) for name, values in errors.items()}


def test_every_bean_is_found_exactly_once(scenes: list[Scene]) -> None:
    for scene in scenes:
        found = matches(scene.drawn.beans, scene.photo)
        assert sorted(found) == list(range(len(scene.photo.beans))), scene.name  # one-to-one, none extra
        assert len(found) == SINGLES + 2 * PAIRS


def test_measured_features_match_the_drawn_shapes(scenes: list[Scene]) -> None:
    errors = relative_errors(scenes)
    print("\nmax |relative error| over", len(errors["Area"]), "beans:",
          ", ".join(f"{name} {np.abs(values).max():.4f}" for name, values in errors.items()))
    for name, values in errors.items():
        assert np.abs(values).max() <= TOLERANCE[name], (name, values)


def test_touching_beans_are_separated_as_accurately(scenes: list[Scene]) -> None:
    for scene in scenes:
        # Each pair is one region of the thresholded photo: only the watershed tells its beans apart.
        regions, _ = ndimage.label(ndimage.gaussian_filter(scene.drawn.image, 2.0) < 128 if "light" in scene.name
                                   else ndimage.gaussian_filter(scene.drawn.image, 2.0) > 112, np.ones((3, 3)))
        centres = [regions[round(bean.center[1]), round(bean.center[0])] for bean in scene.drawn.beans[SINGLES:]]
        assert centres[0::2] == centres[1::2], scene.name
        measured = scene.photo.rows()
        found = matches(scene.drawn.beans, scene.photo)
        for bean, index in list(zip(scene.drawn.beans, found, strict=True))[SINGLES:]:
            for name, value in truth(bean).items():
                assert abs(measured[index, COLUMN[name]] / value - 1) <= TOLERANCE[name], (scene.name, name)


def test_derived_features_follow_the_dataset_formulas_and_pass_the_consistency_check(scenes: list[Scene]) -> None:
    for scene in scenes:
        rows = scene.photo.rows()
        assert rows.shape == (SINGLES + 2 * PAIRS, 16)
        f = {name: rows[:, COLUMN[name]] for name in FEATURES}
        area, perimeter, major, minor = f["Area"], f["Perimeter"], f["MajorAxisLength"], f["MinorAxisLength"]
        equivalent = np.sqrt(4 * area / np.pi)
        expected = {
            "AspectRation": major / minor, "Eccentricity": np.sqrt(1 - (minor / major) ** 2),
            "EquivDiameter": equivalent, "Solidity": area / f["ConvexArea"],
            "roundness": 4 * np.pi * area / perimeter**2, "Compactness": equivalent / major,
            "ShapeFactor1": major / area, "ShapeFactor2": area / major**3,
            "ShapeFactor3": (equivalent / major) ** 2, "ShapeFactor4": 4 * area / (np.pi * major * minor),
        }
        for name, values in expected.items():
            np.testing.assert_allclose(f[name], values, rtol=1e-12, err_msg=name)
        assert (area == np.round(area)).all() and (f["ConvexArea"] >= area).all()
        assert ((f["Extent"] > 0) & (f["Extent"] <= 1)).all()
        assert consistent(rows).all(), scene.name


def test_outlines_centroids_and_boxes_describe_each_bean(scenes: list[Scene]) -> None:
    for bean in scenes[0].photo.beans:
        x0, y0, x1, y1 = bean.bbox
        assert x0 < bean.centroid[0] < x1 and y0 < bean.centroid[1] < y1
        contour = np.array(bean.contour)
        assert 8 <= len(contour) <= 200
        # The outline runs along the mask's edge: within a pixel of the box, and around the centroid.
        assert contour[:, 0].min() >= x0 - 1 and contour[:, 0].max() <= x1 and contour[:, 1].min() >= y0 - 1
        x, y = contour[:, 0], contour[:, 1]
        polygon_area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
        assert polygon_area == pytest.approx(bean.features[COLUMN["Area"]], rel=0.02)


def test_beans_cut_by_the_frame_and_specks_are_dropped(rows: np.ndarray) -> None:
    whole = Superellipse.from_row(rows[-1], angle=20, center=(600, 450))
    cut = Superellipse.from_row(rows[-2], angle=70, center=(40, 300))  # crosses the left edge
    specks = [Superellipse(3, 2, 2, 0, (1000, 100)), Superellipse(9, 7, 2, 30, (1050, 800)),
              Superellipse(4, 4, 2, 0, (150, 820))]  # ~20, ~200 and ~50 pixels
    drawn = render([whole, cut, *specks], 1200, 900, blur=1.0, noise=6.0)
    photo = read_photo(drawn.encode())
    assert matches([whole], photo) == [0] and len(photo.beans) == 1


def refusal(data: bytes, **options: object) -> str:
    with pytest.raises(errors.PhotoRefused) as caught:
        read_photo(data, **options)  # type: ignore[arg-type]
    return str(caught.value)


def png(width: int, height: int, *, bit_depth: int = 8, scanlines: bytes = b"") -> bytes:
    """A PNG of grey pixels as declared, holding the given (deflated) scanlines: none, to test the header alone."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(scanlines))
            + chunk(b"IEND", b""))


def test_what_is_not_a_png_or_jpeg_is_refused() -> None:
    assert refusal(b"") == "the photo is empty (0 bytes)"
    assert refusal(b"GIF89a\x01\x00\x01\x00").startswith("not a PNG or JPEG image")
    assert refusal(b"\xff\xd8\xff\xe0 not a JPEG after all").startswith("the photo is not a readable JPEG image")
    assert refusal(png(0, 10)) == "the photo is empty (0 pixels: 0 x 10)"
    assert "damaged or truncated" in refusal(png(100, 100))  # a header, no pixels
    assert refusal(b"\x89PNG\r\n\x1a\n" + bytes(5000), max_bytes=4000).startswith("the photo is 0.0 MB; at most")


def test_a_decompression_bomb_is_refused_before_its_pixels_are_decoded() -> None:
    # 20000 x 20000 one-bit pixels, all black: 48 kB that would inflate to 50 MB, and 400 MB as grey levels.
    bomb = png(20000, 20000, bit_depth=1, scanlines=bytes(20000 * (1 + 20000 // 8)))
    assert len(bomb) < 100_000
    start = time.perf_counter()
    message = refusal(bomb)
    assert time.perf_counter() - start < 0.05
    assert message == "the photo is 400 megapixels (20000 x 20000); at most 40 are accepted: scale it down"
    # From the header alone: this one has no pixel data at all, and is refused for its size, not for that.
    assert refusal(png(8000, 6000)).startswith("the photo is 48 megapixels (8000 x 6000)")
    assert refusal(png(3000, 2000), max_megapixels=5).startswith("the photo is 6 megapixels")


def test_photos_without_beans_are_refused(rows: np.ndarray) -> None:
    assert refusal(encode(np.full((300, 400), 128, np.uint8))) == "no bean found: the photo is one uniform grey"
    only_cut = render([Superellipse.from_row(rows[-3], angle=0, center=(0, 200))], 600, 400)
    assert refusal(only_cut.encode()).startswith("no bean found: nothing stands out of the light background")


def test_one_region_filling_the_frame_is_refused(rows: np.ndarray) -> None:
    close_up = render([Superellipse(380, 300, 2.5, 0, (400, 325))], 800, 650)
    assert refusal(close_up.encode()).startswith("one region fills 7")  # ~75% of the photo
    # The wrong background: the real one is then the "bean", reaching every edge.
    beans = render([Superellipse.from_row(rows[-1], angle=10, center=(400, 300))], 800, 600)
    message = refusal(beans.encode(), background="dark")
    assert message.startswith("one region fills") and "set the background to light" in message


def test_too_many_beans_are_refused() -> None:
    grid = [Superellipse(14, 9, 2, 37 * i, (40 + 60 * (i % 10), 40 + 60 * (i // 10))) for i in range(30)]
    photo = render(grid, 640, 240, noise=4.0).encode()
    assert refusal(photo, max_beans=20) == ("30 beans found; at most 20 are measured in one photo: photograph "
                                            "fewer beans at a time")
    assert len(read_photo(photo, max_beans=30).beans) == 30


def test_options_that_contradict_each_other_are_refused(scenes: list[Scene]) -> None:
    data = encode(scenes[0].drawn.image)
    assert refusal(data, pixels_per_mm=10.0, disc_mm=20.0).startswith("give the photo's pixels per millimetre or")
    assert refusal(data, pixels_per_mm=-1.0).startswith("pixels per millimetre must be a positive number")
    assert refusal(data, background="grey").startswith("background must be one of light, dark")
    with pytest.raises(errors.PhotoRefused, match="the photo's scale is unknown"):
        scenes[0].photo.rows(pixels_per_mm=10.0)


def saved(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def test_sixteen_bit_colour_and_rotated_photos_read_like_plain_grey_ones(scenes: list[Scene]) -> None:
    image = scenes[0].drawn.image[:700, :900]
    expected = read_photo(encode(image)).rows()
    assert len(expected) >= 2
    sixteen_bit = saved(Image.fromarray(image.astype(np.uint16) * 257), "PNG")
    colour = saved(Image.fromarray(np.repeat(image[:, :, np.newaxis], 3, axis=2)), "PNG")
    for data in (sixteen_bit, colour):
        np.testing.assert_array_equal(read_photo(data).rows(), expected)
    # A camera held sideways: pixels stored turned, EXIF orientation 6 says to turn them back by 90 degrees.
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways = read_photo(saved(Image.fromarray(np.rot90(image)), "PNG", exif=exif))
    assert (sideways.width, sideways.height) == (900, 700)
    np.testing.assert_allclose(sideways.rows(), expected, rtol=1e-9)


def test_a_scale_change_converts_features_as_a_larger_photo_measures_them(rows: np.ndarray) -> None:
    # The same beans photographed at 10 and at 15 pixels per millimetre.
    small = [Superellipse.from_row(row, angle=25 * i, center=(300 + 600 * i, 450)) for i, row in enumerate(rows[:3])]
    large = [Superellipse(b.a * 1.5, b.b * 1.5, b.n, b.angle, (b.center[0] * 1.5, b.center[1] * 1.5)) for b in small]
    at_10 = read_photo(render(small, 1800, 900, blur=1.0, noise=6.0).encode(), pixels_per_mm=10.0)
    at_15 = read_photo(render(large, 2700, 1350, blur=1.0, noise=6.0, seed=1).encode(), pixels_per_mm=15.0)
    converted = at_10.rows(pixels_per_mm=15.0)
    np.testing.assert_allclose(converted, rescale(at_10.rows(), 10.0, 15.0))
    for name, tolerance in TOLERANCE.items():
        np.testing.assert_allclose(converted[:, COLUMN[name]], at_15.rows()[:, COLUMN[name]], rtol=tolerance)
    for ratio in ("AspectRation", "Eccentricity", "Solidity", "roundness", "ShapeFactor4"):
        np.testing.assert_array_equal(converted[:, COLUMN[ratio]], at_10.rows()[:, COLUMN[ratio]])
    assert consistent(converted).all()
    # There and back again.
    np.testing.assert_allclose(rescale(converted, 15.0, 10.0), at_10.rows(), rtol=1e-12)
    # What POST /v1/photos sends the model, and says of it: converted only when both scales are known.
    for model_scale, photo, expected, says in [
            (15.0, at_10, converted, "converted from the photo's 10 to the model's 15 pixels per mm"),
            (None, at_10, at_10.rows(), "assumed the model's own pixels: its scale is unknown, so the photo's 10"),
            (15.0, read_photo(render(small, 1800, 900).encode()), None, "give pixels_per_mm or disc_mm to convert")]:
        sent, scale = photo.rows_for_model(model_scale)
        assert says in scale
        if expected is not None:
            np.testing.assert_allclose(sent, expected)


def test_a_calibration_disc_gives_the_scale_and_is_not_a_bean(rows: np.ndarray) -> None:
    pixels_per_mm, diameter_mm = 12.0, 25.0  # a 25 mm disc: 150 pixels of radius
    drawn = scatter(np.vstack([rows[:6], disc_row(pixels_per_mm * diameter_mm / 2)]), 1800, 1200, seed=5)
    beans, disc = drawn[:6], drawn[6]
    photo = read_photo(render(drawn, 1800, 1200, blur=1.5, noise=8.0).encode(), disc_mm=diameter_mm)
    assert photo.pixels_per_mm == pytest.approx(pixels_per_mm, rel=0.002)
    assert sorted(matches(beans, photo)) == list(range(6))
    assert all(math.dist(bean.centroid, disc.center) > 50 for bean in photo.beans)
    # Without a disc in the photo, none is made up.
    alone = render(beans, 1800, 1200).encode()
    assert refusal(alone, disc_mm=diameter_mm).startswith("no calibration disc found: the roundest region has")


def write_photo_tree(folder: Path, scenes: list[Scene]) -> None:
    (folder / "seker").mkdir(parents=True)
    (folder / "Dermason").mkdir()
    (folder / "seker" / "tray 1.png").write_bytes(encode(scenes[0].drawn.image))
    (folder / "Dermason" / "tray 2.jpg").write_bytes(encode(scenes[1].drawn.image, "JPEG"))
    (folder / "Dermason" / "notes.txt").write_text("not a photo: ignored")


def run_extract(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "photos", "extract", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.system
def test_extract_writes_the_dataset_schema_and_reports_refused_photos(scenes: list[Scene], tmp_path: Path) -> None:
    photos, output = tmp_path / "photos", tmp_path / "beans.csv"
    write_photo_tree(photos, scenes)
    (photos / "Dermason" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but nothing else")
    result = run_extract(str(photos), "--output", str(output))
    assert result.returncode == 1, result.stderr
    assert "refused Dermason/broken.png: the photo is not a readable PNG image" in result.stderr
    per_photo = SINGLES + 2 * PAIRS
    assert result.stdout.strip() == (f"2 photos, {2 * per_photo} beans (DERMASON {per_photo}, SEKER {per_photo}), "
                                     f"1 refused -> {output}")
    frame = pd.read_csv(output, float_precision="round_trip")
    assert list(frame.columns) == [*FEATURES, LABEL, "photo", "pixels_per_mm"]
    features, labels = validate(output, frame[[*FEATURES, LABEL]])  # the dataset reader's own checks
    assert labels.value_counts().to_dict() == {"DERMASON": per_photo, "SEKER": per_photo}
    assert set(frame["photo"]) == {"seker/tray 1.png", "Dermason/tray 2.jpg"}
    assert frame["pixels_per_mm"].isna().all()
    seker = features[frame["photo"] == "seker/tray 1.png"].to_numpy()
    np.testing.assert_array_equal(seker, scenes[0].photo.rows())  # written at full precision


@pytest.mark.system
def test_extract_with_a_known_scale_succeeds(scenes: list[Scene], tmp_path: Path) -> None:
    photos, output = tmp_path / "photos", tmp_path / "beans.csv"
    write_photo_tree(photos, scenes)
    result = run_extract(str(photos), "--output", str(output), "--pixels-per-mm", "12.5", "--background", "light")
    # The dark photo read as on a light background: refused, and said so.
    assert result.returncode == 1
    assert "refused Dermason/tray 2.jpg: one region fills" in result.stderr
    (photos / "Dermason" / "tray 2.jpg").unlink()
    result = run_extract(str(photos), "--output", str(output), "--pixels-per-mm", "12.5")
    assert result.returncode == 0, result.stderr
    assert (pd.read_csv(output)["pixels_per_mm"] == 12.5).all()
    assert read_dataset(output).pixels_per_mm == 12.5  # what train.py records in the model


@pytest.mark.system
def test_extract_refuses_a_folder_without_photos_and_bad_options(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["extract", str(tmp_path / "missing"), "--output", str(tmp_path / "out.csv")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty" / "seker").mkdir(parents=True)
    assert main(["extract", str(tmp_path / "empty"), "--output", str(tmp_path / "out.csv")]) == 2
    assert "no PNG or JPEG photo in the sub-folders" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["extract", str(tmp_path), "--output", "x.csv", "--pixels-per-mm", "-3"])
    assert exited.value.code == 2 and "-3 is not a positive number" in capsys.readouterr().err
