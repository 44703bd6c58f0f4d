"""Read the book's configuration and table of contents (shared by the tests)."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO_ROOT / "_config.yml").read_text(encoding="utf-8"))
TOC = yaml.safe_load((REPO_ROOT / "_toc.yml").read_text(encoding="utf-8"))

SOURCE_SUFFIXES = (".md", ".ipynb")


def toc_entries(toc: dict = TOC) -> list[str]:
    """Return every ``file`` of a jb-book table of contents, root first, in reading order."""
    entries = [toc["root"]]

    def walk(items):
        for item in items or []:
            if "file" in item:
                entries.append(item["file"])
            walk(item.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return entries


def source_of(entry: str) -> Path | None:
    """The source file of a toc entry (written without suffix), or None if none exists."""
    for suffix in SOURCE_SUFFIXES:
        path = REPO_ROOT / f"{entry}{suffix}"
        if path.is_file():
            return path
    return None


def toc_notebooks() -> list[Path]:
    """The notebooks listed in the table of contents that exist, in reading order."""
    sources = [source_of(entry) for entry in toc_entries()]
    return [path for path in sources if path is not None and path.suffix == ".ipynb"]
