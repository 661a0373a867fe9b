"""Phone alignments come in the formats synthesisers and aligners write; each reads to the same phones."""

from __future__ import annotations

import pytest

from s2v.motion.alignment import read_phones
from s2v.review import phone_frames


def test_reads_festival_segs(tmp_path):
    path = tmp_path / "a.segs"
    path.write_text("separator ;\nnfields 1\n#\n0.100 100 pau\n0.180 100 m\n0.300 100 aa\n")
    assert [tuple(p) for p in read_phones(path)] == [("pau", 0.0, 0.1), ("m", 0.1, 0.18), ("aa", 0.18, 0.3)]


def test_reads_htk_full_context_labels_in_100ns_units(tmp_path):
    path = tmp_path / "a.lab"
    path.write_text("0 1300000 x^x-sil+hh=iy@x_x/A:0_0_0\n"
                    "1300000 2050000 x^sil-hh+iy=t@1_2/A:0_0_0\n"
                    "2050000 2700000 sil^hh-iy+t=er@2_1/A:0_0_0\n")
    phones = read_phones(path)
    assert [p.name for p in phones] == ["pau", "hh", "iy"]
    assert phones[1].start == pytest.approx(0.13) and phones[2].end == pytest.approx(0.27)


def test_reads_arpabet_seconds_from_an_aligner(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("# start end phone\n0.00 0.37 SIL\n0.37 0.46 AE1\n\n0.46 0.52 sp\n0.52 0.60 UW\n")
    assert [p.name for p in read_phones(path)] == ["pau", "ae", "pau", "uw"]


_WORDS = '"IntervalTier"\n"words"\n0\n0.5\n1\n0\n0.5\n"map"\n'


def test_reads_the_phone_tier_of_a_short_textgrid_as_mfa_writes_it(tmp_path):
    path = tmp_path / "a.TextGrid"
    path.write_text('File type = "ooTextFile"\nObject class = "TextGrid"\n\n0\n0.5\n<exists>\n2\n' + _WORDS +
                    '"IntervalTier"\n"phones"\n0\n0.5\n3\n0\n0.1\n""\n0.1\n0.25\n"M"\n0.25\n0.5\n"AE1"\n')
    assert [tuple(p) for p in read_phones(path)] == [("pau", 0.0, 0.1), ("m", 0.1, 0.25), ("ae", 0.25, 0.5)]


def test_reads_a_long_textgrid_and_says_which_tiers_it_has_when_none_holds_phones(tmp_path):
    long = ('File type = "ooTextFile"\nObject class = "TextGrid"\n\nxmin = 0\nxmax = 0.3\ntiers? <exists>\n'
            'size = 1\nitem []:\n    item [1]:\n        class = "IntervalTier"\n        name = "{tier}"\n'
            '        xmin = 0\n        xmax = 0.3\n        intervals: size = 2\n        intervals [1]:\n'
            '            xmin = 0\n            xmax = 0.12\n            text = "B"\n        intervals [2]:\n'
            '            xmin = 0.12\n            xmax = 0.3\n            text = "UW1"\n')
    path = tmp_path / "a.TextGrid"
    path.write_text(long.format(tier="phone"))
    assert [tuple(p) for p in read_phones(path)] == [("b", 0.0, 0.12), ("uw", 0.12, 0.3)]
    path.write_text(long.format(tier="words"))
    with pytest.raises(ValueError, match=r"no tier named 'phones' \(tiers: words\)"):
        read_phones(path)


def test_reads_pocketsphinx_alignment_json(tmp_path):
    path = tmp_path / "a.phone.json"
    path.write_text('{"b":0.0,"d":0.5,"t":"we","w":[{"b":0.0,"d":0.2,"t":"<sil>","w":[{"b":0.0,"d":0.2,"t":"SIL"}]},'
                    '{"b":0.2,"d":0.3,"t":"we","w":[{"b":0.2,"d":0.1,"t":"W"},{"b":0.3,"d":0.2,"t":"IY"}]}]}\n')
    phones = read_phones(path)
    assert [p.name for p in phones] == ["pau", "w", "iy"] and phones[2].end == pytest.approx(0.5)


def test_a_malformed_line_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("0.0 0.1 pau\n0.1 m\n")
    with pytest.raises(ValueError, match=r"bad.txt:2"):
        read_phones(path)


def test_phone_sheet_picks_the_middle_frame_of_each_visible_phone(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("0.00 0.30 pau\n0.30 0.42 m\n0.42 0.60 aa\n0.60 0.70 t\n0.70 0.90 uw\n")
    picked = phone_frames(read_phones(path), fps=25)
    assert {i: p.name for i, p in picked.items()} == {9: "m", 12: "aa", 20: "uw"}
