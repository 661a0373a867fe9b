"""Thirty minutes of one session's data path, faster than real time: memory stays where it settled.

Everything a session does per frame except the pacing and the network: 20 ms packets of speech into the audio
inlet at their RTP positions, 40 ms reads, the streaming generator (graph, idle motion, held audio), and the
conversion of every frame for the encoders (colour, 48 kHz audio). The clock only paces these steps, so leaving
it out turns half an hour into seconds; what could grow with time (buffers, state, counters) still runs 45,000
frames.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image
from skimage import data

from s2v.audio.files import read_audio
from s2v.avatar import AvatarConfig, prepare_avatar
from s2v.runtime.generator import StreamingGenerator
from s2v.server.audio_inlet import AudioInlet
from s2v.server.tracks import Upsampler, video_frame

MINUTES = 30
RATE, PACKET, READ = 16000, 320, 640


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_half_an_hour_of_speech_keeps_memory_flat(model, short_speech_wav):
    photo = io.BytesIO()
    Image.fromarray(data.astronaut()).save(photo, "PNG")
    avatar = prepare_avatar(photo.getvalue(), AvatarConfig(width=256, height=256))  # small: the test is time
    speech = read_audio(short_speech_wav, RATE)
    inlet = AudioInlet(delay_samples=960, read_samples=READ)
    generator = StreamingGenerator(model, avatar, max_batch=25)
    upsample = Upsampler()
    frames, position, marks = 0, 0, {}
    total = MINUTES * 60 * 25
    while frames < total:
        for _ in range(50):  # one second: 50 packets in, 25 reads out
            packet = speech[(position + np.arange(PACKET)) % len(speech)]  # the sentence, looped
            inlet.push(packet, position)
            position += PACKET
            if position % READ == 0:
                generator.push_audio(inlet.read())
        for frame in generator.frames():
            video_frame(frame.image)
            upsample(frame.audio)
            frames += 1
        minute = frames // (25 * 60)
        if minute in (2, MINUTES - 1) and minute not in marks:
            marks[minute] = rss_mb()
    assert frames >= total
    grown = marks[MINUTES - 1] - marks[2]
    assert grown < 10, f"RSS grew {grown:.1f} MB between minute 2 and minute {MINUTES - 1}"
    assert inlet.counters.dropped_samples == 0 and inlet.counters.underruns == 0
