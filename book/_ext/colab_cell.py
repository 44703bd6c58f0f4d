"""The first code cell of every notebook: set up tutorial_lib on Google Colab.

On Colab the notebook arrives alone, without the library or the data. The cell
clones the book's repository, installs ``tutorial_lib`` from it and moves into
the notebook's folder, so that the rest of the notebook runs as it does in a
local checkout. Anywhere else the cell does nothing.

The repository address is read from ``_config.yml`` (``repository.url`` and
``repository.branch``); ``tests/test_book.py`` checks that every notebook's
first code cell carries it.

Usage, from the repository root::

    python book/_ext/colab_cell.py book/recap/ddpm_ddim.ipynb          # print the cell
    python book/_ext/colab_cell.py --write book/recap/ddpm_ddim.ipynb  # put it in the notebook
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_PATH = REPO_ROOT / "_config.yml"

# Where the repository is cloned on Colab.
COLAB_CLONE_DIR = "/content/book"

COLAB_CELL_TEMPLATE = '''\
# On Google Colab only: fetch the book's code and install tutorial_lib.
import os
import sys

if "google.colab" in sys.modules:
    if not os.path.isdir("{clone_dir}"):
        !git clone --depth 1 --branch {branch} {url} {clone_dir}
    %pip install --quiet -e {clone_dir}
    sys.path.insert(0, "{clone_dir}")
    os.chdir("{clone_dir}/{notebook_dir}")'''

# Text that marks a code cell as the Colab set-up cell.
COLAB_MARKER = '"google.colab" in sys.modules'


def repository_from_config(config_path: Path = CONFIG_PATH) -> tuple[str, str]:
    """Return ``(url, branch)`` from the ``repository`` section of ``_config.yml``."""
    import yaml

    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    repository = config.get("repository") or {}
    url = repository.get("url")
    if not url:
        raise ValueError(f"{config_path} has no repository.url; the Colab cell needs it")
    return str(url).rstrip("/"), str(repository.get("branch") or "main")


def colab_setup_cell(notebook_dir: str, url: str | None = None, branch: str | None = None) -> str:
    """Return the source of the Colab set-up cell for a notebook.

    notebook_dir: the notebook's folder relative to the repository root, e.g. ``"book/recap"``.
    url, branch: the repository to clone; by default those of ``_config.yml``.
    """
    if url is None or branch is None:
        config_url, config_branch = repository_from_config()
        url = url or config_url
        branch = branch or config_branch
    notebook_dir = Path(notebook_dir).as_posix().strip("/")
    if notebook_dir.startswith("..") or Path(notebook_dir).is_absolute():
        raise ValueError(
            f"notebook_dir must be relative to the repository root, like 'book/recap'; got {notebook_dir!r}"
        )
    return COLAB_CELL_TEMPLATE.format(
        url=url, branch=branch, clone_dir=COLAB_CLONE_DIR, notebook_dir=notebook_dir
    )


def _notebook_dir(notebook: Path) -> str:
    return notebook.resolve().parent.relative_to(REPO_ROOT).as_posix()


def write_colab_cell(notebook: Path) -> bool:
    """Put the Colab cell first among the code cells of ``notebook``; return True if it changed.

    An existing Colab cell (one containing ``COLAB_MARKER``) as the first code cell is replaced;
    otherwise a new cell is inserted before the first code cell.
    """
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    source = colab_setup_cell(_notebook_dir(notebook))
    new_cell = {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {},
        "outputs": [],
        "source": source.splitlines(keepends=True),
    }
    cells = nb["cells"]
    code_indices = [i for i, cell in enumerate(cells) if cell["cell_type"] == "code"]
    first = code_indices[0] if code_indices else len(cells)
    if code_indices and COLAB_MARKER in "".join(cells[first]["source"]):
        if "".join(cells[first]["source"]) == source:
            return False
        if "id" in cells[first]:
            new_cell["id"] = cells[first]["id"]
        cells[first] = new_cell
    else:
        if nb.get("nbformat", 4) >= 4 and nb.get("nbformat_minor", 0) >= 5:
            new_cell["id"] = "colab-setup"
        cells.insert(first, new_cell)
    notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--write", action="store_true", help="write the cell into the notebooks")
    args = parser.parse_args()
    for notebook in args.notebooks:
        if args.write:
            changed = write_colab_cell(notebook)
            print(f"{notebook}: {'updated' if changed else 'already up to date'}")
        else:
            print(colab_setup_cell(_notebook_dir(notebook)))


if __name__ == "__main__":
    main()
