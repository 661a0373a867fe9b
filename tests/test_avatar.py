"""Photo in, avatar out: every kind of photo a user may upload is either prepared or refused in words.

Inputs are made here from scikit-image's public-domain astronaut (half-body, smiling, teeth showing).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from skimage import data

import s2v.avatar.prepare as prepare_module
from s2v.avatar import AvatarConfig, AvatarError, AvatarStore, prepare_avatar
from s2v.avatar.landmarks import Face, find_faces
from s2v.avatar.prepare import MAX_BYTES, SIZES
from s2v.avatar.store import BUILTIN_PHOTO

ASTRONAUT = data.astronaut()  # 512 x 512, face about 93 px wide


def encode(rgb: np.ndarray | Image.Image, fmt: str = "PNG", **options) -> bytes:
    image = rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb)
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def canvas(size: tuple[int, int], value: int = 200) -> Image.Image:
    return Image.new("RGB", size, (value, value, value))


@pytest.fixture(scope="module")
def astronaut_face() -> Face:
    return find_faces(ASTRONAUT)[0]


def test_a_half_body_photo_becomes_a_512_avatar():
    avatar = prepare_avatar(encode(ASTRONAUT))
    assert avatar.background.shape == (512, 512, 3)
    assert avatar.info["framing"] == "half-body"
    assert avatar.info["warnings"] == []
    # the whole photo fits the square frame, so the frame is the photo
    assert np.abs(avatar.background.astype(int) - ASTRONAUT).mean() < 2
    x0, y0, x1, y1 = avatar.box
    assert x1 - x0 == y1 - y0 and (x1 - x0) % 8 == 0
    assert set(avatar.inputs) >= {"avatar_image", "avatar_fields"}


def test_a_tight_portrait_is_framed_inside_the_photo():
    # 200 px around the face: at the usual face share the frame would run past every edge of the photo
    photo = ASTRONAUT[0:200, 150:350]
    avatar = prepare_avatar(encode(photo))
    assert avatar.info["fit"] == "zoomed in to stay inside the photo" and avatar.info["warnings"] == []
    # every pixel is the photo's, scaled: the frame downscaled back matches it
    back = np.asarray(Image.fromarray(avatar.background).resize((200, 200), Image.Resampling.LANCZOS), int)
    assert np.abs(back - photo).mean() < 6


def test_a_photo_too_small_to_fill_the_frame_is_continued_without_streaks():
    photo = ASTRONAUT[20:190, 170:330]  # the face would have to fill more than half the frame to stay inside
    avatar = prepare_avatar(encode(photo))
    assert avatar.info["fit"] == "extended beyond the photo"
    # a replicated edge makes every row below the photo (every column left of it) alike: texture along the
    # edge and none across it. The continuation may be soft, but not striped.
    for strip, along in ((avatar.background[-40:], 1), (avatar.background[:, :40], 0)):
        strip = strip.astype(float)
        anisotropy = np.abs(np.diff(strip, axis=along)).mean() / (np.abs(np.diff(strip, axis=1 - along)).mean() + 1e-3)
        assert anisotropy < 10


@pytest.mark.parametrize(
    ("pad", "framing"),
    [((0, -300, 0, 0), "portrait"), ((0, 0, 0, 0), "half-body"), ((0, 700, 400, 400), "full-body")],
)
def test_framing_is_told_from_what_lies_below_the_chin(pad, framing):
    top, bottom, left, right = pad
    padded = np.pad(ASTRONAUT, ((top, max(bottom, 0)), (left, right), (0, 0)), "reflect")
    rgb = padded[: 512 + bottom] if bottom < 0 else padded
    assert prepare_avatar(encode(rgb)).info["framing"] == framing


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("landscape", [True, False])
def test_named_sizes_follow_the_photos_orientation(size, landscape):
    rgb = np.pad(ASTRONAUT, ((0, 0), (200, 200), (0, 0)), "reflect") if landscape else ASTRONAUT[:, 100:420]
    avatar = prepare_avatar(encode(rgb), AvatarConfig(size=size))
    long, short = SIZES[size]
    assert avatar.background.shape[:2] == ((short, long) if landscape else (long, short))
    # the head crop scales with the face, not with the frame
    side = avatar.box[2] - avatar.box[0]
    assert abs(side - 1.65 * avatar.info["rig"]["face_width_px"]) <= 8


def test_an_unknown_size_is_refused():
    with pytest.raises(AvatarError, match="unknown size"):
        AvatarConfig(size="4k")


def test_grayscale_photo():
    avatar = prepare_avatar(encode(Image.fromarray(ASTRONAUT).convert("L")))
    assert avatar.background.shape == (512, 512, 3)
    assert np.ptp(avatar.background.astype(int), axis=2).max() <= 1  # still grey


def test_cmyk_jpeg():
    avatar = prepare_avatar(encode(Image.fromarray(ASTRONAUT).convert("CMYK"), "JPEG", quality=95))
    assert np.abs(avatar.background.astype(int) - ASTRONAUT).mean() < 12


def test_png_with_alpha_is_composited_on_white():
    rgba = np.dstack([ASTRONAUT, np.full(ASTRONAUT.shape[:2], 255, np.uint8)])
    rgba[:, :40, 3] = 0  # a transparent strip on the left
    avatar = prepare_avatar(encode(rgba))
    assert (avatar.background[:, :35] == 255).all()


def test_exif_rotated_jpeg_is_turned_upright(astronaut_face):
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the stored pixels must be turned 90 degrees clockwise to display
    stored = Image.fromarray(ASTRONAUT).transpose(Image.Transpose.ROTATE_90)
    avatar = prepare_avatar(encode(stored, "JPEG", quality=95, exif=exif))
    assert avatar.info["face_box"][0] == pytest.approx(astronaut_face.box[0], abs=8)
    assert avatar.info["framing"] == "half-body"


def test_a_huge_jpeg_is_downscaled_without_exhausting_memory(tmp_path):
    """10 000 x 10 000 px: decoded at a reduced scale in a child process whose peak memory is checked."""
    big = Image.new("L", (10000, 10000), 128)
    big.paste(Image.fromarray(ASTRONAUT).convert("L").resize((5000, 5000)), (2500, 2500))
    path = tmp_path / "huge.jpg"
    big.save(path, "JPEG", quality=80)
    del big
    script = (
        "import resource, sys, json\n"
        "from s2v.avatar import prepare_avatar\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"avatar = prepare_avatar(open({str(path)!r}, 'rb').read())\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'grown_mb': (after - before) / 1024, 'photo': avatar.info['photo_size']}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.splitlines()[-1])
    assert max(result["photo"]) <= 4096
    assert result["grown_mb"] < 400, result


def test_a_huge_png_is_refused_before_decoding():
    with pytest.raises(AvatarError, match="too many pixels"):
        prepare_avatar(encode(Image.new("1", (10000, 10000))))


def test_50_mb_is_refused():
    with pytest.raises(AvatarError, match="MB"):
        prepare_avatar(b"\xff\xd8" + bytes(50 * 2**20))
    assert MAX_BYTES < 50 * 2**20


@pytest.mark.parametrize("payload", [b"", b"hello, this is not a picture", b"\x89PNG\r\n\x1a\n" + bytes(100)])
def test_not_an_image(payload):
    with pytest.raises(AvatarError, match="not a readable image"):
        prepare_avatar(payload)


def test_no_face():
    gradient = np.broadcast_to(np.linspace(0, 255, 512, dtype=np.uint8)[None, :, None], (512, 512, 3))
    with pytest.raises(AvatarError, match="no face"):
        prepare_avatar(encode(np.ascontiguousarray(gradient)))


def test_a_face_under_64_px_is_refused():
    photo = canvas((400, 400))
    photo.paste(Image.fromarray(ASTRONAUT).resize((300, 300)), (50, 50))  # face about 55 px wide
    with pytest.raises(AvatarError, match="at least 64 px"):
        prepare_avatar(encode(photo))


def test_several_faces_take_the_largest_and_say_so():
    photo = canvas((900, 600))
    photo.paste(Image.fromarray(ASTRONAUT), (0, 0))
    photo.paste(Image.fromarray(ASTRONAUT).resize((360, 360)), (530, 100))
    avatar = prepare_avatar(encode(photo))
    assert avatar.info["faces_found"] == 2
    assert any("used the largest" in w for w in avatar.info["warnings"])
    assert avatar.info["face_box"][0] < 512  # the big one, on the left


def test_a_profile_is_refused(monkeypatch, astronaut_face):
    """dlib's frontal detector seldom finds a true profile at all (then: no face); when it does, the nose sits near
    one edge of the face. Simulated on the real landmarks, nose and mouth slid towards one ear."""
    points = astronaut_face.points.copy()
    points[27:68] += [0.55 * astronaut_face.width, 0.0]
    profile = Face(astronaut_face.box, astronaut_face.score, points)
    monkeypatch.setattr(prepare_module, "find_faces", lambda rgb: [profile])
    with pytest.raises(AvatarError, match="profile"):
        prepare_avatar(encode(ASTRONAUT))


def test_a_head_turned_30_degrees_is_accepted(monkeypatch, astronaut_face):
    """A three-quarter view puts the nose about a third of a face width off the centre: still a face to animate."""
    points = astronaut_face.points.copy()
    points[27:68] += [0.33 * astronaut_face.width, 0.0]
    turned = Face(astronaut_face.box, astronaut_face.score, points)
    monkeypatch.setattr(prepare_module, "find_faces", lambda rgb: [turned])
    assert prepare_avatar(encode(ASTRONAUT)).info["faces_found"] == 1


def test_the_store_reuses_a_prepared_photo(tmp_path):
    store = AvatarStore(tmp_path)
    first = store.put(encode(ASTRONAUT))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"{first.id}.json", f"{first.id}.npz"]
    again = AvatarStore(tmp_path).get(first.id)  # from disk, not memory
    assert again.box == first.box and again.info == first.info
    np.testing.assert_array_equal(again.inputs["avatar_fields"], first.inputs["avatar_fields"])
    assert AvatarStore(tmp_path).put(encode(ASTRONAUT)).id == first.id


def test_the_store_leaves_nothing_half_written(tmp_path, monkeypatch):
    store = AvatarStore(tmp_path)
    real_dump = json.dump

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", disk_full)  # the arrays are written, then the metadata fails
    with pytest.raises(OSError):
        store.put(encode(ASTRONAUT))
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(json, "dump", real_dump)
    with pytest.raises(AvatarError):
        store.put(b"not an image")
    assert list(tmp_path.iterdir()) == []
    assert store.put(encode(ASTRONAUT)).id  # and it works once the disk is back


def test_store_ids_never_name_a_path(tmp_path):
    with pytest.raises(KeyError):
        AvatarStore(tmp_path).get("../../etc/passwd")


def test_the_store_keeps_to_its_quota_by_deleting_the_least_recently_used(tmp_path):
    photo = BUILTIN_PHOTO.read_bytes()
    configs = [AvatarConfig(width=256, height=256, face_width=f) for f in (0.30, 0.29, 0.28)]  # three of one photo
    probe = AvatarStore(tmp_path / "probe").put(photo, configs[0])
    one = sum(p.stat().st_size for p in (tmp_path / "probe").glob(f"{probe.id}.*"))
    store = AvatarStore(tmp_path / "store", max_bytes=int(2.5 * one))
    first = store.put(photo, configs[0])
    second = store.put(photo, configs[1])
    time.sleep(0.01)
    store.get(first.id)  # used again: now the second is the least recently used
    third = store.put(photo, configs[2])
    on_disk = {p.stem for p in (tmp_path / "store").glob("*.json")}
    assert on_disk == {first.id, third.id}
    assert sum(p.stat().st_size for p in (tmp_path / "store").iterdir()) <= 2.5 * one
    assert store.put(photo, configs[1]).id == second.id  # asked for again, it is simply prepared again
