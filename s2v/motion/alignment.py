"""Phone alignments of recordings, read from the files aligners and synthesisers write.

Evaluation scores a recording against its alignment, and review picks the rendered frames of its
lip-visible phones; both read them here, without torch.
"""

from __future__ import annotations

import re
from pathlib import Path

from s2v.motion.visemes import Phone, phone_visemes


def read_phones(path: Path) -> list[Phone]:
    """Phone alignment in seconds: festival `.segs` (after a `#` line, `END_TIME NUMBER PHONE` per phone,
    each phone starting where the previous one ended), HTK/HTS `.lab` (`START END LABEL` in units of 100 ns;
    a full-context label `a^b-PHONE+d=e...` gives its centre phone) or, for any other suffix, `START END PHONE`
    in seconds per line (blank lines and lines starting with `#` skipped). Names are festival/CMU phones;
    ARPAbet in capitals with stress digits (`AA1`) and aligner silences (`sil`, `sp`, `spn`) are accepted too."""

    def name(text: str) -> str:
        if (centre := re.search(r"-([^-+]+)\+", text)) is not None:
            text = centre.group(1)
        n = text.lower().rstrip("012")
        return "pau" if n in ("sil", "sp", "spn", "") else n

    unit = 1e-7 if path.suffix == ".lab" else 1.0

    lines = [ln.split() for ln in path.read_text().splitlines()]
    phones: list[Phone] = []
    if path.suffix == ".segs":
        start = 0.0
        for parts in lines[next(i for i, p in enumerate(lines) if p == ["#"]) + 1 :]:
            if len(parts) == 3:
                phones.append(Phone(name(parts[2]), start, float(parts[0])))
                start = float(parts[0])
    else:
        for k, parts in enumerate(lines, 1):
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) != 3:
                raise ValueError(f"{path}:{k}: expected 'START END PHONE', got {' '.join(parts)!r}")
            phones.append(Phone(name(parts[2]), float(parts[0]) * unit, float(parts[1]) * unit))
    if not phones:
        raise ValueError(f"{path}: no phones")
    for p in {p.name for p in phones}:
        phone_visemes(p)  # warns once about names outside the phone set
    return phones
