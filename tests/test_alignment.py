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
