"""Phone alignments of recordings, read from the files aligners and synthesisers write.

Evaluation scores a recording against its alignment, and review picks the rendered frames of its
lip-visible phones; both read them here, without torch.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from s2v.motion.visemes import Phone, phone_visemes


def phone_name(label: str) -> str:
    """festival/CMU phone of an aligner's label: ARPAbet with stress digits, silences, HTS full context."""
    if (centre := re.search(r"-([^-+]+)\+", label)) is not None:
        label = centre.group(1)
    name = label.lower().rstrip("012")
    return "pau" if name in ("sil", "sp", "spn", "") else name


_TEXTGRID_TOKEN = re.compile(r'"((?:[^"]|"")*)"|\[\d*\]|(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)')


def _textgrid_tiers(text: str) -> dict[str, list[tuple[float, float, str]]]:
    """Interval tiers of a Praat TextGrid, long or short text format: both list the same numbers and quoted
    strings in the same order, the long one with `key =` names and `[n]` indices around them."""
    tokens: list[str | float] = [m.group(1).replace('""', '"') if m.group(1) is not None else float(m.group(2))
                                 for m in _TEXTGRID_TOKEN.finditer(text) if m.group(1) is not None or m.group(2)]
    if tokens[:2] != ["ooTextFile", "TextGrid"]:
        raise ValueError("not a Praat TextGrid text file")
    tiers: dict[str, list[tuple[float, float, str]]] = {}
    k = 5  # after the header, xmin, xmax and the tier count
    for _ in range(int(tokens[4])):
        kind, name, count = tokens[k], str(tokens[k + 1]), int(tokens[k + 4])
        k += 5
        step = 3 if kind == "IntervalTier" else 2
        if kind == "IntervalTier":
            tiers[name] = [(float(tokens[i]), float(tokens[i + 1]), str(tokens[i + 2]))
                           for i in range(k, k + step * count, step)]
        k += step * count
    return tiers


def _phone_tier(path: Path, text: str) -> list[tuple[float, float, str]]:
    tiers = _textgrid_tiers(text)
    tier = next((t for t in ("phones", "phone") if t in tiers), None)
    if tier is None:
        raise ValueError(f"{path}: no tier named 'phones' (tiers: {', '.join(tiers) or 'none'})")
    return tiers[tier]


def _pocketsphinx_json(text: str) -> list[tuple[float, float, str]]:
    """Phones of pocketsphinx's alignment JSON: each word's `w` lists its phones with begin `b` and duration `d`."""
    return [(ph["b"], ph["b"] + ph["d"], ph["t"]) for line in text.splitlines() if line.strip()
            for word in json.loads(line)["w"] for ph in word.get("w", [])]


def read_phones(path: Path) -> list[Phone]:
    """Phone alignment in seconds: festival `.segs` (after a `#` line, `END_TIME NUMBER PHONE` per phone,
    each phone starting where the previous one ended), HTK/HTS `.lab` (`START END LABEL` in units of 100 ns;
    a full-context label `a^b-PHONE+d=e...` gives its centre phone), a Praat `.TextGrid` (its tier named
    `phones` or `phone`, as Montreal Forced Aligner writes), pocketsphinx's alignment `.json`, or, for any other
    suffix, `START END PHONE` in seconds per line (blank lines and lines starting with `#` skipped). Names are
    festival/CMU phones; ARPAbet in capitals with stress digits (`AA1`) and aligner silences (`sil`, `sp`, `spn`,
    empty) are accepted too."""
    text = path.read_text(encoding="utf-8-sig")
    lines = [ln.split() for ln in text.splitlines()]
    phones: list[Phone] = []
    if path.suffix in (".json", ".TextGrid"):
        intervals = _pocketsphinx_json(text) if path.suffix == ".json" else _phone_tier(path, text)
        phones = [Phone(phone_name(label), start, end) for start, end, label in intervals]
    elif path.suffix == ".segs":
        start = 0.0
        for parts in lines[next(i for i, p in enumerate(lines) if p == ["#"]) + 1 :]:
            if len(parts) == 3:
                phones.append(Phone(phone_name(parts[2]), start, float(parts[0])))
                start = float(parts[0])
    else:
        unit = 1e-7 if path.suffix == ".lab" else 1.0
        for k, parts in enumerate(lines, 1):
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) != 3:
                raise ValueError(f"{path}:{k}: expected 'START END PHONE', got {' '.join(parts)!r}")
            phones.append(Phone(phone_name(parts[2]), float(parts[0]) * unit, float(parts[1]) * unit))
    if not phones:
        raise ValueError(f"{path}: no phones")
    for p in {p.name for p in phones}:
        phone_visemes(p)  # warns once about names outside the phone set
    return phones
