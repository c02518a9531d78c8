"""Every relative link in README.md and docs/*.md points at a file that exists, and every
``#anchor`` at a heading of its page (GitHub's rule for heading ids)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def prose(text: str) -> str:
    """The page without its fenced code blocks and inline code, where brackets are not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def prose_keeping_inline(text: str) -> str:
    """The page without fenced code blocks (headings keep their inline code's text)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def heading_ids(page: Path) -> set[str]:
    """The ids GitHub gives a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    ids: set[str] = set()
    counts: dict[str, int] = {}
    for heading in re.findall(
        r"^#{1,6}\s+(.+?)\s*#*\s*$", prose_keeping_inline(page.read_text()), flags=re.M
    ):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = counts.get(slug, 0)
        counts[slug] = n + 1
        ids.add(slug if n == 0 else f"{slug}-{n}")
    return ids


def links() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for target in LINK.findall(prose(page.read_text())):
            if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: are not checked here
                found.append((str(page.relative_to(ROOT)), target))
    return found


LINKS = links()


def test_the_pages_have_links_to_check() -> None:
    assert len(LINKS) >= 40
    assert ("README.md", "docs/images/widget-ultrasound.png") in LINKS


@pytest.mark.parametrize(("page", "target"), LINKS)
def test_every_relative_link_resolves(page: str, target: str) -> None:
    path, _, anchor = unquote(target).partition("#")
    file = (ROOT / page).parent / path if path else ROOT / page
    assert file.exists(), f"{page}: {target} names {file.relative_to(ROOT)}, which does not exist"
    if anchor and file.suffix == ".md":
        assert anchor in heading_ids(file), f"{page}: {target}: {file.name} has no heading #{anchor}"


def test_the_heading_ids_follow_githubs_rule(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Top\n## `default`: thyroid nodules\n## Ablation (Table II)\n## Top\n```\n# not a heading\n```\n"
    )
    assert heading_ids(page) == {"top", "default-thyroid-nodules", "ablation-table-ii", "top-1"}
