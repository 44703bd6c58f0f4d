"""Sphinx extension: HTML fixes that keep the book's pages offline and error-free.

1. Notebook outputs must not fetch anything at run time (see below).
2. Each page carries one copy of each script. sphinx-thebe adds its inline
   configuration script (``const THEBE_JS_URL = ...``) twice under this Sphinx
   version; the second copy throws "Identifier has already been declared" in the
   browser. Duplicate script entries are dropped.

The book must read offline, with nothing fetched at run time. Two kinds of
notebook output can break that rule:

* ``matplotlib.animation.Animation.to_jshtml`` writes a ``<link>`` to a
  Font Awesome 4 stylesheet on a CDN for its playback buttons. The book's
  theme already serves Font Awesome from ``_static``, and its icons cover the
  names the animation uses (``fa-play``, ``fa-step-forward``, ...), so the
  link is removed.
* Any other ``<script src=...>``, ``<link href=...>``, ``<img src=...>``,
  ``<iframe src=...>`` or ``<source src=...>`` that points to ``http(s)://``
  or ``//`` is reported as a warning naming the page; with ``-W`` the build
  fails. The fix is to embed the resource in the output instead.
"""

from __future__ import annotations

import re

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

# The stylesheet link that matplotlib's to_jshtml template emits.
_FONT_AWESOME_CDN_LINK = re.compile(
    r"<link\b[^>]*href=[\"']https?://[^\"']*font-awesome[^\"']*[\"'][^>]*>\s*",
    re.IGNORECASE,
)

# Any remaining reference to a remote resource in an HTML tag.
_REMOTE_RESOURCE = re.compile(
    r"<(script|link|img|iframe|source|audio|video)\b[^>]*\b(?:src|href)="
    r"[\"']((?:https?:)?//[^\"']+)[\"']",
    re.IGNORECASE,
)


def strip_font_awesome_link(html: str) -> str:
    """Return ``html`` without the Font Awesome CDN ``<link>`` of to_jshtml."""
    return _FONT_AWESOME_CDN_LINK.sub("", html)


def remote_resources(html: str) -> list[str]:
    """Return the remote URLs that ``html`` would load, in order of appearance."""
    return [match.group(2) for match in _REMOTE_RESOURCE.finditer(html)]


def _clean_raw_html(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    for node in list(doctree.findall(nodes.raw)):
        if "html" not in node.get("format", "").split():
            continue
        html = node.astext()
        cleaned = strip_font_awesome_link(html)
        for url in remote_resources(cleaned):
            logger.warning(
                "raw HTML in %s loads the remote resource %s; the book must "
                "work offline, so store the resource in the repository or embed it",
                docname,
                url,
                location=node,
            )
        if cleaned != html:
            new = nodes.raw("", cleaned, format=node["format"])
            new["classes"] = list(node.get("classes", []))
            node.replace_self(new)


def _script_key(script) -> tuple:
    attributes = getattr(script, "attributes", {}) or {}
    # An inline script has filename None or "" depending on when it was added.
    filename = getattr(script, "filename", str(script)) or ""
    return (filename, tuple(sorted(attributes.items())))


def _drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app: Sphinx) -> dict:
    app.connect("doctree-resolved", _clean_raw_html)
    app.connect("html-page-context", _drop_duplicate_scripts)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
