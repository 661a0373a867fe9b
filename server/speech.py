"""The server's own text to speech for the page's "say" box: espeak-ng, run as a separate process.

It stands in for a voice agent's TTS, so a person can try the agent path without writing one; the
audio it makes goes through the same segment playout as an agent's.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import wave

import numpy as np

from s2v.server.signalling import ApiError

SYNTHESIS_TIMEOUT_S = 10.0


async def synthesise(text: str, voice: str = "en-us") -> tuple[np.ndarray, int]:
    """int16 mono PCM of `text` and its sample rate."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise ApiError(501, "this server has no speech synthesiser: install espeak-ng (apt-get install espeak-ng)")
    if not text.strip():
        raise ApiError(400, '"text" is empty: nothing to say')
    process = await asyncio.create_subprocess_exec(
        binary, "-v", voice, "--stdout", "--", text,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), SYNTHESIS_TIMEOUT_S)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        raise ApiError(503, f"speech synthesis took longer than {SYNTHESIS_TIMEOUT_S:g} s") from None
    if process.returncode != 0:
        raise ApiError(500, f"espeak-ng failed: {err.decode(errors='replace')[:200]}")
    with wave.open(io.BytesIO(out)) as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise ApiError(500, "espeak-ng wrote audio that is not 16-bit mono")
        rate = wav.getframerate()
    # Writing to a pipe, espeak-ng cannot fill in the data chunk's length: take every byte after its header.
    start = out.find(b"data") + 8
    data = out[start : start + (len(out) - start) // 2 * 2]
    return np.frombuffer(data, "<i2"), rate
