"""The documentation's links hold: every relative link in README.md, docs/ and
benchmarks/README.md reaches a file of the repository (and a heading, for an anchor), none
leaves the repository, the README stays a front page, and the docs index lists every page.

Anchors follow GitHub's heading slugs: lower case, punctuation dropped (hyphens and
underscores kept), spaces to hyphens, and -1, -2... for repeated headings."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
README_MAX_LINES = 200

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^()\s]*(?:\([^()\s]*\)[^()\s]*)*)(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(\S+)", re.M)
AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.-]{1,31}:[^\s<>]*)>")
BARE_URL = re.compile(r"\b(?:https?|ftp)://\S+|\bwww\.\S+", re.I)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$", re.M)
HTML_ANCHOR = re.compile(r"<a\s[^>]*\b(?:name|id)=\"([^\"]+)\"", re.I)


def pages(root: Path) -> list[Path]:
    """The pages the test covers: the front page, every page under docs/, the benchmarks' record."""
    found = [root / "README.md", *sorted((root / "docs").rglob("*.md")), root / "benchmarks" / "README.md"]
    return [page for page in found if page.is_file()]


def prose(text: str) -> str:
    """The text without code: links and URLs in fenced blocks and code spans are not links.
    Each removed block keeps its line breaks so that line numbers still match."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return CODE_SPAN.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for match in HEADING.finditer(FENCE.sub("", text)):
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    found.update(HTML_ANCHOR.findall(text))
    return found


def links(text: str) -> list[tuple[int, str]]:
    """Every link target in a page, with its line: inline links and images, reference
    definitions, autolinks, and bare URLs (which GitHub also renders as links)."""
    body = prose(text)
    found: list[tuple[int, str]] = []

    def line(at: int) -> int:
        return body.count("\n", 0, at) + 1

    for pattern in (INLINE_LINK, REFERENCE_DEFINITION, AUTOLINK):
        for match in pattern.finditer(body):
            found.append((line(match.start()), match.group(1).strip("<>")))
    rest = INLINE_LINK.sub(lambda m: " " * len(m.group(0)), body)
    rest = AUTOLINK.sub(lambda m: " " * len(m.group(0)), rest)
    for match in BARE_URL.finditer(rest):
        found.append((line(match.start()), match.group(0)))
    return sorted(found)


def problems_with_link(root: Path, page: Path, target: str) -> str | None:
    """Why a link does not resolve inside the repository, or None if it does."""
    if not target:
        return "an empty link"
    if SCHEME.match(target) or target.startswith(("//", "www.")):
        return "leaves the repository (a URL)"
    if target.startswith("/") or target.startswith("\\"):
        return "an absolute path: links must be relative, inside the repository"
    path_part, _, anchor = target.partition("#")
    path_part = unquote(path_part)
    if path_part:
        resolved = (page.parent / path_part).resolve()
        if not resolved.is_relative_to(root.resolve()):
            return "leaves the repository (a path above its root)"
        if not resolved.exists():
            return f"no such file: {resolved.relative_to(root.resolve())}"
    else:
        resolved = page.resolve()
    if anchor:
        if resolved.suffix != ".md" or not resolved.is_file():
            return f"an anchor into {resolved.name}, which is not a page"
        if anchor not in anchors(resolved.read_text()):
            return f"no heading #{anchor} in {resolved.relative_to(root.resolve())}"
    return None


def broken_links(root: Path) -> list[str]:
    found = []
    for page in pages(root):
        text = page.read_text()
        name = page.relative_to(root)
        for number, target in links(text):
            problem = problems_with_link(root, page, target)
            if problem:
                found.append(f"{name}:{number}: ({target}) {problem}")
        if "/work/shared" in text:
            found.append(f"{name}: names /work/shared, which is not part of the repository")
    return found


def pages_missing_from_index(root: Path) -> list[str]:
    index = root / "docs" / "README.md"
    linked = {(index.parent / unquote(target.partition("#")[0])).resolve()
              for _, target in links(index.read_text()) if not SCHEME.match(target)}
    return [str(page.relative_to(root)) for page in sorted((root / "docs").rglob("*.md"))
            if page != index and page.resolve() not in linked]


# The repository's pages.

def test_every_link_in_the_readme_and_docs_resolves_inside_the_repository() -> None:
    assert pages(ROOT)[0] == ROOT / "README.md" and ROOT / "benchmarks" / "README.md" in pages(ROOT)
    assert broken_links(ROOT) == []


def test_the_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_every_docs_page_is_listed_in_the_index() -> None:
    assert pages_missing_from_index(ROOT) == []


# The checker itself, on small samples: each kind of broken link is caught.

def sample(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


GOOD = {
    "README.md": "# Engine\n\nSee [the guide](docs/guide.md#deciding-a-task) and [index](docs/README.md).\n",
    "docs/README.md": "# Docs\n\n[guide](guide.md), [extra](extra.md)\n",
    "docs/extra.md": "# Extra\n",
    "docs/guide.md": "# Guide\n\n## Deciding a task\n\nBack to [the top](#guide), [code](../src/app.py).\n",
    "src/app.py": "",
    "benchmarks/README.md": "# Bench\n\n[a run](results/run.json), [ops](../docs/guide.md)\n",
    "benchmarks/results/run.json": "{}",
}


def test_a_sample_with_good_links_passes(tmp_path: Path) -> None:
    root = sample(tmp_path, GOOD)
    assert broken_links(root) == []
    assert pages_missing_from_index(root) == []


@pytest.mark.parametrize(("page", "text", "expected"), [
    ("docs/extra.md", "# Guide\n\n[gone](missing.md)\n", "docs/extra.md:3: (missing.md) no such file: docs/missing.md"),
    ("docs/extra.md", "# Guide\n\n[no heading](#deciding)\n", "no heading #deciding in docs/extra.md"),
    ("README.md", "# E\n\n[x](docs/guide.md#nowhere)\n", "no heading #nowhere in docs/guide.md"),
    ("README.md", "# E\n\n[web](https://example.org/page)\n", "leaves the repository (a URL)"),
    ("README.md", "# E\n\nSee <http://127.0.0.1:8233>.\n", "(http://127.0.0.1:8233) leaves the repository (a URL)"),
    ("README.md", "# E\n\nSee https://example.org for more.\n", "leaves the repository (a URL)"),
    ("README.md", "# E\n\n[up](../outside.md)\n", "leaves the repository (a path above its root)"),
    ("docs/extra.md", "# G\n\n[spec](/srv/spec/rules.md)\n", "an absolute path"),
    ("docs/extra.md", "# G\n\nThe spec is in /work/shared/spec.\n", "names /work/shared"),
    ("benchmarks/README.md", "# B\n\n[run](results/other.json)\n", "no such file: benchmarks/results/other.json"),
    ("docs/extra.md", "# G\n\n[ref]: ../nowhere.md\n", "no such file: nowhere.md"),
    ("docs/extra.md", "# G\n\n[json anchor](../benchmarks/results/run.json#x)\n", "which is not a page"),
])
def test_the_checker_catches_a_broken_link(tmp_path: Path, page: str, text: str, expected: str) -> None:
    root = sample(tmp_path, {**GOOD, page: text})
    found = broken_links(root)
    assert len(found) == 1 and expected in found[0], found


def test_links_in_code_are_not_links(tmp_path: Path) -> None:
    text = "# G\n\n`[x](missing.md)` and `http://127.0.0.1:8233`\n\n```\n[y](gone.md) https://a.example\n```\n"
    root = sample(tmp_path, {**GOOD, "docs/extra.md": text})
    assert broken_links(root) == []


def test_a_page_missing_from_the_index_is_found(tmp_path: Path) -> None:
    root = sample(tmp_path, {**GOOD, "docs/orphan.md": "# Orphan\n"})
    assert pages_missing_from_index(root) == ["docs/orphan.md"]


@pytest.mark.parametrize(("heading", "anchor"), [
    ("The stack (`docker-compose.yml`)", "the-stack-docker-composeyml"),
    ("The 200,000 rehearsal (`./run bench-onboard`)", "the-200000-rehearsal-run-bench-onboard"),
    ("Decision: re-importing does not undo a reassignment", "decision-re-importing-does-not-undo-a-reassignment"),
    ("`closed_certificates`", "closed_certificates"),
    ("The operator's command line", "the-operators-command-line"),
    ("Why the targets are still missed, and what would meet them", "why-the-targets-are-still-missed-and-what-would-meet-them"),
])
def test_heading_slugs_follow_github(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_repeated_headings_get_numbered_anchors() -> None:
    assert anchors("# A\n\n## Notes\n\n## Notes\n\n```\n## Not a heading\n```\n") == {"a", "notes", "notes-1"}
