"""Shared set-up for the test suite (unit tests, notebook checks, browser test)."""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# The book's build helpers (Colab cell, Sphinx extension) live next to the book.
sys.path.insert(0, str(REPO_ROOT / "book" / "_ext"))

# Unit tests draw without a display. This changes only the pytest process:
# notebook kernels started by nbval keep the inline backend chosen by MPLBACKEND.
import matplotlib  # noqa: E402

matplotlib.use("Agg", force=True)

