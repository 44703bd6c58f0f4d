"""Structural checks of the book's sources: table of contents, notebooks, Colab cell.

These run without executing anything; nbval re-runs the notebooks and
tests/test_site.py checks the built website.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

from book_files import CONFIG, REPO_ROOT, SOURCE_SUFFIXES, TOC, source_of, toc_entries, toc_notebooks
from colab_cell import COLAB_MARKER, colab_setup_cell, write_colab_cell

MAX_NOTEBOOK_BYTES = 8 * 1024 * 1024
TOC_NOTEBOOKS = toc_notebooks()


def load(notebook: Path) -> dict:
    return json.loads(notebook.read_text(encoding="utf-8"))


def code_cells(nb: dict) -> list[dict]:
    return [cell for cell in nb["cells"] if cell["cell_type"] == "code"]


def text(cell: dict) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def headings(nb: dict, level: int) -> list[str]:
    """Markdown headings of the given level, in order, outside fenced code."""
    found = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        in_fence = False
        for line in text(cell).splitlines():
            if line.lstrip().startswith(("```", "~~~")):
                in_fence = not in_fence
            elif not in_fence and re.match(rf"^#{{{level}}}\s", line):
                found.append(line[level:].strip())
    return found


def rel(path: Path) -> str:
    return path.relative_to(REPO_ROOT).as_posix()


notebook_params = pytest.mark.parametrize("notebook", TOC_NOTEBOOKS, ids=rel)


# --------------------------------------------------------------------------- toc and config


def test_toc_structure():
    assert TOC.get("format") == "jb-book", "_toc.yml must use format: jb-book"
    captions = [part.get("caption") for part in TOC.get("parts", [])]
    assert captions and all(captions), f"every part of _toc.yml needs a caption; got {captions}"
    assert captions[0] == "Recap", f"the book starts with the Recap part; parts are {captions}"
    assert toc_entries()[-1] == "book/references", "the last page of the book is book/references"


def test_every_toc_file_exists():
    missing = [entry for entry in toc_entries() if source_of(entry) is None]
    assert not missing, (
        "files listed in _toc.yml do not exist (looked for "
        f"{' or '.join(SOURCE_SUFFIXES)}): {missing}"
    )


def test_toc_has_no_duplicates():
    entries = toc_entries()
    duplicates = sorted({e for e in entries if entries.count(e) > 1})
    assert not duplicates, f"_toc.yml lists these files more than once: {duplicates}"


def test_no_source_outside_toc():
    """Every page under book/ is in the toc, so nothing is silently left out of the site."""
    listed = {source_of(e) for e in toc_entries()}
    pages = {
        p
        for suffix in SOURCE_SUFFIXES
        for p in (REPO_ROOT / "book").rglob(f"*{suffix}")
        if not any(part.startswith((".", "_")) for part in p.relative_to(REPO_ROOT).parts)
    }
    orphans = sorted(rel(p) for p in pages - listed)
    assert not orphans, f"pages under book/ that _toc.yml does not list: {orphans}"


def test_repository_url_is_configured():
    url = CONFIG["repository"]["url"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url), (
        f"repository.url in _config.yml must look like https://github.com/ORG/REPO; got {url!r}"
    )
    assert CONFIG["repository"].get("branch"), "repository.branch must be set in _config.yml"


def test_math_is_served_offline():
    extensions = CONFIG["sphinx"]["extra_extensions"]
    assert "sphinx-mathjax-offline" in extensions, (
        "_config.yml must load sphinx-mathjax-offline so MathJax comes from _static, not a CDN"
    )


def test_bibliography_has_the_cited_keys():
    bib = (REPO_ROOT / "book" / "references.bib").read_text(encoding="utf-8")
    keys = re.findall(r"^@\w+\{([^,]+),", bib, flags=re.MULTILINE)
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    assert not duplicates, f"references.bib defines these keys twice: {duplicates}"
    for key in ("song2019generative", "ho2020denoising", "song2021denoising", "janner2022planning"):
        assert key in keys, f"references.bib has no entry {key!r}"


# --------------------------------------------------------------------------- Colab cell


def test_colab_cell_uses_configured_repository():
    cell = colab_setup_cell("book/recap")
    url, branch = CONFIG["repository"]["url"], CONFIG["repository"]["branch"]
    assert f"git clone --depth 1 --branch {branch} {url} " in cell
    assert 'os.chdir("/content/book/book/recap")' in cell
    assert COLAB_MARKER in cell


def _compiled_colab_cell():
    from IPython.core.inputtransformer2 import TransformerManager

    python = TransformerManager().transform_cell(colab_setup_cell("book/recap"))
    return compile(python, "<colab cell>", "exec")


class _RecordingShell:
    """Stands in for IPython's shell: records the shell commands and magics a cell runs."""

    def __init__(self):
        self.calls = []

    def system(self, command):
        self.calls.append(("!", command))

    def run_line_magic(self, name, line, *args):
        self.calls.append(("%", f"{name} {line}"))


def test_colab_cell_does_nothing_outside_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    shell = _RecordingShell()
    exec(_compiled_colab_cell(), {"get_ipython": lambda: shell})
    assert shell.calls == [], f"outside Colab the cell must not run anything; it ran {shell.calls}"


def test_colab_cell_clones_installs_and_enters_the_notebook_folder(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    shell = _RecordingShell()
    monkeypatch.setattr(os.path, "isdir", lambda path: False)
    monkeypatch.setattr(os, "chdir", lambda path: shell.calls.append(("cd", path)))
    exec(_compiled_colab_cell(), {"get_ipython": lambda: shell})
    url, branch = CONFIG["repository"]["url"], CONFIG["repository"]["branch"]
    assert shell.calls == [
        ("!", f"git clone --depth 1 --branch {branch} {url} /content/book"),
        ("%", "pip install --quiet -e /content/book"),
        ("cd", "/content/book/book/recap"),
    ]
    assert sys.path[0] == "/content/book"


class _RunningShell:
    """Stands in for Colab's IPython shell and runs what the cell asks: ``!`` commands in a real
    shell; ``%pip install`` as ``pip install --dry-run --no-deps`` (pip resolves the clone as an
    installable project, and nothing in this environment changes)."""

    def __init__(self):
        self.calls = []

    def system(self, command):
        self.calls.append(("!", command))
        done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"the Colab cell's command failed: {command}\n{done.stderr[-2000:]}"

    def run_line_magic(self, name, line, *args):
        self.calls.append(("%", f"{name} {line}"))
        assert name == "pip" and line.startswith("install "), f"unexpected magic %{name} {line}"
        command = [sys.executable, "-m", "pip", *line.split(), "--dry-run", "--no-deps", "--no-build-isolation"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"pip refused the Colab cell's install: {line}\n{done.stderr[-2000:]}"


def test_colab_cell_sets_up_a_working_clone(monkeypatch, tmp_path):
    """The set-up cell run for real, with Colab simulated and this repository cloned from disk in
    place of its web address: the clone is made, pip accepts it, the cell ends in the notebook's
    folder of the clone, and tutorial_lib imports from the clone."""
    import colab_cell
    from IPython.core.inputtransformer2 import TransformerManager

    head = subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                          text=True)
    if head.returncode != 0 or head.stdout.strip() == "HEAD":
        pytest.skip("not on a git branch: nothing to clone with --branch")
    clone = tmp_path / "content" / "book"
    monkeypatch.setattr(colab_cell, "COLAB_CLONE_DIR", str(clone))
    cell = colab_cell.colab_setup_cell("book/recap", url=f"file://{REPO_ROOT}", branch=head.stdout.strip())
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    shell = _RunningShell()
    exec(compile(TransformerManager().transform_cell(cell), "<colab cell>", "exec"), {"get_ipython": lambda: shell})

    assert [kind for kind, _ in shell.calls] == ["!", "%"]
    assert Path.cwd() == clone / "book" / "recap"
    assert sys.path[0] == str(clone)
    assert {p.name for p in (REPO_ROOT / "book" / "recap").glob("*.ipynb")} <= {p.name for p in Path.cwd().glob("*.ipynb")}
    where = subprocess.run([sys.executable, "-c", "import tutorial_lib; print(tutorial_lib.__file__)"],
                           env=dict(os.environ, PYTHONPATH=str(clone)), capture_output=True, text=True, cwd=Path.cwd())
    assert where.returncode == 0 and where.stdout.strip().startswith(str(clone)), where.stderr[-1000:]
    assert (clone / "data" / "MANIFEST.json").is_file(), "the clone lacks the shipped data the notebooks load"


def test_colab_cell_rejects_a_path_outside_the_repository():
    with pytest.raises(ValueError, match="relative to the repository root"):
        colab_setup_cell("../elsewhere")


def test_write_colab_cell_inserts_then_replaces(tmp_path, monkeypatch):
    import colab_cell

    monkeypatch.setattr(colab_cell, "REPO_ROOT", tmp_path)
    notebook = tmp_path / "book" / "part" / "demo.ipynb"
    notebook.parent.mkdir(parents=True)
    nb = {
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": "# Demo"},
            {"cell_type": "code", "metadata": {}, "source": "x = 1", "outputs": [], "execution_count": 1},
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    notebook.write_text(json.dumps(nb))

    assert write_colab_cell(notebook) is True
    cells = load(notebook)["cells"]
    assert [c["cell_type"] for c in cells] == ["markdown", "code", "code"]
    assert text(cells[1]) == colab_setup_cell("book/part")
    assert text(cells[2]) == "x = 1"

    assert write_colab_cell(notebook) is False, "a second write must leave the notebook alone"

    stale = load(notebook)
    stale["cells"][1]["source"] = text(stale["cells"][1]).replace("--branch", "--branch old")
    notebook.write_text(json.dumps(stale))
    assert write_colab_cell(notebook) is True
    cells = load(notebook)["cells"]
    assert len(cells) == 3, "an outdated Colab cell is replaced, not duplicated"
    assert text(cells[1]) == colab_setup_cell("book/part")


# --------------------------------------------------------------------------- notebooks


@notebook_params
def test_first_code_cell_is_the_colab_cell(notebook):
    cells = code_cells(load(notebook))
    assert cells, f"{rel(notebook)} has no code cell"
    first = text(cells[0])
    url = CONFIG["repository"]["url"]
    assert url in first, (
        f"the first code cell of {rel(notebook)} does not contain repository.url ({url}) of "
        f"_config.yml; run: python book/_ext/colab_cell.py --write {rel(notebook)}"
    )
    expected = colab_setup_cell(notebook.parent.relative_to(REPO_ROOT).as_posix())
    assert first == expected, (
        f"the first code cell of {rel(notebook)} differs from the standard Colab cell; "
        f"run: python book/_ext/colab_cell.py --write {rel(notebook)}"
    )


@notebook_params
def test_notebook_has_stored_outputs(notebook):
    nb = load(notebook)
    cells = code_cells(nb)
    not_run = [i for i, cell in enumerate(cells) if cell.get("execution_count") is None]
    assert not not_run, (
        f"{rel(notebook)}: code cells {not_run} (0-based, code cells only) have no stored "
        "execution; the website shows stored outputs, so run the whole notebook and save it"
    )
    counts = [cell["execution_count"] for cell in cells]
    assert counts == sorted(set(counts)), (
        f"{rel(notebook)}: execution counts {counts} are not increasing; "
        "restart the kernel, run all cells in order and save"
    )
    assert any(cell.get("outputs") for cell in cells), f"{rel(notebook)} stores no outputs at all"
    errors = [
        i for i, cell in enumerate(cells)
        for out in cell.get("outputs", []) if out.get("output_type") == "error"
    ]
    assert not errors, f"{rel(notebook)}: code cells {errors} stored an error"


@notebook_params
def test_notebook_uses_python3_kernel(notebook):
    kernel = load(notebook).get("metadata", {}).get("kernelspec", {}).get("name")
    assert kernel == "python3", f"{rel(notebook)} uses kernel {kernel!r}; the book uses 'python3'"


@notebook_params
def test_notebook_ends_with_summary_and_exercises(notebook):
    nb = load(notebook)
    sections = headings(nb, level=2)
    assert sections[-2:] == ["Summary", "Exercises"], (
        f"{rel(notebook)} must end with the sections '## Summary' then '## Exercises'; "
        f"its last level-2 headings are {sections[-3:]}"
    )
    markdown = "\n".join(text(c) for c in nb["cells"] if c["cell_type"] == "markdown")
    exercises = markdown[markdown.rfind("## Exercises"):]
    n_exercises = len(re.findall(r"```+\{exercise\}", exercises))
    # a solution is a {solution} directive, or a gated {solution-start} ... {solution-end}
    # pair, which lets code cells run inside the solution
    solutions = re.findall(r"```+\{solution(?:-start)?\}[^\n]*\n((?::[^\n]*\n)*)", exercises)
    n_starts = len(re.findall(r"```+\{solution-start\}", exercises))
    assert n_starts == len(re.findall(r"```+\{solution-end\}", exercises)), (
        f"{rel(notebook)}: every {{solution-start}} needs a {{solution-end}}"
    )
    assert n_exercises >= 1, f"the Exercises section of {rel(notebook)} has no {{exercise}} directive"
    assert len(solutions) == n_exercises, (
        f"{rel(notebook)} has {n_exercises} exercises but {len(solutions)} solutions"
    )
    hidden = [opts for opts in solutions if re.search(r"^:class:.*\bdropdown\b", opts, re.MULTILINE)]
    assert len(hidden) == len(solutions), (
        f"every solution in {rel(notebook)} must be hidden with ':class: dropdown'"
    )


@notebook_params
def test_notebook_is_small(notebook):
    size = notebook.stat().st_size
    assert size <= MAX_NOTEBOOK_BYTES, (
        f"{rel(notebook)} is {size / 2**20:.1f} MB, over the 8 MB limit; store fewer or smaller "
        "figures and animation frames (lower dpi, fewer frames)"
    )


# --------------------------------------------------------------------------- numbers quoted in pages
def outputs_text(nb: dict) -> str:
    """Every printed output (stream and text/plain) of a notebook, joined."""
    parts = []
    for cell in code_cells(nb):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(text({"source": out["text"]}))
            elif "text/plain" in out.get("data", {}):
                parts.append(text({"source": out["data"]["text/plain"]}))
    return "\n".join(parts)


QUOTING_PAGES = ["book/motivation/index.md", "book/summary.md"]


@pytest.mark.parametrize("page", QUOTING_PAGES)
def test_numbers_in_evidence_tables_are_printed_by_the_linked_notebooks(page):
    """A chapter page that quotes measured numbers in a table links the notebooks that print them;
    every decimal number of such a row must appear in the stored outputs of one of them."""
    path = REPO_ROOT / page
    rows = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.startswith("|") and "{doc}`" in line and re.search(r"\d\.\d", line)]
    assert rows, f"{page} has no table row quoting measured numbers"
    for row in rows:
        docs = re.findall(r"\{doc\}`(?:[^`<]*<)?([^`>]+)>?`", row)
        printed = "\n".join(outputs_text(load((path.parent / f"{d}.ipynb").resolve())) for d in docs
                            if (path.parent / f"{d}.ipynb").exists())
        assert printed, f"no linked notebook with outputs in row: {row}"
        for number in re.findall(r"(?<![\w.])-?\d+\.\d+", row.replace("\u2212", "-")):
            assert number in printed, f"{page}: {number} is not printed by {docs} (row: {row[:80]}...)"


# --------------------------------------------------------------------------- the intro's list of parts


def _intro_parts() -> list[tuple[str, str]]:
    """The numbered list of parts in book/intro.md: (part name, the item's text), in order."""
    intro = (REPO_ROOT / "book" / "intro.md").read_text(encoding="utf-8")
    items = re.split(r"\n(?=\d+\. \*\*)", intro.split("## What is inside", 1)[1].split("\n## ", 1)[0])
    parts = []
    for item in items:
        m = re.match(r"\d+\. \*\*([A-Za-z ]+?)[:.]", item.strip())
        if m:
            parts.append((m.group(1).strip(), " ".join(item.split())))
    return parts


def test_intro_lists_the_parts_of_the_toc_with_true_status():
    toc_parts = [part["caption"] for part in TOC["parts"] if part["caption"] != "References"]
    intro = _intro_parts()
    names = [name for name, _ in intro]
    assert names[: len(toc_parts)] == toc_parts, (
        f"book/intro.md lists the parts {names}, but _toc.yml has {toc_parts} in this order: "
        "the intro's 'What is inside' must list the toc's parts first, in order")
    for name, item in intro:
        written, coming = "*Written:*" in item, "*Coming.*" in item
        assert written != coming, f"the intro's item for {name!r} must say either *Written:* or *Coming.*"
        if name in toc_parts:
            part = next(p for p in TOC["parts"] if p["caption"] == name)
            index = part["chapters"][0]["file"]                       # e.g. book/practice/index
            link = "{doc}`" + index.removeprefix("book/") + "`"
            assert written and link in item, (
                f"part {name!r} is in _toc.yml, so the intro must mark it *Written:* and link {link}")
        else:
            assert coming, f"part {name!r} is not in _toc.yml, so the intro must mark it *Coming.*, not *Written:*"
