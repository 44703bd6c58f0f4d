"""Browser test of the built website (_build/html), offline, in headless Chromium.

Every page of the table of contents is opened from a local HTTP server. A page
fails if it logs a console error or throws, asks for anything that is not on
127.0.0.1, shows an image that did not load, leaves math unrendered, lacks
an animation that its source has, or shows an exercise's solution unasked. A full-page screenshot of each page is saved
to _build/html/_screenshots/ for a person to look at.

Build the site first (`make book`); `make test` does both.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import pytest

from book_files import CONFIG, REPO_ROOT, source_of, toc_entries

SITE = REPO_ROOT / "_build" / "html"
SCREENSHOTS = SITE / "_screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# Pages Sphinx writes that are not part of the book's reading order.
NOT_BOOK_PAGES = {"search.html", "genindex.html"}

PAGES = toc_entries()
TOC_ROOT = PAGES[0]


def running_in_ci() -> bool:
    """True when the environment variable CI is set to a true value, as CI services do."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def page_id(entry: str) -> str:
    """A short file name for a toc entry: book/recap/ddpm_ddim -> recap-ddpm_ddim."""
    return entry.removeprefix("book/").replace("/", "-")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def site() -> Path:
    if not (SITE / "index.html").is_file():
        message = f"the website is not built: {SITE / 'index.html'} is missing; run `make book` first"
        if running_in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return SITE


@pytest.fixture(scope="module")
def base_url(site):
    """Serve the built site on 127.0.0.1 at a free port for the duration of the module."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(site):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        message = "playwright is not installed; install the test extras: pip install -e .[test]"
        if running_in_ci():
            pytest.fail(message)
        pytest.skip(message)
    if not Path(CHROMIUM).is_file():
        message = (
            f"Chromium not found at {CHROMIUM}; install the Debian package 'chromium' "
            "(apt-get install chromium) or set CHROMIUM to its path"
        )
        if running_in_ci():
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


# --------------------------------------------------------------------------- what a page should have


def expected_animations(entry: str) -> dict[str, int]:
    """Count the animations the source of a page has: to_jshtml outputs and GIF images."""
    source = source_of(entry)
    counts = {"jshtml": 0, "gif": 0}
    if source is None:
        return counts
    if source.suffix == ".ipynb":
        nb = json.loads(source.read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            for output in cell.get("outputs", []):
                html = output.get("data", {}).get("text/html", "")
                html = html if isinstance(html, str) else "".join(html)
                counts["jshtml"] += len(re.findall(r'<div class="animation"', html))
            if cell["cell_type"] == "markdown":
                counts["gif"] += len(re.findall(r"\S+\.gif\b", "".join(cell["source"])))
    else:
        counts["gif"] = len(re.findall(r"\S+\.gif\b", source.read_text(encoding="utf-8")))
    return counts


# JavaScript run in the page once it has loaded.
WAIT_FOR_IMAGES_AND_MATH = """
async () => {
  for (const img of document.images) { img.loading = "eager"; }
  await Promise.all([...document.images].map(img => img.complete ? null :
      new Promise(done => { img.addEventListener("load", done); img.addEventListener("error", done); })));
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
}
"""

PAGE_REPORT = """
() => {
  const broken = [...document.images]
      .filter(img => !(img.complete && img.naturalWidth > 0))
      .map(img => (img.getAttribute("src") || "").slice(0, 120));
  const mathNodes = [...document.querySelectorAll(".math")];
  const untypeset = mathNodes.filter(m => !m.querySelector("mjx-container"))
      .map(m => m.textContent.trim().slice(0, 80));
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode: node => node.parentElement.closest(
        "pre, code, script, style, textarea, mjx-container, .highlight")
        ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT });
  const rawMath = [];
  while (walker.nextNode()) {
    const t = walker.currentNode.textContent;
    const i = t.search(/\\$\\$|\\\\\\(|\\\\\\[|\\\\begin\\{/);
    if (i >= 0) rawMath.push(t.slice(Math.max(0, i - 30), i + 50).trim());
  }
  const animations = [...document.querySelectorAll("div.animation")].map(a => {
    const img = a.querySelector("img");
    return {
      loaded: !!img && img.complete && img.naturalWidth > 0,
      buttons: a.querySelectorAll("button").length,
      icons: a.querySelectorAll("button svg").length,
    };
  });
  const gifs = [...document.images].filter(img => /\\.gif([?#]|$)/i.test(img.getAttribute("src") || ""))
      .map(img => ({src: img.getAttribute("src"), loaded: img.complete && img.naturalWidth > 0}));
  const shownSolutions = [...document.querySelectorAll("div.solution")]
      .filter(sol => [...sol.children].some(child =>
          !child.classList.contains("admonition-title")
          && child.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})
          && child.getBoundingClientRect().height > 1))
      .map(sol => sol.id);
  return {
    broken, untypeset, rawMath, animations, gifs, shownSolutions,
    mathErrors: document.querySelectorAll("mjx-merror").length,
    mjx: document.querySelectorAll("mjx-container").length,
    mathMarkup: mathNodes.length,
  };
}
"""


def is_local(url: str) -> bool:
    parsed = urlparse(url)
    if parsed.scheme in {"data", "blob", "about", "javascript"}:
        return True
    return parsed.hostname in LOCAL_HOSTS


# --------------------------------------------------------------------------- tests


def test_every_toc_page_was_built_and_nothing_else(site):
    built = {
        p.relative_to(site).as_posix()
        for p in site.rglob("*.html")
        if not p.relative_to(site).parts[0].startswith("_")
    }
    expected = {f"{entry}.html" for entry in PAGES}
    missing = sorted(expected - built)
    assert not missing, f"pages in _toc.yml with no HTML in {site}: {missing}; rebuild with `make book`"
    redirect = (site / "index.html").read_text(encoding="utf-8")
    extra = sorted(built - expected - NOT_BOOK_PAGES - {"index.html"})
    assert not extra, f"HTML pages that are not in _toc.yml: {extra}"
    assert f"{TOC_ROOT}.html" in redirect, f"index.html does not lead to the root page {TOC_ROOT}"


class _ResourceCollector(HTMLParser):
    """Collect the URLs an HTML page loads by itself (not links a reader may follow)."""

    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in {"script", "img", "iframe", "source", "audio", "video", "embed"} and attrs.get("src"):
            self.urls.append((tag, attrs["src"]))
        if tag == "link" and attrs.get("href"):
            rel = (attrs.get("rel") or "").lower()
            if any(word in rel for word in ("stylesheet", "preload", "icon", "modulepreload", "prefetch")):
                self.urls.append((tag, attrs["href"]))


def test_html_loads_only_local_resources(site):
    """Every <script src>, <link href>, <img src> ... of the built site points inside it."""
    remote = []
    for page in sorted(site.rglob("*.html")):
        collector = _ResourceCollector()
        collector.feed(page.read_text(encoding="utf-8"))
        for tag, url in collector.urls:
            if re.match(r"^(https?:)?//", url):
                remote.append(f"{page.relative_to(site)}: <{tag}> {url}")
    assert not remote, "the website loads remote resources, it must work offline:\n" + "\n".join(remote)


def test_mathjax_is_served_locally(site):
    intro = (site / f"{TOC_ROOT}.html").read_text(encoding="utf-8")
    scripts = re.findall(r'<script[^>]*src="([^"]*mathjax[^"]*)"', intro, flags=re.IGNORECASE)
    assert scripts, f"{TOC_ROOT}.html loads no MathJax script"
    for src in scripts:
        assert "_static/mathjax/" in src, f"MathJax must come from _static/mathjax, not {src}"
        local = (site / TOC_ROOT).parent / src.split("?")[0]
        assert local.resolve().is_file(), f"MathJax script {src} is missing from the build"


def test_colab_links_point_to_the_notebooks(site):
    url = CONFIG["repository"]["url"].rstrip("/")
    org_repo = urlparse(url).path.strip("/")
    branch = CONFIG["repository"]["branch"]
    notebooks = [e for e in PAGES if source_of(e) is not None and source_of(e).suffix == ".ipynb"]
    if not notebooks:
        pytest.skip("no notebook in _toc.yml yet")
    for entry in notebooks:
        html = (site / f"{entry}.html").read_text(encoding="utf-8")
        links = set(re.findall(r'href="(https://colab\.research\.google\.com/[^"]+)"', html))
        expected = f"https://colab.research.google.com/github/{org_repo}/blob/{branch}/{entry}.ipynb"
        assert links == {expected}, f"{entry}.html: Colab link(s) {sorted(links)}, expected {expected}"


@pytest.mark.parametrize("entry", PAGES, ids=page_id)
def test_page_renders_offline(entry, site, base_url, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    remote_requests, console_errors = [], []

    def refuse_remote(route):  # the request listener below records what is refused
        if is_local(route.request.url):
            route.continue_()
        else:
            route.abort()

    context.route("**/*", refuse_remote)
    page = context.new_page()

    def record_request(request):
        if not is_local(request.url):
            remote_requests.append(request.url)

    def record_console(message):
        if message.type == "error":
            console_errors.append(f"console.error: {message.text}")

    page.on("request", record_request)
    page.on("console", record_console)
    page.on("pageerror", lambda error: console_errors.append(f"uncaught exception: {error}"))
    try:
        response = page.goto(f"{base_url}/{entry}.html", wait_until="load", timeout=60_000)
        assert response is not None and response.ok, f"{entry}.html: HTTP {response and response.status}"
        page.evaluate(WAIT_FOR_IMAGES_AND_MATH)
        page.wait_for_timeout(300)  # let animations draw their first frame
        report = page.evaluate(PAGE_REPORT)
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{page_id(entry)}.png"), full_page=True)
        animation_steps = check_animation_steps(page, report)
    finally:
        context.close()

    problems = []
    if console_errors:
        problems.append("console errors: " + "; ".join(console_errors))
    if remote_requests:
        problems.append("requests to non-local addresses (aborted): " + ", ".join(sorted(set(remote_requests))))
    if report["broken"]:
        problems.append(f"images that did not load: {report['broken']}")
    if report["untypeset"]:
        problems.append(f"math left untypeset by MathJax: {report['untypeset'][:5]}")
    if report["rawMath"]:
        problems.append(f"raw TeX delimiters in the visible text: {report['rawMath'][:5]}")
    if report["mathMarkup"] and not report["mjx"]:
        problems.append(f"{report['mathMarkup']} math elements but no mjx-container: MathJax did not run")
    if report["mathErrors"]:
        problems.append(f"{report['mathErrors']} TeX errors rendered by MathJax (mjx-merror)")

    if report["shownSolutions"]:
        problems.append(f"solutions visible before the reader opens them: {report['shownSolutions']}")

    expected = expected_animations(entry)
    animations = report["animations"]
    if len(animations) != expected["jshtml"]:
        problems.append(
            f"the notebook has {expected['jshtml']} to_jshtml animation(s), the page shows {len(animations)}"
        )
    for i, anim in enumerate(animations):
        if not anim["loaded"]:
            problems.append(f"animation {i}: its frame image did not load")
        if anim["buttons"] < 4 or anim["icons"] < anim["buttons"]:
            problems.append(
                f"animation {i}: {anim['buttons']} playback buttons, {anim['icons']} with an icon"
            )
    problems.extend(animation_steps)
    gifs = report["gifs"]
    if len(gifs) < expected["gif"]:
        problems.append(f"the source has {expected['gif']} GIF(s), the page shows {len(gifs)}")
    for gif in gifs:
        if not gif["loaded"]:
            problems.append(f"GIF {gif['src']} did not load")
        elif not is_animated_gif(site / entry, gif["src"]):
            problems.append(f"GIF {gif['src']} has a single frame; it should be an animation")

    assert not problems, f"{entry}.html:\n  " + "\n  ".join(problems)


def check_animation_steps(page, report) -> list[str]:
    """Press 'Next frame' on every jshtml animation and check that the frame changes."""
    problems = []
    for i in range(len(report["animations"])):
        animation = page.locator("div.animation").nth(i)
        image = animation.locator("img").first
        before = image.get_attribute("src")
        animation.locator("button[title='Next frame']").click()
        after = image.get_attribute("src")
        if before == after:
            problems.append(f"animation {i}: 'Next frame' did not change the frame")
    return problems


def is_animated_gif(page_path: Path, src: str) -> bool:
    from PIL import Image

    path = (page_path.parent / src.split("?")[0]).resolve()
    with Image.open(path) as image:
        return getattr(image, "n_frames", 1) > 1
