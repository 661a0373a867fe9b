"""`s2v render`: the streaming generator offline, into an H.264 + AAC MP4 that carries the speech."""

from __future__ import annotations

import shutil
import subprocess
import sys

import av
import numpy as np
import pytest
from PIL import Image

from s2v.audio.files import read_audio
from s2v.contract import MOTION_CHANNELS
from s2v.motion.alignment import read_phones
from s2v.motion.visemes import motion_targets
from s2v.offline import render_file
from s2v.review import CELL, COLUMNS, LABEL_H, phone_frames, phone_sheet

# bilabials in many contexts, open vowels between them
PHONE_TEXT = "Maybe Bob bought a map, but Pam moved home, and father came back by the lamp."


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


@pytest.mark.skipif(shutil.which("festival") is None, reason="festival is installed by the README's test command")
def test_phone_sheet_shows_closed_lips_on_p_b_m_of_an_unseen_voice(model, avatar, tmp_path):
    """The held-out festival voice with its own phone timings: the lips close on the bilabials and stay open on
    the open vowels, and `--phone-sheet` shows one frame of each."""
    script = tmp_path / "say.scm"
    script.write_text(f'(voice_ked_diphone)(set! utt (Utterance Text "{PHONE_TEXT}"))(utt.synth utt)'
                      f"(utt.wave.resample utt 16000)(utt.save.wave utt \"{tmp_path}/say.wav\" 'riff)"
                      f'(utt.save.segs utt "{tmp_path}/say.segs")\n')
    subprocess.run(["festival", "-b", str(script)], check=True, capture_output=True, timeout=120)
    phones = read_phones(tmp_path / "say.segs")
    fps = model.contract.audio.fps
    picked = phone_frames(phones, fps)
    kept, closure = {}, {}

    def keep(frame):
        closure[frame.index] = frame.motion[MOTION_CHANNELS.index("lip_closure")]
        if frame.index in picked:
            kept[frame.index] = frame

    render_file(model, avatar, tmp_path / "say.wav", tmp_path / "say.mp4", on_frame=keep)
    assert set(kept) == set(picked)

    target = motion_targets(phones, max(closure) + 1)[:, MOTION_CHANNELS.index("lip_closure")]

    def shut(names: tuple[str, ...], where_open: bool = False) -> float:
        """Share of the frames centred in these phones (and, if asked, left open by the targets: not touching
        a p/b/m) whose lips are more closed than open."""
        frames = [i for p in phones if p.name in names for i in closure
                  if p.start <= (i + 0.5) / fps < p.end and (target[i] < 0.2 or not where_open)]
        assert len(frames) >= 5
        return float(np.mean([closure[i] > 0.5 for i in frames]))

    assert shut(("p", "b", "m")) >= 0.8 and shut(("aa", "ae", "ao"), where_open=True) <= 0.3
    sheet = phone_sheet(kept, picked, avatar, tmp_path / "sheet.png")
    with Image.open(sheet) as image:
        rows = -(-(1 + len(picked)) // COLUMNS)
        assert image.height == rows * (CELL + LABEL_H + 4) - 4


def test_render_refuses_phones_without_a_phone_sheet(speech_wav, tmp_path):
    phones = tmp_path / "a.txt"
    phones.write_text("0.0 0.5 pau\n")
    done = subprocess.run([sys.executable, "-m", "s2v.cli", "render", "--audio", str(speech_wav), "--phones",
                           str(phones), "--output", str(tmp_path / "x.mp4")], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "--phone-sheet PNG and --phones FILE go together" in done.stderr
