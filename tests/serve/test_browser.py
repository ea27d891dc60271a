"""``surgclip serve`` in a real browser: Debian's headless Chromium driven by Playwright.

The index is built by ``surgclip index`` from one sample H.264 video and one frame folder with the
tiny model; the server runs in a thread on a free loopback port and stops at the end.
"""
import json
import os
import re
import shutil
import socket
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from helpers import write_frames

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _missing(reason: str):
    """CI installs Chromium (.ci/run), so there a missing browser fails; elsewhere the test skips."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must install it: apt-get install chromium, pip install playwright)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        _missing("no Chromium at /usr/bin/chromium (Debian package 'chromium')")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("the playwright Python package is not installed")
    return path


class ServerThread:
    """uvicorn serving ``app`` on a free 127.0.0.1 port in a daemon thread; ``stop()`` ends it."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self):
        self.thread.start()
        for _ in range(200):  # at most 10 s
            if self.server.started:
                return self
            time.sleep(0.05)
        raise RuntimeError("uvicorn did not start within 10 s")

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory, small_sample):
    """(base URL, video id): an index of one sample H.264 video + one frame folder, served."""
    from surgclip.cli import main
    from surgclip.serve.cli import build

    base = tmp_path_factory.mktemp("browser")
    video = sorted((small_sample / "videos").glob("*/*.mp4"))[0]
    write_frames(base / "frames1", range(20), size=(48, 64), seed=4)
    (base / "frames1" / "frames.json").write_text(json.dumps({"fps": 5.0}))
    assert main(["index", str(video), str(base / "frames1"), "--index", str(base / "index"), "--model", "tiny",
                 "--stride-s", "8", "--num-frames", "4"]) == 0  # few, short clips: the test is about the page
    app, engine = build(str(base / "index"), host="127.0.0.1")  # the model recorded in the index ("tiny")
    assert engine is not None
    server = ServerThread(app).start()
    yield server.url, video.stem
    server.stop()


def _api(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_search_click_play_in_chromium(chromium_path, served, tmp_path):
    from playwright.sync_api import sync_playwright

    url, video = served
    fps = 5.0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.set_default_timeout(20_000)
            page.goto(url + "/")
            page.wait_for_function("document.getElementById('info').textContent.includes('clips in 2 videos')")
            assert "model tiny" in page.text_content("#info")

            # type a query (restricted to the H.264 video), see hits, and the query lands in the URL
            page.select_option("#video", video)
            page.fill("#q", "grasper dissects the gallbladder")
            page.press("#q", "Enter")
            page.wait_for_selector(".hit")
            query = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
            assert query == {"q": ["grasper dissects the gallbladder"], "k": ["12"], "video": [video]}
            want = _api(f"{url}/api/search?" + urllib.parse.urlencode({"q": query["q"][0], "k": 12, "video": video}))
            cards = page.locator(".hit")
            assert cards.count() == len(want["hits"]) > 0
            assert [int(cards.nth(i).get_attribute("data-id")) for i in range(cards.count())] == \
                [h["id"] for h in want["hits"]]
            first = want["hits"][0]
            assert page.text_content(".hit .time") == \
                f"{int(first['start']) // 60:02d}:{int(first['start']) % 60:02d}–{int(first['end']) // 60:02d}:{int(first['end']) % 60:02d}"
            page.wait_for_function("document.querySelector('.hit img').naturalWidth > 0")  # thumbnail strip loaded

            # click the first hit: the video seeks to the hit's start and plays (Chromium decodes H.264)
            page.evaluate("""() => { const v = document.getElementById('player');
                window.__seeked = new Promise(r => v.addEventListener('seeked', () => r(v.currentTime), {once: true}));
                return true; }""")
            cards.first.locator(".meta").click()
            seeked_at = page.evaluate("window.__seeked")
            assert abs(seeked_at - first["start"]) <= 1 / fps, (seeked_at, first["start"])
            page.wait_for_function(f"(() => {{ const v = document.getElementById('player');"
                                   f" return !v.paused && v.currentTime > {first['start'] + 0.3}; }})()")
            state = page.evaluate("(() => { const v = document.getElementById('player');"
                                  " return {error: v.error, width: v.videoWidth, src: v.currentSrc}; })()")
            assert state["error"] is None and state["width"] == 160 and state["src"].endswith(f"/media/{video}")
            shot = tmp_path / "serve.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000

            # more like this: searches with the clip's stored embedding, URL shareable
            cards.first.locator(".more").click()
            page.wait_for_function("location.search.includes('similar=')")
            page.wait_for_function("document.getElementById('summary').textContent.includes('clips like')")
            assert f"similar={first['id']}" in page.url

            # a frame folder plays as an image sequence from the hit's start frame
            page.goto(url + "/?q=hook&k=3&video=frames1")
            page.wait_for_selector(".hit")
            start = float(page.get_attribute(".hit", "data-start"))
            page.click(".hit .meta")
            page.wait_for_function("document.getElementById('sequence').naturalWidth === 64")
            src = page.get_attribute("#sequence", "src")
            # the sequence starts at the hit's first frame and advances in real time (5 fps): a few frames at most
            assert re.fullmatch(r"/frames/frames1/(\d+)", src)
            assert int(start * fps) <= int(src.rsplit("/", 1)[1]) <= int(start * fps) + 15

            # bad input from the URL: a clear message in the page, and the server keeps serving
            for bad, message in (("/?q=&k=5", "empty query"), ("/?q=hook&k=0", "k must be between 1 and 100"),
                                 ("/?similar=99999", "unknown clip id 99999")):
                page.goto(url + bad)
                page.wait_for_selector("#message:not([hidden])")
                assert message in page.text_content("#message")
                assert page.locator(".hit").count() == 0
            assert _api(f"{url}/api/videos")["num_videos"] == 2
        finally:
            browser.close()
