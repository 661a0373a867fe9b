"""The browser page, in headless Chromium with a WAV as its microphone, shows the avatar moving."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Chromium at /usr/bin/chromium "
                                                              "(apt-get install chromium)")

VIDEO_PLAYING = """() => {
  const v = document.getElementById('video');
  return v.readyState >= 2 && v.currentTime > 0.5 && v.videoWidth > 0;
}"""

# A 64x64 grey thumbnail of the current video frame: enough to tell frames apart, small to return.
SNAPSHOT = """() => {
  const v = document.getElementById('video');
  const c = document.createElement('canvas');
  c.width = 64; c.height = 64;
  const g = c.getContext('2d');
  g.drawImage(v, 0, 0, 64, 64);
  const rgba = g.getImageData(0, 0, 64, 64).data;
  const grey = [];
  for (let i = 0; i < rgba.length; i += 4) grey.push((rgba[i] + rgba[i + 1] + rgba[i + 2]) / 3);
  return {time: v.currentTime, grey, width: v.videoWidth, badge: document.getElementById('badge').textContent};
}"""


@asynccontextmanager
async def chromium_page(*flags: str):
    """A page in headless Chromium (the system's, never a downloaded one) and the list of its script errors."""
    from playwright.async_api import async_playwright

    args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", *flags]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=args, headless=True)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            yield page, errors
        finally:
            await browser.close()


async def test_the_page_plays_the_avatar_driven_by_a_fake_microphone(live_server, short_speech_wav):
    server = await live_server()
    microphone = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                  f"--use-file-for-fake-audio-capture={short_speech_wav}")
    async with chromium_page(*microphone) as (page, errors):
        await page.goto(f"{server.url}/?autostart=1")
        await page.wait_for_function(VIDEO_PLAYING, timeout=20_000)
        snapshots = []
        for _ in range(4):
            snapshots.append(await page.evaluate(SNAPSHOT))
            await page.wait_for_timeout(500)
        live = [session.stats() for session in server.service.sessions]
    assert not errors, errors
    assert len(live) == 1 and live[0]["fps"] >= 20, live
    assert snapshots[0]["width"] == server.service.default_avatar.background.shape[1]
    times = [s["time"] for s in snapshots]
    assert all(b > a for a, b in zip(times, times[1:])), times
    grey = np.array([s["grey"] for s in snapshots], np.float32)
    changes = np.abs(np.diff(grey, axis=0)).mean(axis=1)
    assert changes.max() > 0.2, changes  # the avatar moves: not a frozen frame
    assert grey.mean() > 20  # and it is a picture, not black
    assert snapshots[-1]["badge"] in ("live", "speaking")


async def test_typed_text_is_spoken_through_the_agent_path(live_server):
    server = await live_server()
    async with chromium_page() as (page, errors):
        await page.goto(server.url)
        await page.check('input[value="text"]')
        await page.click("#start")
        await page.wait_for_function(VIDEO_PLAYING, timeout=20_000)
        assert [s.playout is not None for s in server.service.sessions] == [True]  # an agent session
        await page.fill("#say-text", "Hello, I am your avatar.")
        await page.click("#say")
        await page.wait_for_function("() => document.getElementById('message').textContent === 'speaking…'",
                                     timeout=10_000)
        await page.wait_for_function("() => document.getElementById('message').textContent.startsWith('said')",
                                     timeout=10_000)
        message = await page.text_content("#message")
    assert not errors, errors
    assert "interrupted" not in message and 1.0 < float(message.split()[1]) < 3.0, message
