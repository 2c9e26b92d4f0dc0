"""The studio in a real browser (issue 20): Debian's Chromium driven by Playwright uploads a
generated video, chooses a genre, scores by keyboard, waits for the player, checks the music's
length, downloads the stems, runs axe-core, and saves a screenshot."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.config import StudioConfig
from services.devserver import Running, free_port, start, stop
from services.media.synth import Shot, write_video
from services.studio.app import GatewayLink, create_app, server_options

CHROMIUM = shutil.which("chromium")
AXE = Path(__file__).resolve().parent.parent / "node_modules" / "axe-core" / "axe.min.js"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="Debian's chromium runs the browser test; ./dev.sh setup installs it",
    ),
]


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import uvicorn

    folder = tmp_path_factory.mktemp("studio-browser")
    running: Running = start(folder, folder)
    port = free_port()
    config = StudioConfig(folder=folder / "studio", port=port)
    app = create_app(config, GatewayLink(running.gateway))
    server = uvicorn.Server(uvicorn.Config(app, **server_options(config)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    assert stop(running) == 0


def test_the_main_path_by_keyboard_in_chromium(studio: str, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    clip = write_video(tmp_path / "clip.mp4", [Shot(2.0, hue=0.2), Shot(2.0, hue=0.7)])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        page.goto(studio)
        page.wait_for_function("document.querySelectorAll('#genre option').length > 5")
        page.set_input_files("#file", str(clip.path))
        page.wait_for_function("document.getElementById('video-name').textContent === "
                               "'Video: clip.mp4'")  # fmt: skip
        # The timeline is there before scoring: the cut and the segments' moods.
        assert page.locator("#timeline line").count() == 1
        assert page.locator("#thumbnails img").count() == 2
        # Keyboard only from here: Tab to the genre, type to choose it, Tab to Score, Enter.
        reached = []
        for _ in range(40):
            page.keyboard.press("Tab")
            reached.append(page.evaluate("document.activeElement.id"))
            if reached[-1] == "genre":
                break
        assert reached[-1] == "genre", reached
        # The file chooser and the sample are on the way (an upload needs no mouse).
        assert {"file", "sample", "play"} <= set(reached), reached
        page.keyboard.type("rock")
        assert page.eval_on_selector("#genre", "e => e.value") == "rock"
        for _ in range(40):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "score":
                break
        page.keyboard.press("Enter")
        page.wait_for_function("document.getElementById('stage').textContent === 'done'",
                               timeout=120_000)  # fmt: skip
        page.wait_for_function("document.getElementById('music').duration > 0")
        duration = page.eval_on_selector("#music", "e => e.duration")
        assert abs(duration - 4.0) < 0.05
        # Play, by keyboard: back to the Play button, Enter.
        for _ in range(60):
            page.keyboard.press("Shift+Tab")
            if page.evaluate("document.activeElement.id") == "play":
                break
        page.keyboard.press("Enter")
        page.wait_for_function("!document.getElementById('video').paused")
        page.wait_for_function("!document.getElementById('music').paused")
        assert page.locator("#error").is_hidden()
        # The music's tags with their origins: the genre chosen here is the user's.
        assert page.locator("#tags li", has_text="genre: rock (user)").count() == 1
        assert page.locator("#timeline line").count() > 3  # cuts, beats and bar lines
        # What the version plays: its style and the band of its plan (a rock band has drums).
        jobs = page.evaluate("fetch('/api/state').then(r => r.json())")["jobs"]
        plan = next(e for e in jobs[0]["events"] if e["type"] == "result")["plan"]
        terms = page.locator("#version-plan dt").all_text_contents()
        details = page.locator("#version-plan dd").all_text_contents()
        shown = dict(zip(terms, details, strict=True))
        assert shown["Style"] == "rock"
        assert shown["Band"] == ", ".join(plan["instruments"]) and "drums" in shown["Band"]
        assert shown["Tempo"].startswith(f"{plan['bpm']:.1f} BPM")
        with page.expect_download() as download:
            page.click("text=Download stems.zip")
        saved = tmp_path / "stems.zip"
        download.value.save_as(saved)
        import zipfile

        assert zipfile.ZipFile(saved).namelist()
        page.add_script_tag(path=str(AXE))
        violations = page.evaluate("async () => (await axe.run()).violations.map("
                                   "v => ({id: v.id, impact: v.impact}))")  # fmt: skip
        serious = [v for v in violations if v["impact"] in ("serious", "critical")]
        assert serious == [], serious
        shot = Path(os.environ.get("BGM_STUDIO_SCREENSHOT", tmp_path / "studio.png"))
        page.screenshot(path=str(shot), full_page=True)
        # A reload loses nothing that finished.
        page.reload()
        page.wait_for_selector("#versions input[type=radio]")
        # What the visitor removes is gone from the page and from the studio.
        page.click("text=Remove this video")
        page.wait_for_function("document.getElementById('remove-video').hidden")
        page.get_by_role("button", name="Remove Version 1").click()
        page.wait_for_function("!document.querySelector('#versions input')")
        assert page.evaluate("fetch('/api/state').then(r => r.json())") == {
            "videos": [],
            "jobs": [],
        }
        assert page.locator("#error").is_hidden()
        browser.close()


def test_a_video_named_in_any_script_uploads(studio: str, tmp_path: Path):
    """A header holds Latin-1 only: picking 動画.mp4 had thrown in the page (no request, the
    progress bar left showing). The name now goes percent-encoded and is kept whole."""
    from playwright.sync_api import sync_playwright

    clip = write_video(tmp_path / "動画 clip.mp4", [Shot(1.0)])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(studio)
        page.set_input_files("#file", str(clip.path))
        page.wait_for_function("document.getElementById('video-name').textContent === "
                               "'Video: 動画_clip.mp4'")  # fmt: skip
        assert page.locator("#upload-progress").is_hidden()
        browser.close()


def test_choosing_another_video_clears_the_last_score_s_status(studio: str, tmp_path: Path):
    """A failed score's "stopped" had stayed under the Score button when another video was
    chosen, as if that one's score had stopped."""
    from playwright.sync_api import FilePayload, sync_playwright

    clip = write_video(tmp_path / "clip.mp4", [Shot(1.0)])
    notes: FilePayload = {"name": "notes.mp4", "mimeType": "video/mp4", "buffer": b"not a video"}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(studio)
        page.wait_for_function("document.querySelectorAll('#genre option').length > 5")
        page.set_input_files("#file", notes)
        page.wait_for_function("document.getElementById('video-name').textContent === "
                               "'Video: notes.mp4'")  # fmt: skip
        page.click("#score")
        page.wait_for_function("document.getElementById('stage').textContent === 'stopped'")
        page.set_input_files("#file", str(clip.path))
        page.wait_for_function("document.getElementById('video-name').textContent === "
                               "'Video: clip.mp4'")  # fmt: skip
        assert page.text_content("#stage") == ""
        assert page.eval_on_selector("#score-progress", "e => e.value") == 0
        browser.close()
