"""The README and docs/: links that resolve, a README that stays short, a configuration page that is current."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest
import yaml
from pydantic import AliasChoices

import config
from config.reference import settings_reference

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def prose(text: str) -> str:
    """The text without code blocks and inline code, where link-like text is not a link."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").replace("*", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor on `page`, repeated headings numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(page: Path) -> list[str]:
    return [target for target in LINK.findall(prose(page.read_text())) if not EXTERNAL.match(target)]


def test_the_slugs_are_githubs() -> None:
    assert slug("Prometheus, alerts and dashboard (`deploy/monitoring/`)") == \
        "prometheus-alerts-and-dashboard-deploymonitoring"
    assert slug("On Spark (Dataproc)") == "on-spark-dataproc"
    assert slug("Both workers busy, every run") == "both-workers-busy-every-run"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / unquote(path_part)).resolve() if path_part else page
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading with anchor #{anchor} in {linked.name}")
    assert broken == [], f"{page.name}: {broken}"


def test_every_docs_page_is_linked_from_the_readme_and_the_index() -> None:
    for index in (README, DOCS / "index.md"):
        linked = {(index.parent / target.partition("#")[0]).resolve() for target in relative_links(index)}
        unlinked = [page.name for page in DOCS.glob("*.md") if page != index and page.resolve() not in linked]
        if index == README:  # the README links the index and the pages a reader starts from, not the Bento's text
            unlinked = [name for name in unlinked if name != "bento.md"]
        assert unlinked == [], f"{index.name} does not link {unlinked}"


def test_the_readme_is_short_and_starts_with_the_two_commands() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 160, f"README.md has {len(lines)} lines; move the detail to docs/"
    assert lines[0] == "# DryBeans serving"
    block = lines[lines.index("```bash") + 1:lines.index("```")]
    assert lines.index("```bash") == 2
    assert [line.split("#")[0].split()[-2:] for line in block] == [["make", "serve"], ["make", "test"]]


def test_the_configuration_page_is_what_the_settings_render_now() -> None:
    rendered = settings_reference()
    assert (DOCS / "configuration.md").read_text() == rendered, \
        "docs/configuration.md is stale: .venv/bin/python -m config > docs/configuration.md"


def test_every_setting_is_on_the_configuration_page() -> None:
    page = (DOCS / "configuration.md").read_text()
    for name, field in config.Settings.model_fields.items():
        alias = field.validation_alias
        prefix = config.Settings.model_config["env_prefix"]
        variable = str(alias.choices[0]) if isinstance(alias, AliasChoices) else f"{prefix}{name.upper()}"
        assert f"| `{variable}` |" in page, f"{name} ({variable}) is not in docs/configuration.md"


def test_the_bentos_description_is_a_short_page_of_its_own() -> None:
    description = yaml.safe_load((ROOT / "bentofile.yaml").read_text())["description"]
    assert description.startswith("file: ./")
    page = ROOT / description.removeprefix("file: ./")
    assert page.is_file() and page != README
    assert len(page.read_text().splitlines()) < 60
