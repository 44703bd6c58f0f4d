"""Shipped files in ``data/``: where they live, their manifest, and loading pretrained models.

``data/MANIFEST.json`` lists every shipped file with its sha256, its size in bytes and the exact
command that re-creates it. Nothing is ever downloaded: a file that is missing or whose hash
does not match raises an error that names the command to run.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

__all__ = ["data_dir", "manifest_path", "read_manifest", "update_manifest", "sha256_of", "verify_file"]


def data_dir() -> Path:
    """The ``data/`` folder: ``$TUTORIAL_LIB_DATA`` if set, else ``data/`` beside the package."""
    env = os.environ.get("TUTORIAL_LIB_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data"


def manifest_path() -> Path:
    return data_dir() / "MANIFEST.json"


def read_manifest() -> dict:
    """The manifest as ``{relative path: {"sha256", "bytes", "command", ...}}``."""
    path = manifest_path()
    if not path.is_file():
        return {}
    return json.loads(path.read_text())["files"]


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def update_manifest(relpath: str, command: str, **info) -> dict:
    """Record (or refresh) the entry of ``data/relpath`` with its hash, size, command and ``info``."""
    path = data_dir() / relpath
    entry = {"sha256": sha256_of(path), "bytes": path.stat().st_size, "command": command, **info}
    files = read_manifest()
    files[relpath] = entry
    text = json.dumps({"files": dict(sorted(files.items()))}, indent=2) + "\n"
    tmp = manifest_path().with_suffix(".json.tmp")
    tmp.write_text(text)
    os.replace(tmp, manifest_path())
    return entry


def verify_file(relpath: str) -> Path:
    """Return the path of a shipped file after checking it against the manifest.

    Raises ``FileNotFoundError`` (with the command that makes the file) if it is missing, and
    ``ValueError`` if its sha256 differs from the manifest's.
    """
    entry = read_manifest().get(relpath)
    path = data_dir() / relpath
    how = f"re-create it with: {entry['command']}" if entry else "it is not listed in data/MANIFEST.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; {how}")
    if entry and sha256_of(path) != entry["sha256"]:
        raise ValueError(f"{path} does not match its sha256 in data/MANIFEST.json (modified or corrupt); {how}")
    return path
