"""One module per experiment of the book's chapters, shared by their notebooks and ``python -m tutorial_lib.bench``."""
