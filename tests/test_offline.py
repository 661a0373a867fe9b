"""`s2v render`: the streaming generator offline, into an H.264 + AAC MP4 that carries the speech."""

from __future__ import annotations

import subprocess
import sys

import av
import numpy as np

from s2v.audio.files import read_audio


def test_render_writes_a_playable_mp4_with_the_audio(speech_wav, speech_16k, tmp_path):
    out = tmp_path / "talk.mp4"
    done = subprocess.run([sys.executable, "-m", "s2v.cli", "render", "--audio", str(speech_wav), "--output", str(out),
                           "--prompt", "calm, nodding"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with av.open(str(out)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.name, audio.codec_context.name) == ("h264", "aac")
        assert (video.width, video.height) == (512, 512)
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == -(-len(speech_16k) // 640)
    back = read_audio(out, 16000)[: len(speech_16k)]
    n = min(len(back), len(speech_16k))
    lag = np.argmax(np.correlate(back[:n], speech_16k[:n][2000:-2000], "valid")) - 2000
    assert abs(lag) < 16 * 30  # AAC priming aside, the speech sits where its frames are
    assert np.corrcoef(back[2000 + lag : n - 2000 + lag], speech_16k[2000 : n - 2000])[0, 1] > 0.9


def test_render_refuses_a_file_that_is_not_audio(tmp_path):
    bad = tmp_path / "not_audio.wav"
    bad.write_bytes(b"this is not a wav file")
    done = subprocess.run([sys.executable, "-m", "s2v.cli", "render", "--audio", str(bad), "--output",
                           str(tmp_path / "x.mp4")], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "cannot read audio" in done.stderr
    assert not (tmp_path / "x.mp4").exists()
