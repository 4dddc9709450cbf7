"""`mora demo` in a real browser: the page served on 127.0.0.1 with a tiny checkpoint, driven by Playwright
with Debian's Chromium (no Playwright browser download). Skips with the reason when either is missing."""

import re
import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest
from demo_testing import SPAN_TEXT, fixed_span_service, tiny_checkpoint
from video_testing import write_shapes_video

from mora.demo import DemoConfig, example_videos

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 60_000


def _requirements() -> str | None:
    """Why the browser test cannot run here, or None."""
    try:
        import gradio  # noqa: F401
        import playwright.sync_api  # noqa: F401
    except ImportError as err:
        return f"the demo extra is not installed ({err.name} missing): pip install -e '.[demo]'"
    if not CHROMIUM.is_file():
        return f"no {CHROMIUM} (Debian: apt-get install -y chromium)"
    return None


pytestmark = pytest.mark.skipif(_requirements() is not None, reason=str(_requirements()))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def page_url(tmp_path, monkeypatch):
    from mora.demo.app import serve

    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    service = fixed_span_service(checkpoint, tmp_path, monkeypatch)
    config = DemoConfig(model=str(checkpoint), port=_free_port(), examples_dir=str(tmp_path / "examples"))
    demo = serve(service, config, block=False)
    yield demo.local_url
    demo.close()
    service.close()


def _artifacts(tmp_path: Path) -> Path:
    folder = tmp_path / "artifacts"
    folder.mkdir(exist_ok=True)
    return folder


def test_upload_ask_and_see_the_grounded_answer(page_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    video = write_shapes_video(tmp_path / "shapes.mp4", 30, fps=10)
    outside = []  # requests that would leave the machine (CDN, analytics): blocked and recorded

    def local_only(route):
        if urlparse(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            page.route("**/*", local_only)
            page.goto(page_url)
            # an empty question: a message in the page, no result, no stack trace
            page.locator("#video-in input[type=file]").set_input_files(str(video))
            page.locator("#submit").click()
            expect(page.get_by_text("Type a question about the video.").first).to_be_visible()
            expect(page.get_by_text("Traceback")).to_have_count(0)
            page.screenshot(path=str(_artifacts(tmp_path) / "demo_error.png"), full_page=True)
            # a question: the overlay video, the answer and the span
            page.locator("#question textarea").fill("Which object moves to the right?")
            page.locator("#submit").click()
            expect(page.locator("#overlay video")).to_be_attached()
            expect(page.locator("#span textarea")).to_have_value(SPAN_TEXT)
            assert "[SEG]" in page.locator("#answer textarea").input_value()
            expect(page.locator("#download a").first).to_be_attached()
            page.screenshot(path=str(_artifacts(tmp_path) / "demo.png"), full_page=True)
            # a bundled example: its video and question fill the inputs, then the answer is replaced
            example = example_videos(tmp_path / "examples")[2]
            page.get_by_text(example.question).first.click()
            expect(page.locator("#question textarea")).to_have_value(example.question)
            page.locator("#submit").click()
            expect(page.locator("#span textarea")).not_to_have_value(SPAN_TEXT)
            assert re.fullmatch(
                r"\d+\.\d\d s - \d+\.\d\d s \(frames \d+-\d+\)", page.locator("#span textarea").input_value()
            )
            page.screenshot(path=str(_artifacts(tmp_path) / "demo_example.png"), full_page=True)
        finally:
            browser.close()
    assert (_artifacts(tmp_path) / "demo.png").stat().st_size > 0
    assert outside == []
