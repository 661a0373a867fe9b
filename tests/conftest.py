"""Shared fixtures: the shipped model, the built-in avatar, and speech made here with espeak-ng."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from s2v.audio.files import read_audio, write_wav

# CI installs every tool the tests use (Chromium, festival, coturn, the train and pipecat extras): there a test that
# skips for want of one has found a broken install step, and fails.
REQUIRE_TOOLS = os.environ.get("S2V_REQUIRE_TOOLS") == "1"


def _no_skipping(report) -> None:
    if REQUIRE_TOOLS and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped, but S2V_REQUIRE_TOOLS=1 says every tool is installed: {report.longrepr}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _no_skipping(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _no_skipping(outcome.get_result())


SPEECH_TEXT = "Maybe Bob will bring apples, bread and a few warm blue boots to the movie."
SILENCE_S = 1.0


@pytest.fixture(scope="session")
def model():
    from s2v.runtime.model import ExportedModel, ModelConfig

    return ExportedModel(ModelConfig(device="cpu"))


@pytest.fixture(scope="session")
def avatar_store(tmp_path_factory):
    from s2v.avatar import AvatarStore

    return AvatarStore(tmp_path_factory.mktemp("avatars"))


@pytest.fixture(scope="session")
def avatar(avatar_store):
    return avatar_store.builtin()


def _spoken(folder: Path, text: str, rate_wpm: int) -> Path:
    """`text` spoken by espeak-ng, trimmed, normalised, with SILENCE_S of silence before and after, 16 kHz mono."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is required for the tests: apt-get install espeak-ng (see README)")
    raw = folder / "raw.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", str(rate_wpm), "-w", str(raw), text], check=True)
    speech = read_audio(raw, 16000)
    loud = np.flatnonzero(np.abs(speech) > 0.01)
    speech = speech[loud[0] : loud[-1] + 1]
    silence = np.zeros(int(SILENCE_S * 16000), np.float32)
    path = folder / "speech.wav"
    write_wav(path, np.concatenate([silence, 0.7 * speech / np.abs(speech).max(), silence]))
    return path


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    """A real spoken sentence (espeak-ng, about 4 s) with one second of silence before and after."""
    return _spoken(tmp_path_factory.mktemp("speech"), SPEECH_TEXT, 150)


@pytest.fixture(scope="session")
def speech_16k(speech_wav) -> np.ndarray:
    return read_audio(speech_wav, 16000)


@pytest.fixture(scope="session")
def speech_span(speech_16k) -> tuple[float, float]:
    """(start, end) of the speech in seconds."""
    return SILENCE_S, len(speech_16k) / 16000 - SILENCE_S


TTS_RATE = 24000


@pytest.fixture(scope="session")
def tts_24k(speech_16k, speech_span) -> np.ndarray:
    """The test sentence as a TTS hands it to an agent: speech only, 24 kHz mono int16."""
    start, end = (int(t * 16000) for t in speech_span)
    speech = speech_16k[start:end]
    t = np.arange(int(len(speech) * TTS_RATE / 16000)) / TTS_RATE
    return (np.interp(t, np.arange(len(speech)) / 16000, speech) * 32767).astype(np.int16)


SHORT_SPEECH_TEXT = "Bob will bring apples and bread."


@pytest.fixture(scope="session")
def short_speech_wav(tmp_path_factory) -> Path:
    """A short sentence (espeak-ng, about 2 s) with one second of silence before and after."""
    return _spoken(tmp_path_factory.mktemp("short_speech"), SHORT_SPEECH_TEXT, 160)


@pytest.fixture
async def live_server(model, avatar_store):
    """Factory: start the real server app on a free 127.0.0.1 port (ServerConfig overrides as keywords).

    Returns an object with `url`, `app` and `service`; every server started is shut down after the test.
    """
    from types import SimpleNamespace

    from aiohttp import web

    from s2v.server.app import SERVICE, create_app
    from s2v.server.config import ServerConfig

    runners = []

    async def start(**overrides):
        config = ServerConfig(host="127.0.0.1", port=0, avatar_dir=avatar_store.root, **overrides)
        app = create_app(config, model=model, store=avatar_store)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, config.host, 0).start()
        host, port = runner.addresses[0][:2]
        return SimpleNamespace(url=f"http://{host}:{port}", app=app, service=app[SERVICE])

    yield start
    for runner in runners:
        await runner.cleanup()
