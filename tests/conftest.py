"""Shared set-up for the test suite (unit tests, notebook checks, browser test)."""

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# The book's build helpers (Colab cell, Sphinx extension) live next to the book.
sys.path.insert(0, str(REPO_ROOT / "book" / "_ext"))

# Unit tests draw without a display. This changes only the pytest process:
# notebook kernels started by nbval keep the inline backend chosen by MPLBACKEND.
import matplotlib  # noqa: E402

matplotlib.use("Agg", force=True)


def subprocess_env(**overrides: str) -> dict:
    """The environment for a test's child Python process: it imports the same ``tutorial_lib`` as the
    test (under ``make mutate`` that is the mutated copy in ``mutants/``, whose active mutant the
    ``MUTANT_UNDER_TEST`` variable, inherited, selects), one thread, a fixed hash seed."""
    import tutorial_lib

    root = str(Path(tutorial_lib.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1", PYTHONHASHSEED="0", **overrides)
