"""Phone -> viseme -> mouth-motion targets, and the coarticulated per-frame curves trained on.

Each viseme gives a target and a dominance per motion channel. A phone's dominance is largest inside
the phone and decays as a Gaussian of the distance to it (slower before the phone than after, since
speakers anticipate more than they carry over); the curve at any time is the dominance-weighted mean
of all targets (Cohen & Massaro 1993). Strong dominances make lips close fully inside /p b m/ and
round ahead of /uw/ across the consonants before it, weak ones let /t/, /k/, /hh/ take the shape of
their neighbouring vowels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np

from s2v.contract import CONTRACT, MOTION_CHANNELS

log = logging.getLogger(__name__)


class Phone(NamedTuple):
    """One phone of the festival/CMU set with its start and end time in seconds."""

    name: str
    start: float
    end: float


@dataclass(frozen=True)
class Viseme:
    """Target and dominance per MOTION_CHANNELS entry."""

    target: tuple[float, float, float, float, float, float]
    dominance: tuple[float, float, float, float, float, float]


def _v(jaw: float, spread: float, closure: float = 0.0, tuck: float = 0.0, raise_: float = 0.0,
       speech: float = 1.0, *, d_jaw: float = 3.0, d_spread: float = 2.0, d_closure: float = 1.0,
       d_tuck: float = 1.0, d_raise: float = 1.0, d_speech: float = 1.0) -> Viseme:
    return Viseme((jaw, spread, closure, tuck, raise_, speech),
                  (d_jaw, d_spread, d_closure, d_tuck, d_raise, d_speech))


# Vowels hold the jaw and the lip shape; consonants mostly hold only what they need and borrow the rest.
VISEMES: dict[str, Viseme] = {
    "rest": _v(0.0, 0.0, speech=0.0, d_jaw=1.5, d_spread=3.0),
    "aa": _v(0.85, 0.10),
    "ae": _v(0.75, 0.45),
    "ah": _v(0.60, 0.10),
    "ao": _v(0.70, -0.45, d_spread=3.0),
    "ax": _v(0.35, 0.00, d_jaw=2.0, d_spread=0.7),
    "eh": _v(0.55, 0.35),
    "er": _v(0.35, -0.35, raise_=0.30, d_raise=1.5),
    "ih": _v(0.35, 0.45),
    "iy": _v(0.25, 0.70, raise_=0.15, d_spread=3.0),
    "uh": _v(0.35, -0.50, d_spread=3.0),
    "uw": _v(0.20, -0.90, d_spread=8.0),
    "ow_a": _v(0.55, -0.50, d_spread=4.0),
    "ow_b": _v(0.30, -0.85, d_spread=5.0),
    "aw_b": _v(0.35, -0.70, d_spread=4.0),
    "bilabial": _v(0.05, 0.00, closure=1.0, d_jaw=1.5, d_spread=0.3, d_closure=5.0, d_raise=2.0),
    "labiodental": _v(0.12, 0.00, tuck=1.0, raise_=0.25, d_jaw=1.5, d_spread=0.3, d_tuck=5.0, d_raise=1.5),
    "w": _v(0.15, -0.90, d_jaw=1.0, d_spread=8.0),
    "r": _v(0.20, -0.35, raise_=0.35, d_jaw=1.0, d_raise=2.0),
    "l": _v(0.30, 0.10, d_jaw=0.7, d_spread=0.5),
    "y": _v(0.20, 0.50, d_jaw=1.0),
    "sibilant": _v(0.12, 0.30, raise_=0.20, d_jaw=1.5, d_spread=0.7),
    "postalveolar": _v(0.15, -0.50, raise_=0.70, d_jaw=1.5, d_spread=3.0, d_raise=3.0),
    "dental": _v(0.18, 0.10, raise_=0.10, d_jaw=1.0, d_spread=0.4),
    "alveolar": _v(0.18, 0.10, d_jaw=0.8, d_spread=0.3),
    "velar": _v(0.25, 0.00, d_jaw=0.7, d_spread=0.3),
    "glottal": _v(0.40, 0.00, d_jaw=0.2, d_spread=0.2, d_raise=0.3),
}

# Festival/CMU phone -> one viseme, or two for diphthongs (first and second half of the phone).
PHONE_VISEMES: dict[str, tuple[str, ...]] = {
    **{p: ("rest",) for p in ("pau", "h#", "brth", "brk", "sil")},
    **{p: (p,) for p in ("aa", "ae", "ah", "ao", "ax", "eh", "er", "ih", "iy", "uh", "uw", "w", "r", "l", "y")},
    "axr": ("er",),
    "el": ("l",),
    "aw": ("aa", "aw_b"),
    "ay": ("aa", "iy"),
    "ey": ("eh", "iy"),
    "ow": ("ow_a", "ow_b"),
    "oy": ("ao", "iy"),
    **{p: ("bilabial",) for p in ("p", "b", "m", "em")},
    **{p: ("labiodental",) for p in ("f", "v")},
    **{p: ("sibilant",) for p in ("s", "z")},
    **{p: ("postalveolar",) for p in ("sh", "zh", "ch", "jh")},
    **{p: ("dental",) for p in ("th", "dh")},
    **{p: ("alveolar",) for p in ("t", "d", "n", "dx", "nx", "en")},
    **{p: ("velar",) for p in ("k", "g", "ng")},
    **{p: ("glottal",) for p in ("hh", "hv")},
}

SILENCE_PHONES: frozenset[str] = frozenset(p for p, v in PHONE_VISEMES.items() if v == ("rest",))
BILABIAL_PHONES: frozenset[str] = frozenset(("p", "b", "m", "em"))
# Vowels a viewer expects to see open, whoever speaks them; /iy uw ih uh/ may be spoken nearly closed.
OPEN_VOWELS: frozenset[str] = frozenset(("aa", "ae", "ah", "ao", "aw", "ay", "eh", "ey"))
ROUNDED_PHONES: frozenset[str] = frozenset(("uw", "w", "ow"))  # the lips round hardest in these

# Decay time constant (s) of each channel's dominance after a phone; before it, ANTICIPATION times that.
TAU: tuple[float, ...] = (0.050, 0.080, 0.015, 0.020, 0.050, 0.025)
ANTICIPATION = 1.5
CURVE_RATE = 200  # Hz: curves are evaluated this finely, then reduced to video frames
REACH = 0.4  # s: dominances beyond this distance are negligible and skipped
_MAX_REDUCED = np.array([c in ("lip_closure", "lip_tuck") for c in MOTION_CHANNELS])

assert len(TAU) == len(MOTION_CHANNELS)
_unknown_warned: set[str] = set()


def phone_visemes(name: str) -> tuple[str, ...]:
    """Visemes of one phone; an unknown phone counts as a neutral vowel (warned once)."""
    if name not in PHONE_VISEMES:
        if name not in _unknown_warned:
            _unknown_warned.add(name)
            log.warning("unknown phone %r: using schwa", name)
        return ("ax",)
    return PHONE_VISEMES[name]


def rest_target() -> np.ndarray:
    return np.array(VISEMES["rest"].target, dtype=np.float32)


def viseme_curves(phones: Sequence[Phone], duration: float, rate: int = CURVE_RATE) -> np.ndarray:
    """Coarticulated curves [round(duration*rate), len(MOTION_CHANNELS)] sampled at t = (i + 0.5) / rate.

    Time not covered by any phone counts as silence, so padding around an utterance relaxes to rest.
    """
    n = max(int(round(duration * rate)), 0)
    t = (np.arange(n) + 0.5) / rate
    tau = np.array(TAU)
    # Silence is everywhere a phone is not: a weak, constant rest dominance keeps gaps at rest.
    rest = VISEMES["rest"]
    num = np.tile(np.array(rest.target) * np.array(rest.dominance) * 1e-3, (n, 1))
    den = np.tile(np.array(rest.dominance) * 1e-3, (n, 1))
    for ph in phones:
        names = phone_visemes(ph.name)
        step = (ph.end - ph.start) / len(names)
        for k, vname in enumerate(names):
            v = VISEMES[vname]
            s, e = ph.start + k * step, ph.start + (k + 1) * step
            i0 = max(int((s - REACH * ANTICIPATION) * rate), 0)
            i1 = min(int((e + REACH) * rate) + 1, n)
            if i1 <= i0:
                continue
            tt = t[i0:i1, None]
            dist = np.where(tt < s, (s - tt) / (tau * ANTICIPATION), np.maximum(tt - e, 0.0) / tau)
            dom = np.array(v.dominance) * np.exp(-dist * dist)
            num[i0:i1] += dom * np.array(v.target)
            den[i0:i1] += dom
    return (num / den).astype(np.float32)


def frame_targets(curves: np.ndarray, start: float, n_frames: int, frame_dur: float = 1.0 / CONTRACT.audio.fps,
                  rate: int = CURVE_RATE) -> np.ndarray:
    """Reduce curves to video frames [n_frames, C]: frame j covers [start + j*frame_dur, start + (j+1)*frame_dur).

    Brief contacts (closure, tuck) take the frame's maximum so a 30 ms /p/ still shows a closed frame;
    the other channels take the mean. Frames outside the curves are at rest. frame_dur != 1/fps
    reads the curves of speech played faster or slower.
    """
    out = np.tile(rest_target(), (n_frames, 1))
    edges = np.round((start + np.arange(n_frames + 1) * frame_dur) * rate).astype(np.int64)
    a = np.maximum(edges[:-1], 0)
    b = np.minimum(np.maximum(edges[1:], edges[:-1] + 1), len(curves))
    ok = b > a
    if not ok.any():
        return out
    a, b = a[ok], b[ok]
    # Vectorised, since training reduces a crop per batch item: each frame's samples a..b-1, padded by
    # repeating b-1 (harmless to the max, masked out of the mean).
    steps = np.arange(int((b - a).max()))
    seg = curves[np.minimum(a[:, None] + steps, b[:, None] - 1)]  # [frames, samples, C]
    inside = (steps < (b - a)[:, None])[..., None]
    mean = (seg * inside).sum(1) / (b - a)[:, None]
    out[ok] = np.where(_MAX_REDUCED, seg.max(1), mean)
    return out


def motion_targets(phones: Sequence[Phone], n_frames: int) -> np.ndarray:
    """Per-video-frame targets [n_frames, C] of an utterance that starts at time 0."""
    fps = CONTRACT.audio.fps
    curves = viseme_curves(phones, (n_frames + 1) / fps)
    return frame_targets(curves, 0.0, n_frames)
