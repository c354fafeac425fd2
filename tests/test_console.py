"""The console at `/` in a real browser (Playwright driving Debian's chromium) against a real `bentoml serve`
recording into MariaDB, with an API token configured. Screenshots of each state go to $DRYBEANS_SCREENSHOTS
(default: a pytest temporary directory)."""

from __future__ import annotations

import csv
import inspect
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import bentoml
import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from sqlalchemy import text

from api.errors import SHARE_OUT_OF_RANGE
from console.openapi import project_version
from data.readers import read_dataset
from data.schema import CLASSES, FEATURES, LABEL
from rollout.roles import MAX_CANARY_SHARE
from serving.token_file import API_TOKEN_NAME
from serving.tokens import add as add_token
from tests.servers import MySQLDatabase, Server, bentoml_serve
from tests.support import require
from trust.assessment import DEFAULT_COVERAGE

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "console-test-token"
# Every Content-Security-Policy violation of the page, kept where the test can read it.
RECORD_VIOLATIONS = """window.cspViolations = [];
document.addEventListener("securitypolicyviolation",
                          (e) => window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));"""
# What an injected script or style attribute would try; the policy must refuse both.
INJECTION = """() => {
    const script = document.createElement("script");
    script.textContent = "window.injected = true";
    document.body.append(script);
    document.body.setAttribute("style", "background: red");
    return new Promise((resolve) => setTimeout(() => resolve([window.injected === true, window.cspViolations]), 500));
}"""
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
TOKEN_KEY = "drybeans.token"
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def two_models(trained_model_home: Path) -> Iterator[tuple[str, str]]:
    """The versions of the models the server loads: a copy of train.py's model saved under a version of its own
    (the newest, so the champion and `drybean_svc:latest`), and train.py's model (idle). The copy is deleted
    afterwards, so that train.py's model is `latest` again for the modules after this one."""
    trained = bentoml.models.get("drybean_svc:latest")
    copy = bentoml.sklearn.save_model(
        f"{trained.tag.name}:console{uuid.uuid4().hex[:12]}", bentoml.sklearn.load_model(trained),
        signatures={name: {"batchable": False} for name in trained.info.signatures},
        labels=trained.info.labels, metadata=trained.info.metadata)
    yield str(copy.tag.version), str(trained.tag.version)
    bentoml.models.delete(copy.tag)
    assert bentoml.models.get("drybean_svc:latest").tag == trained.tag


@pytest.fixture(scope="module")
def read_token(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A tokens file holding one token that may read but not operate: its path and the token."""
    path = tmp_path_factory.mktemp("console-tokens") / "tokens.jsonl"
    return path, add_token(path, "viewer", ("read",))


@pytest.fixture(scope="module")
def server(two_models: tuple[str, str], read_token: tuple[Path, str], mysql_db: MySQLDatabase,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # One worker: the page's reads and writes need no more, and the machine is shared.
    env = {**mysql_db.env, "DRYBEANS_API_TOKEN": TOKEN, "DRYBEANS_TOKENS_FILE": str(read_token[0]),
           "DRYBEANS_MODELS": ",".join(f"drybean_svc:{version}" for version in two_models),
           "BENTOML_CONFIG_OPTIONS": "services.drybeans.workers=1"}
    with bentoml_serve(env, tmp_path_factory.mktemp("console-logs")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require(CHROMIUM.is_file(), f"Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("DRYBEANS_SCREENSHOTS")
    path = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def open_console(browser: Browser, server: Server, *, width: int = 1280, token: str | None = TOKEN) -> Page:
    """A fresh tab on the console, with a token already entered (as after a first visit) unless told None."""
    context = browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)
    if token:
        context.add_init_script(f"sessionStorage.setItem({TOKEN_KEY!r}, {token!r})")
    page = context.new_page()
    page.goto(server.url + "/")
    expect(page.locator("#model-facts")).to_contain_text("holdout accuracy", timeout=WAIT_MS)
    return page


def newest_id(db: MySQLDatabase) -> int:
    with db.engine().connect() as connection:
        return int(connection.scalar(text("SELECT COALESCE(MAX(id), 0) FROM drybeans")))


def metadata() -> dict:
    return bentoml.models.get("drybean_svc:latest").info.metadata


def test_records_need_the_token_and_show_rows_once_it_is_entered(browser: Browser, server: Server, shots: Path,
                                                                 ) -> None:
    page = open_console(browser, server, token=None)
    why = page.locator("#records-why")
    expect(why).to_be_visible(timeout=WAIT_MS)
    expect(why).to_contain_text("need the API token")
    expect(page.locator("#auth")).to_be_visible()
    page.locator("#bean-form button[type=submit]").click()  # classifying needs no token
    expect(page.locator("#bean-label")).to_have_text("DERMASON", timeout=WAIT_MS)
    expect(page.locator("#records-table tbody tr")).to_have_count(0)
    page.screenshot(path=shots / "token-asked.png", full_page=True)

    page.fill("#token", "wrong-token")
    page.press("#token", "Enter")
    expect(page.locator("#auth-message")).to_contain_text("refused", timeout=WAIT_MS)
    page.fill("#token", TOKEN)
    page.press("#token", "Enter")
    expect(page.locator("#records-table tbody tr").first).to_be_visible(timeout=WAIT_MS)
    expect(why).to_be_hidden()
    expect(page.locator("#auth")).to_be_hidden()
    assert page.evaluate(f"sessionStorage.getItem({TOKEN_KEY!r})") == TOKEN
    page.screenshot(path=shots / "token-entered.png", full_page=True)
    page.context.close()


def test_the_example_bean_is_a_dermason_and_its_row_appears_under_records(browser: Browser, server: Server,
                                                                          mysql_db: MySQLDatabase, shots: Path,
                                                                          ) -> None:
    page = open_console(browser, server)
    before = newest_id(mysql_db)
    page.locator("#bean-form button[type=submit]").click()
    expect(page.locator("#bean-label")).to_have_text("DERMASON", timeout=WAIT_MS)
    new_id = newest_id(mysql_db)
    assert new_id > before
    expect(page.locator("#bean-stored")).to_have_text(f"Recorded in the database as record {new_id}.")
    expect(page.locator("#bean-scores .bar-track")).to_have_count(len(CLASSES))
    expect(page.locator("#records-table tbody tr").first.locator("td").first).to_have_text(str(new_id),
                                                                                           timeout=WAIT_MS)
    expect(page.locator("#records-table tbody tr").first).to_contain_text("DERMASON")
    page.screenshot(path=shots / "classified.png", full_page=True)
    page.context.close()


def test_a_bad_value_shows_the_apis_message_next_to_its_field(browser: Browser, server: Server, shots: Path) -> None:
    page = open_console(browser, server)
    page.fill("#f-MinorAxisLength", "abc")
    page.locator("#bean-form button[type=submit]").click()
    bean = {name: float(page.input_value(f"#f-{name}")) for name in FEATURES if name != "MinorAxisLength"}
    answer = httpx.post(f"{server.url}/v1/classify", json={"beans": [{**bean, "MinorAxisLength": "abc"}],
                                                           "store": False})
    assert answer.status_code == 400
    message = answer.json()["detail"][0]["msg"]
    expect(page.locator("#e-MinorAxisLength")).to_have_text(message, timeout=WAIT_MS)
    expect(page.locator("#f-MinorAxisLength")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#e-Area")).to_have_text("")
    expect(page.locator("#bean-result")).to_be_hidden()
    page.screenshot(path=shots / "bad-value.png", full_page=True)
    page.context.close()


def test_a_500_bean_csv_gives_500_results_and_the_agreement_computed_here(
        browser: Browser, server: Server, mysql_db: MySQLDatabase, shared_csv: Path, tmp_path: Path,
        shots: Path) -> None:
    dataset = read_dataset(shared_csv)
    sample = dataset.features.assign(**{LABEL: dataset.labels}).sample(500, random_state=14)
    upload = tmp_path / "beans-500.csv"
    sample.to_csv(upload, index=False)
    model = bentoml.sklearn.load_model("drybean_svc:latest")
    agree = int((model.predict(sample[list(FEATURES)].to_numpy()) == sample[LABEL].to_numpy()).sum())
    before = newest_id(mysql_db)

    page = open_console(browser, server)
    page.set_input_files("#csv-file", str(upload))
    expect(page.locator("#file-status")).to_have_text("500 beans classified and recorded.", timeout=WAIT_MS)
    expect(page.locator("#file-results tbody tr")).to_have_count(500)
    expect(page.locator("#file-agreement")).to_have_text(
        f"Agreement with the Class column: {100 * agree / 500:.1f}% ({agree} of 500)")
    assert page.locator("#file-progress").evaluate("p => [p.value, p.max]") == [500, 500]
    with page.expect_download() as download:
        page.click("#file-download")
    lines = Path(download.value.path()).read_text().splitlines()
    assert len(lines) == 501 and lines[0] == ",".join([*FEATURES, LABEL, "predicted", "prediction_set", "needs_review"])
    with mysql_db.engine().connect() as connection:
        assert connection.scalar(text("SELECT COUNT(*) FROM drybeans WHERE id > :id"), {"id": before}) == 500
    page.screenshot(path=shots / "file-500.png", full_page=True)
    page.context.close()


def classified(server: Server, beans: list[dict[str, float]], coverage: float = DEFAULT_COVERAGE) -> list[dict]:
    """Each bean's answer from /v1/classify, not recorded: what the console must show."""
    answer = httpx.post(f"{server.url}/v1/classify", json={"beans": beans, "coverage": coverage, "store": False},
                        timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"]  # type: ignore[no-any-return]


def clean_bean(server: Server, shared_csv: Path) -> dict[str, float]:
    """The first bean of the dataset that the service does not doubt at the default coverage."""
    beans = [dict(zip(FEATURES, row, strict=True))
             for row in read_dataset(shared_csv).features.head(50).to_numpy().tolist()]
    for bean, answer in zip(beans, classified(server, beans), strict=True):
        if not answer["needs_review"]:
            return bean
    pytest.fail("the service doubts each of the dataset's first 50 beans")


def classify_in_form(page: Page, bean: dict[str, float]) -> None:
    """Type the bean into the one-bean form (each value in its shortest form) and submit it."""
    for name, value in bean.items():
        page.fill(f"#f-{name}", repr(value))
    page.locator("#bean-form button[type=submit]").click()


def shown(value: float) -> str:
    """A sent or implied value as the console writes it: six significant digits, shortest form (the same as
    JavaScript's for values from 1e-4 to 1e6, where Python's `g` uses no exponent)."""
    return f"{value:.6g}"


def test_a_clean_bean_shows_a_set_of_one_variety_and_no_review_flag(browser: Browser, server: Server,
                                                                     shared_csv: Path, shots: Path) -> None:
    bean = clean_bean(server, shared_csv)
    [answer] = classified(server, [bean])
    assert answer["prediction_set"] == [answer["label"]] and answer["consistent"] and answer["in_distribution"]
    page = open_console(browser, server)
    expect(page.locator("#coverage")).to_have_value(str(DEFAULT_COVERAGE))
    classify_in_form(page, bean)
    expect(page.locator("#bean-label")).to_have_text(answer["label"], timeout=WAIT_MS)
    expect(page.locator("#bean-coverage")).to_have_text(str(DEFAULT_COVERAGE))
    expect(page.locator("#bean-set .chip")).to_have_text([answer["label"]])
    expect(page.locator("#bean-flag")).to_have_class("flag clear")
    expect(page.locator("#bean-flag")).to_have_text(
        "No reason to doubt this answer: consistent features, within the training distribution "
        f"(score {answer['ood_score']:.2f}), a set of one variety.")
    expect(page.locator("#bean-reasons li")).to_have_count(0)
    page.screenshot(path=shots / "doubt-clean.png", full_page=True)

    # The coverage is sent with the bean: at 0.999 the set is the API's at 0.999.
    [wide] = classified(server, [bean], coverage=0.999)
    page.fill("#coverage", "0.999")
    page.locator("#bean-form button[type=submit]").click()
    expect(page.locator("#bean-coverage")).to_have_text("0.999", timeout=WAIT_MS)
    expect(page.locator("#bean-set .chip")).to_have_text(wide["prediction_set"])
    expect(page.locator("#bean-flag")).to_have_class("flag review" if wide["needs_review"] else "flag clear")
    page.fill("#coverage", "2")
    page.locator("#bean-form button[type=submit]").click()
    refused = httpx.post(f"{server.url}/v1/classify", json={"beans": [bean], "coverage": 2, "store": False})
    assert refused.status_code == 400
    expect(page.locator("#e-coverage")).to_have_text(refused.json()["detail"][0]["msg"], timeout=WAIT_MS)
    expect(page.locator("#bean-error")).to_have_text("")
    page.context.close()


def test_a_typo_in_shapefactor2_flags_the_bean_for_review_with_what_was_sent_and_implied(
        browser: Browser, server: Server, shared_csv: Path, shots: Path) -> None:
    bean = clean_bean(server, shared_csv)
    typo = {**bean, "ShapeFactor2": bean["ShapeFactor2"] * 10}
    [answer] = classified(server, [typo])
    assert answer["needs_review"] and not answer["consistent"]
    problems = answer["inconsistencies"]
    assert "ShapeFactor2" in [problem["feature"] for problem in problems]
    page = open_console(browser, server)
    classify_in_form(page, typo)
    expect(page.locator("#bean-flag")).to_have_text("Needs review", timeout=WAIT_MS)
    expect(page.locator("#bean-flag")).to_have_class("flag review")
    expect(page.locator("#bean-reasons")).to_contain_text("Its features disagree")
    rows = page.locator("#bean-reasons tr[data-feature]")
    expect(rows).to_have_count(len(problems))
    for i, problem in enumerate(problems):
        expect(rows.nth(i).locator("td")).to_have_text([problem["feature"], shown(problem["sent"]),
                                                        shown(problem["implied"]), problem["rule"]])
    expect(page.locator("#bean-set .chip")).to_have_text(answer["prediction_set"])
    page.screenshot(path=shots / "doubt-typo.png", full_page=True)
    page.context.close()


def test_a_file_with_typos_shows_how_many_beans_to_doubt_as_the_api_counts_them(
        browser: Browser, server: Server, shared_csv: Path, tmp_path: Path, shots: Path) -> None:
    dataset = read_dataset(shared_csv)
    sample = dataset.features.assign(**{LABEL: dataset.labels}).sample(60, random_state=22).reset_index(drop=True)
    typos = {3: ("ShapeFactor2", 10.0), 17: ("Area", 0.1), 29: ("Compactness", 10.0)}
    for row, (feature, factor) in typos.items():
        sample.loc[row, feature] *= factor
    axes = ["MajorAxisLength", "MinorAxisLength"]
    sample.loc[41, axes] = sample.loc[41, axes[::-1]].to_numpy()  # a swapped pair
    upload = tmp_path / "beans-typos.csv"
    sample.to_csv(upload, index=False)
    with upload.open(newline="") as sent:
        beans = [{name: float(row[name]) for name in FEATURES} for row in csv.DictReader(sent)]
    coverage = 0.9
    answers = classified(server, beans, coverage)
    total = len(answers)
    review = sum(answer["needs_review"] for answer in answers)
    inconsistent = sum(not answer["consistent"] for answer in answers)
    outside = sum(answer["in_distribution"] is False for answer in answers)
    mean_size = sum(len(answer["prediction_set"]) for answer in answers) / total
    assert inconsistent == len(typos) + 1  # each typo caught, no clean bean doubted for its features

    page = open_console(browser, server)
    page.fill("#csv-coverage", str(coverage))
    page.set_input_files("#csv-file", str(upload))
    expect(page.locator("#file-status")).to_have_text(f"{total} beans classified and recorded.", timeout=WAIT_MS)

    def share(count: int) -> str:
        return f"{count} of {total} ({100 * count / total:.1f}%)"

    expect(page.locator("#file-doubts dt")).to_have_text(["needs review", "inconsistent", "out of distribution",
                                                          "mean set size"])
    expect(page.locator("#file-doubts dd")).to_have_text([share(review), share(inconsistent), share(outside),
                                                          f"{mean_size:.2f} at coverage {coverage}"])
    expect(page.locator("#file-results thead th")).to_have_text(["row", "variety", "Class", "agrees", "review"])
    reviews = page.locator("#file-results tbody td:nth-child(5)").all_text_contents()
    assert [text != "no" for text in reviews] == [answer["needs_review"] for answer in answers]
    for row in [*typos, 41]:  # each names the features the API finds disagreeing (for Area, the derived ones)
        named = ", ".join(dict.fromkeys(problem["feature"] for problem in answers[row]["inconsistencies"]))
        assert reviews[row].startswith(f"yes: inconsistent {named}"), reviews[row]
    page.screenshot(path=shots / "doubt-file.png", full_page=True)

    with page.expect_download() as download:
        page.click("#file-download")
    with Path(download.value.path()).open(newline="") as results:
        rows = list(csv.DictReader(results))
    assert [row["prediction_set"] for row in rows] == [",".join(answer["prediction_set"]) for answer in answers]
    assert [row["needs_review"] for row in rows] == [str(answer["needs_review"]).lower() for answer in answers]
    page.context.close()


def test_class_mix_and_model_panel_show_the_models_real_numbers(browser: Browser, server: Server,
                                                               shots: Path) -> None:
    meta = metadata()
    metrics, training = meta["metrics"], meta["dataset"]["class_counts"]
    page = open_console(browser, server)
    facts = page.locator("#model-facts")
    expect(facts).to_contain_text(str(bentoml.models.get("drybean_svc:latest").tag))
    expect(facts).to_contain_text(f"{metrics['holdout_accuracy']:.4f}")
    expect(facts).to_contain_text(f"{metrics['macro_f1']:.4f}")
    for name in CLASSES:
        expect(page.locator(f"#model-f1 [data-variety={name}]")).to_have_text(
            f"{metrics['per_class'][name]['f1']:.4f}")
    cells = page.locator("#confusion tr").evaluate_all(
        "rows => rows.slice(1).map(r => [...r.querySelectorAll('td')].map(td => Number(td.textContent)))")
    assert cells == metrics["confusion_matrix"]

    counts = httpx.get(f"{server.url}/v1/predictions/counts", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    total = sum(training.values())
    for name in CLASSES:
        mix = page.locator(f"#class-mix [data-variety={name}]")
        expect(mix).to_contain_text(f"{100 * training[name] / total:.1f}% ({training[name]})")
        recorded = counts["counts"].get(name, 0)
        expect(mix).to_contain_text(f"{100 * recorded / counts['total']:.1f}% ({recorded})", timeout=WAIT_MS)
    page.screenshot(path=shots / "model-and-mix.png", full_page=True)
    page.context.close()


def test_health_and_monitoring_panels_show_what_the_service_answers(browser: Browser, server: Server,
                                                                    shared_csv: Path, shots: Path) -> None:
    dataset = read_dataset(shared_csv)
    beans = [dict(zip(FEATURES, row, strict=True)) for row in dataset.features.head(40).to_numpy().tolist()]
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        classified = http.post("/v1/classify", json={"beans": beans}).json()
        reports = [{"record_id": answer["record_id"], "variety": variety}
                   for answer, variety in zip(classified["predictions"], dataset.labels.head(40), strict=True)]
        assert http.post("/v1/feedback", json={"items": reports}, headers=auth).status_code == 200
        accuracy = http.get("/v1/quality", headers=auth).json()["accuracy"]
        drift = http.get("/v1/drift", headers=auth).json()
    assert accuracy["live"] is not None and accuracy["count"] >= 40

    page = open_console(browser, server)
    expect(page.locator("#health-facts")).to_contain_text("database", timeout=WAIT_MS)
    expect(page.locator("#health-facts")).to_contain_text("up")
    expect(page.locator("#health-facts")).to_contain_text("0 predictions waiting")
    expect(page.locator("#monitoring")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#quality")).to_contain_text(f"{accuracy['live']:.4f} on {accuracy['count']} reported beans")
    expect(page.locator("#quality")).to_contain_text(f"{accuracy['training']:.4f}")
    expect(page.locator("#drift")).to_contain_text(f"newest {drift['beans']} of the last {drift['window']} records")
    page.screenshot(path=shots / "health-and-monitoring.png", full_page=True)
    page.context.close()


@pytest.mark.parametrize("width", [390, 1280])
def test_the_page_fits_the_width_offline(browser: Browser, server: Server, shots: Path, width: int) -> None:
    requested: list[str] = []
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.add_init_script(f"sessionStorage.setItem({TOKEN_KEY!r}, {TOKEN!r})")
    page = context.new_page()
    page.on("request", lambda request: requested.append(request.url))
    page.goto(server.url + "/")
    expect(page.locator("#records-table tbody tr").first).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#confusion tr")).to_have_count(len(CLASSES) + 1)
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    expect(page.locator("#models-table tbody tr")).to_have_count(2, timeout=WAIT_MS)
    for panel in ("#classify", "#file", "#records", "#model", "#models", "#health"):
        box = page.locator(panel).bounding_box()
        assert box is not None and box["width"] > 0.5 * width - 40 and box["x"] + box["width"] <= width, panel
    assert all(url.startswith(server.url) for url in requested), "the page loads nothing from elsewhere"
    page.screenshot(path=shots / f"width-{width}.png", full_page=True)
    context.close()


def test_accessibility_basics(browser: Browser, server: Server) -> None:
    page = open_console(browser, server)
    unlabelled = page.evaluate("""[...document.querySelectorAll('input, select, textarea')]
        .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label')).map(e => e.id || e.outerHTML)""")
    assert unlabelled == []

    # Keyboard only: tab from the top of the page into the bean form, submit with Enter.
    page.locator("body").focus()
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.closest('#bean-form') !== null"):
            break
    else:
        pytest.fail("Tab never reached the bean form")
    page.keyboard.press("Enter")
    expect(page.locator("#bean-label")).to_have_text("DERMASON", timeout=WAIT_MS)

    # Contrast of text against the background it is drawn on (WCAG 2 relative luminance).
    expect(page.locator("#records-table tbody td").first).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#models-table button").first).to_be_visible(timeout=WAIT_MS)
    ratios = page.evaluate("""selectors => selectors.map(s => {
        const el = document.querySelector(s);
        if (!el) return [s, 0];  // missing: reported as unreadable
        const rgb = c => c.match(/[\\d.]+/g).map(Number);
        const lum = ([r, g, b]) => [r, g, b].map(v => v / 255)
            .map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
            .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
        let back = el;
        while (back && rgb(getComputedStyle(back).backgroundColor)[3] === 0) back = back.parentElement;
        const bg = back ? rgb(getComputedStyle(back).backgroundColor) : [255, 255, 255];
        const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(bg)].sort((x, y) => y - x);
        return [s, (a + 0.05) / (b + 0.05)];
    })""", ["body", "h1", ".top p", "#classify .muted", ".hint", ".field label", ".unit", "#bean-form button",
            "#example-bean", "#model-facts dd", "#health-facts dt", "#records-table td", ".bar-row .value",
            "#models-table td", "#models-table button", "#audit-table th", "#bean-flag", "#bean-set .chip"])
    low = [(selector, round(ratio, 2)) for selector, ratio in ratios if ratio < 4.5]
    assert low == [], low
    page.context.close()


def test_docs_show_the_services_own_title_description_and_version(server: Server) -> None:
    from service import DryBeans

    info = httpx.get(f"{server.url}/docs.json").json()["info"]
    assert info["title"] == "drybeans"
    assert info["description"] == inspect.getdoc(DryBeans.inner)
    assert info["version"] == project_version() and re.fullmatch(r"\d+\.\d+\.\d+.*", info["version"])
    assert "BentoML" not in str(info)
    assert "/v1/model" in httpx.get(f"{server.url}/docs.json").json()["paths"]


def test_model_endpoint_is_the_model_store_metadata(server: Server) -> None:
    stored = bentoml.models.get("drybean_svc:latest")
    card = httpx.get(f"{server.url}/v1/model").json()
    metrics = stored.info.metadata["metrics"]
    assert card["tag"] == str(stored.tag)
    assert card["holdout_accuracy"] == metrics["holdout_accuracy"] and card["macro_f1"] == metrics["macro_f1"]
    assert card["per_class_f1"] == {name: scores["f1"] for name, scores in metrics["per_class"].items()}
    assert card["confusion_matrix"] == metrics["confusion_matrix"]
    assert card["training_data"]["class_counts"] == stored.info.metadata["dataset"]["class_counts"]
    assert card["trained_at"].startswith(stored.info.creation_time.strftime("%Y-%m-%dT%H:%M"))


def test_the_console_works_under_its_content_security_policy_which_refuses_injected_code(
        browser: Browser, server: Server, shots: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(f"sessionStorage.setItem({TOKEN_KEY!r}, {TOKEN!r})")
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    answer = page.goto(server.url + "/")
    assert answer is not None and "script-src 'self'" in answer.headers["content-security-policy"]
    page.locator("#bean-form button[type=submit]").click()
    expect(page.locator("#bean-label")).to_have_text("DERMASON", timeout=WAIT_MS)
    expect(page.locator("#records-table tbody tr").first).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#model-facts")).to_contain_text("holdout accuracy", timeout=WAIT_MS)
    expect(page.locator("#confusion tr")).to_have_count(len(CLASSES) + 1)
    expect(page.locator("#models-table tbody tr")).to_have_count(2, timeout=WAIT_MS)
    assert page.evaluate("window.cspViolations") == []
    page.screenshot(path=shots / "under-csp.png", full_page=True)
    ran, violations = page.evaluate(INJECTION)
    assert not ran
    assert {violation.split()[0] for violation in violations} == {"script-src-elem", "style-src-attr"}
    context.close()


def test_docs_render_swagger_ui_with_every_request_to_the_service_itself(browser: Browser, server: Server,
                                                                        shots: Path) -> None:
    """Served under a host name (not localhost, where Swagger UI skips its online validator), every request the
    page makes goes to the service, and Swagger UI lists each operation of the OpenAPI document."""
    port = server.url.rsplit(":", 1)[1]
    origin = f"http://drybeans.test:{port}"
    document = httpx.get(f"{server.url}/docs.json").json()
    operations = sum(len(HTTP_METHODS & set(methods)) for methods in document["paths"].values())
    requested: list[str] = []
    named_host = browser.browser_type.launch(executable_path=str(CHROMIUM), args=[
        *CHROMIUM_ARGS, "--host-resolver-rules=MAP drybeans.test 127.0.0.1"])
    try:
        context = named_host.new_context(viewport={"width": 1280, "height": 900})
        context.add_init_script(RECORD_VIOLATIONS)
        page = context.new_page()
        page.on("request", lambda request: requested.append(request.url))
        answer = page.goto(origin + "/docs")
        assert answer is not None and answer.headers["x-frame-options"] == "DENY"
        expect(page.locator(".opblock")).to_have_count(operations, timeout=WAIT_MS)
        expect(page.locator(".opblock-summary-path", has_text="/v1/classify")).to_be_visible()
        page.locator(".opblock-summary-path[data-path='/v1/model']").click()  # not /v1/models/...
        page.locator(".try-out__btn").click()
        page.locator(".execute").click()
        expect(page.locator(".live-responses-table tr.response .response-col_status").first).to_have_text("200",
                                                                                               timeout=WAIT_MS)
        page.wait_for_load_state("networkidle")
        violations = page.evaluate("window.cspViolations")
        page.screenshot(path=shots / "docs.png", full_page=False)
    finally:
        named_host.close()
    assert operations > 10 and violations == []
    assert f"{origin}/docs/swagger-ui/swagger-ui-bundle.js" in requested and f"{origin}/docs.json" in requested
    assert [url for url in requested if not url.startswith(origin + "/")] == []


def loaded_models(server: Server, token: str = TOKEN) -> dict:
    """GET /v1/models as the console reads it."""
    answer = httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def model_row(page: Page, version: str) -> Locator:
    return page.locator(f"#models-table tr[data-version='{version}']")


def newest_audit_entry(page: Page) -> Locator:
    return page.locator("#audit-table tbody tr").first.locator("td")


def test_the_models_panel_lists_each_loaded_model_with_its_role(browser: Browser, server: Server,
                                                               two_models: tuple[str, str], shots: Path) -> None:
    champion, idle = two_models
    listed = loaded_models(server)
    models = {model["version"]: model for model in listed["models"]}
    assert set(models) == {champion, idle} and listed["previous_champion"] is None
    page = open_console(browser, server)
    expect(page.locator("#models-table tbody tr")).to_have_count(2, timeout=WAIT_MS)
    for version, role in ((champion, "champion"), (idle, "idle")):
        expect(model_row(page, version).locator("td").nth(1)).to_have_text(role)
        expect(model_row(page, version).locator("td")).to_have_text([
            version, role, "", models[version]["trained_at"].replace("T", " ")[:19] + " UTC",
            f"{metadata()['metrics']['holdout_accuracy']:.4f}", "linear", re.compile(r".*")])
    expect(model_row(page, champion).locator("button")).to_have_count(0)
    expect(model_row(page, idle).locator("button[data-action]")).to_have_text(["Shadow", "Canary", "Promote", "Idle"])
    expect(model_row(page, idle).locator("button[data-action=idle]")).to_be_disabled()
    expect(page.locator("#rollback")).to_be_hidden()
    expect(page.locator("#model-tag")).to_have_text(f"drybean_svc:{champion}")
    page.screenshot(path=shots / "models.png", full_page=True)
    page.context.close()


def test_a_shadow_set_in_the_panel_shows_in_the_table_the_comparison_and_the_audit(
        browser: Browser, server: Server, two_models: tuple[str, str], shared_csv: Path, shots: Path) -> None:
    champion, challenger = two_models
    page = open_console(browser, server)
    row = model_row(page, challenger)
    page.fill("#role-reason", "console test: shadow the older model")
    row.locator("[name=shadow-share]").fill("0.5")
    row.locator("button[data-action=shadow]").click()
    expect(page.locator("#models-status")).to_have_text(f"{challenger} is now shadow (share 0.5).", timeout=WAIT_MS)
    expect(row.locator("td").nth(1)).to_have_text("shadow")
    expect(row.locator("td").nth(2)).to_have_text("0.5")
    expect(newest_audit_entry(page)).to_have_text([re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"), "shadow",
                                                   challenger, API_TOKEN_NAME, "console test: shadow the older model"])
    comparison = page.locator(f"#comparisons [data-version='{challenger}']")
    expect(comparison).to_contain_text(f"The shadow {challenger} against the champion {champion}")

    dataset = read_dataset(shared_csv)
    beans = [dict(zip(FEATURES, row, strict=True)) for row in dataset.features.head(40).to_numpy().tolist()]
    for start in range(0, len(beans), 4):
        assert httpx.post(f"{server.url}/v1/classify", json={"beans": beans[start:start + 4]}).status_code == 200
    figures = settled_comparison(server, challenger)
    expect(comparison).to_contain_text(f"agreement{figures['agreement']:.4f} on {figures['counts']['scored']} beans",
                                       timeout=WAIT_MS)
    assert figures["agreement"] == 1.0  # the same pipeline under two versions
    expect(comparison).to_contain_text(f"verdict{figures['verdict']}")
    expect(comparison).to_contain_text(f"McNemar p-value{figures['mcnemar']['p_value']:#.3g}")
    for side in ("champion", "challenger"):
        latency = figures["latency"][side]
        expect(comparison).to_contain_text(f"{side} latencymedian {latency['median_ms']:.2f} ms, "
                                           f"p99 {latency['p99_ms']:.2f} ms ({latency['requests']} requests)")
    page.screenshot(path=shots / "models-shadow.png", full_page=True)

    page.fill("#role-reason", "console test: enough")
    row.locator("button[data-action=idle]").click()
    expect(row.locator("td").nth(1)).to_have_text("idle", timeout=WAIT_MS)
    expect(row.locator("td").nth(2)).to_have_text("")
    expect(newest_audit_entry(page).nth(1)).to_have_text("idle")
    expect(page.locator("#comparisons .comparison")).to_have_count(0)
    page.context.close()


def settled_comparison(server: Server, challenger: str) -> dict:
    """GET /v1/models/compare once the shadow has scored what it will (two equal answers a second apart)."""
    previous = None
    for _ in range(30):
        answer = httpx.get(f"{server.url}/v1/models/compare", params={"challenger": challenger},
                           headers={"Authorization": f"Bearer {TOKEN}"}).json()
        if answer["counts"]["scored"] and answer == previous:
            return answer  # type: ignore[no-any-return]
        previous = answer
        time.sleep(1)
    pytest.fail(f"the comparison never settled: {previous}")


def test_promote_and_roll_back_from_the_panel(browser: Browser, server: Server, two_models: tuple[str, str],
                                             shots: Path) -> None:
    champion, challenger = two_models
    page = open_console(browser, server)
    row = model_row(page, challenger)
    row.locator("[name=force]").check()
    row.locator("button[data-action=promote]").click()
    expect(row.locator("td").nth(1)).to_have_text("champion", timeout=WAIT_MS)
    expect(model_row(page, champion).locator("td").nth(1)).to_have_text("idle")
    expect(page.locator("#model-tag")).to_have_text(f"drybean_svc:{challenger}")
    expect(newest_audit_entry(page).nth(1)).to_have_text("promote")
    rollback = page.locator("#rollback")
    expect(rollback).to_have_text(f"Roll back to {champion}")
    page.screenshot(path=shots / "models-promoted.png", full_page=True)

    rollback.click()
    expect(model_row(page, champion).locator("td").nth(1)).to_have_text("champion", timeout=WAIT_MS)
    expect(row.locator("td").nth(1)).to_have_text("idle")
    expect(page.locator("#models-status")).to_have_text(f"{champion} is now champion.")
    expect(rollback).to_have_text(f"Roll back to {challenger}")
    expect(newest_audit_entry(page).nth(1)).to_have_text("rollback")
    expect(newest_audit_entry(page).nth(2)).to_have_text(champion)
    assert loaded_models(server)["previous_champion"] == challenger
    page.context.close()


def test_a_refused_role_change_shows_the_apis_message(browser: Browser, server: Server, two_models: tuple[str, str],
                                                     read_token: tuple[Path, str], shots: Path) -> None:
    _, challenger = two_models
    canary = httpx.post(f"{server.url}/v1/models/{challenger}/canary", json={"share": 0.9},
                        headers={"Authorization": f"Bearer {TOKEN}"})
    assert canary.status_code == 422
    assert canary.json()["error"] == SHARE_OUT_OF_RANGE.format(share=0.9, low=0, high=MAX_CANARY_SHARE)
    page = open_console(browser, server)
    row = model_row(page, challenger)
    row.locator("[name=canary-share]").fill("0.9")
    row.locator("button[data-action=canary]").click()
    expect(page.locator("#models-error")).to_have_text(canary.json()["error"], timeout=WAIT_MS)
    expect(row.locator("td").nth(1)).to_have_text("idle")
    page.context.close()

    # A token that may read: the panel lists the models, and the API's refusal of a promotion is shown.
    _, viewer = read_token
    promote = httpx.post(f"{server.url}/v1/models/{challenger}/promote", json={"force": True},
                         headers={"Authorization": f"Bearer {viewer}"})
    assert promote.status_code == 403
    page = open_console(browser, server, token=viewer)
    row = model_row(page, challenger)
    row.locator("[name=force]").check()
    row.locator("button[data-action=promote]").click()
    expect(page.locator("#models-error")).to_have_text(promote.json()["error"], timeout=WAIT_MS)
    expect(row.locator("td").nth(1)).to_have_text("idle")
    expect(page.locator("#auth")).to_be_hidden()
    assert page.evaluate(f"sessionStorage.getItem({TOKEN_KEY!r})") == viewer
    page.screenshot(path=shots / "models-refused.png", full_page=True)
    page.context.close()
