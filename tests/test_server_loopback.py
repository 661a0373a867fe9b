"""A real aiortc peer against the real server, model and built-in avatar, on loopback."""

from __future__ import annotations

import asyncio

import aiohttp
import numpy as np

from s2v.client import analysis
from s2v.client.live import SEND_RATE, ClientConfig, audio_timeline, call, measure
from s2v.client.load import scrape_metrics

SILENCE_S = 1.0  # before and after the speech in short_speech_wav


async def sessions_left(url: str, within_s: float = 5.0) -> int:
    """Live sessions on the server once they settle (polls /healthz until none are left or time is up)."""
    async with aiohttp.ClientSession() as http:
        for _ in range(int(within_s / 0.1)):
            async with http.get(f"{url}/healthz") as response:
                count = (await response.json())["sessions"]
            if count == 0:
                return 0
            await asyncio.sleep(0.1)
    return count


async def test_speech_in_lip_synced_video_and_the_same_audio_out(live_server, short_speech_wav):
    server = await live_server()
    done = await call(ClientConfig(server=server.url, audio=short_speech_wav, tail_s=0.8))
    got = done.received
    duration = len(done.sent) / SEND_RATE
    assert done.server is not None and done.server["session"] == done.session  # its own numbers, by its id
    assert done.server["frames"] > 20

    # Video at 25 fps for the whole clip, not just on average.
    arrivals = np.asarray(got.video_t)
    assert arrivals[-1] - arrivals[0] > duration - 0.3
    fps = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
    assert 23 <= fps <= 27, fps
    per_second = np.histogram(arrivals, bins=np.arange(arrivals[0], arrivals[-1], 1.0))[0]
    assert per_second.min() >= 22, per_second

    # The audio that comes back is the audio sent, at one fixed delay.
    audio, audio_start = audio_timeline(got)
    delay, score = analysis.audio_alignment(done.sent, audio, SEND_RATE)
    assert score > 0.8, score
    start = round(delay * SEND_RATE)
    speech = slice(int(SILENCE_S * SEND_RATE), int((duration - SILENCE_S) * SEND_RATE))
    for window in range(speech.start, speech.stop - SEND_RATE // 2, SEND_RATE // 2):
        piece = done.sent[window : window + SEND_RATE // 2]
        local, _ = analysis.audio_alignment(piece, audio[start + window - 480 : start + window + len(piece) + 480],
                                            SEND_RATE, max_lag_s=0.02)
        assert abs(local * SEND_RATE - 480) <= 2, (window / SEND_RATE, local)

    # The mouth moves while the sentence plays and is still in the silences around it.
    audio_latency = audio_start + delay - done.started
    shown = arrivals - done.started - audio_latency  # when each frame's sound was sent, roughly
    motion = analysis.frame_motion(np.stack(got.mouth))
    speaking = motion[(shown > SILENCE_S + 0.2) & (shown < duration - SILENCE_S - 0.2)]
    silent = motion[((shown > 0.2) & (shown < SILENCE_S - 0.3)) | (shown > duration - SILENCE_S + 0.4)]
    assert len(speaking) > 20 and len(silent) > 10
    assert np.median(speaking) > 3 * np.median(silent) + 0.5, (np.median(speaking), np.median(silent))
    assert np.percentile(silent, 90) < np.median(speaking)

    stats = measure(got, done.sent, done.started)
    assert stats["onset_latency_ms"] is not None and stats["onset_latency_ms"] < 600, stats
    assert abs(stats["av_offset_ms"]) < 80, stats

    # Hanging up ends the session.
    assert await sessions_left(server.url) == 0
    # ...and the server timed the sentence's onset itself: from the arrival of the first speaking frame's audio
    # to that frame's release (playout delay, look-ahead, render, margin), about what the client sees end to end
    metrics = await scrape_metrics(server.url)
    count = metrics["s2v_onset_latency_seconds_count"]
    assert count >= 1, metrics
    server_onset_ms = 1000 * metrics["s2v_onset_latency_seconds_sum"] / count
    assert 40 < server_onset_ms < 400 and abs(server_onset_ms - stats["onset_latency_ms"]) < 150, (
        server_onset_ms, stats["onset_latency_ms"])
