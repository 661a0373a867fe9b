"""Geometry of the frames the exported graph draws, measured on its pixels.

The render step is cut out of the shipped graph (`GraphRenderer`), so chosen motion and controls go through the
very nodes the server runs. Regions are found from the 68 landmarks of the rendered rest frame.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from s2v.avatar import Avatar, AvatarConfig, prepare_avatar
from s2v.avatar.landmarks import find_faces
from s2v.avatar.rig import MOUTH_MAP_NAMES
from s2v.render.graph import GraphRenderer, pose


def rendered(renderer: GraphRenderer, avatar: Avatar, *poses: dict[str, float]) -> np.ndarray:
    motion, controls = (np.stack(rows) for rows in zip(*(pose(**p) for p in poses)))
    return renderer.crops(avatar, motion, controls)


def polygon_mask(shape: tuple[int, ...], points: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def photo_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def renderer(model) -> GraphRenderer:
    return GraphRenderer(model.config.model)


SMILE = data.astronaut()[:300, 80:430]  # the astronaut, smiling with her upper teeth, framed as a portrait


@pytest.fixture(scope="module")
def smiling(renderer) -> tuple[Avatar, np.ndarray]:
    """The astronaut as she smiles in the photo (`close_mouth` off: the rig animates the open mouth itself); and
    her landmarks in the head crop."""
    avatar = prepare_avatar(photo_bytes(SMILE), AvatarConfig(close_mouth=False))
    return avatar, find_faces(rendered(renderer, avatar, {})[0])[0].points


@pytest.fixture(scope="module")
def closed_smile(renderer) -> tuple[Avatar, np.ndarray]:
    """The same photo as an avatar is made by default: its lips brought together at preparation."""
    avatar = prepare_avatar(photo_bytes(SMILE))
    return avatar, find_faces(rendered(renderer, avatar, {})[0])[0].points


def inner_gap(lm: np.ndarray) -> float:
    """dlib's inner-lip gap, mean of the three pairs across the mouth, px."""
    return float(np.mean([np.linalg.norm(lm[a] - lm[b]) for a, b in ((61, 67), (62, 66), (63, 65))]))


def toothlike(rgb: np.ndarray) -> np.ndarray:
    """Bright and nearly colourless pixels."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    return (hsv[..., 2] > 150) & (hsv[..., 1] < 45)


def eye_distance(lm: np.ndarray) -> float:
    return float(np.linalg.norm(lm[42:48].mean(0) - lm[36:42].mean(0)))


@pytest.fixture(scope="module")
def closed_mouth(renderer, smiling) -> tuple[Avatar, np.ndarray]:
    """A photo with the lips closed: the smiling avatar's own /m/ frame, prepared again as a photo."""
    avatar, _ = smiling
    x0, y0, x1, y1 = avatar.box
    photo = avatar.background.copy()
    photo[y0:y1, x0:x1] = rendered(renderer, avatar, {"lip_closure": 1.0})[0]
    closed = prepare_avatar(photo_bytes(photo))
    assert not closed.info["rig"]["photo_shows_teeth"]
    return closed, find_faces(rendered(renderer, closed, {})[0])[0].points


def mouth_aperture(crop: np.ndarray, rest: np.ndarray, lm: np.ndarray) -> float:
    """Height in px of the mouth cavity that is not in the photo: dark pixels, in the columns around the mouth's
    centre, that are not dark at rest."""
    cx = int(round((lm[62, 0] + lm[66, 0]) / 2))
    fw = float(np.linalg.norm(lm[16] - lm[0]))
    rows, cols = slice(int(lm[51, 1] - 0.05 * fw), int(lm[57, 1] + 0.3 * fw)), slice(cx - 3, cx + 4)
    nose = rest[int(lm[29, 1]) - 3 : int(lm[29, 1]) + 4, int(lm[29, 0]) - 3 : int(lm[29, 0]) + 4]
    dark = 0.45 * float(np.median(luma(nose)))
    cavity = (luma(crop[rows, cols]) < dark) & (luma(rest[rows, cols]) >= dark)
    return float(cavity.sum(axis=0).mean())


@pytest.mark.parametrize("which", ["smiling", "closed_mouth"])
def test_mouth_aperture_grows_monotonically_with_jaw_opening(renderer, which, request):
    avatar, lm = request.getfixturevalue(which)
    jaws = np.linspace(0.0, 1.0, 6)
    crops = rendered(renderer, avatar, *({"jaw_open": float(j), "speech": 1.0} for j in jaws))
    aperture = np.array([mouth_aperture(c, crops[0], lm) for c in crops])
    assert aperture[0] == 0 and (np.diff(aperture) >= 0).all(), aperture
    assert aperture[-1] > 0.08 * np.linalg.norm(lm[16] - lm[0]), aperture


def test_an_opening_closed_mouth_shows_teeth(renderer, closed_mouth):
    avatar, lm = closed_mouth
    rest, open_ = rendered(renderer, avatar, {}, {"jaw_open": 1.0, "speech": 1.0})
    fw = float(np.linalg.norm(lm[16] - lm[0]))
    lips_and_gap = polygon_mask(rest.shape, np.concatenate([lm[48:55], lm[54:60] + [0, 0.16 * fw]]))

    def teeth(crop: np.ndarray) -> int:  # bright and nearly colourless
        hsv = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV)
        return int(((hsv[..., 2] > 150) & (hsv[..., 1] < 45))[lips_and_gap].sum())

    assert teeth(open_) > teeth(rest) + 0.005 * fw * fw


def test_a_blink_closes_the_eyes(renderer, smiling):
    avatar, lm = smiling
    open_, shut = rendered(renderer, avatar, {}, {"blink": 1.0})
    for eye in (lm[36:42], lm[42:48]):
        region = polygon_mask(open_.shape, eye)
        dark_open = (luma(open_)[region] < 90).sum()
        dark_shut = (luma(shut)[region] < 90).sum()
        assert dark_open > 15 and dark_shut < 0.25 * dark_open, (dark_open, dark_shut)
        # what covers the eye is lid skin: close to the skin just under the brow
        assert np.ptp(luma(shut)[region]) < np.ptp(luma(open_)[region])


def marked(avatar: Avatar, mask: np.ndarray) -> Avatar:
    """The avatar rendering `mask` (green on black) instead of its photo: what shows in a frame is where the
    masked pixels went."""
    image = np.zeros_like(avatar.inputs["avatar_image"]) + 0.5
    image[1] += 255 * mask
    return Avatar(avatar.id, avatar.background, avatar.box, {**avatar.inputs, "avatar_image": image})


def shown(crop: np.ndarray) -> np.ndarray:
    return crop[..., 1] > 127


def photo_teeth(avatar: Avatar, lm: np.ndarray) -> np.ndarray:
    photo = avatar.inputs["avatar_image"].transpose(1, 2, 0)
    return polygon_mask(photo.shape, lm[60:68]) & (luma(photo) > 170)


def test_a_smiling_photo_can_close_its_lips_over_the_teeth(renderer, smiling):
    avatar, lm = smiling
    assert avatar.info["rig"]["photo_shows_teeth"]
    teeth = photo_teeth(avatar, lm)
    assert teeth.sum() > 150
    rest, closed = rendered(renderer, marked(avatar, teeth), {}, {"lip_closure": 1.0, "speech": 1.0})
    assert shown(rest).sum() == teeth.sum()
    assert shown(closed).sum() < 0.03 * teeth.sum(), (teeth.sum(), shown(closed).sum())


def test_rounded_lips_narrow_a_smile_and_cover_its_teeth(renderer, smiling):
    """/uw/ from a smiling photo: the upper lip comes down over the teeth and the lips get narrower, while the
    jaw still parts them (a dark opening, not a closed smile)."""
    avatar, lm = smiling
    uw = {"jaw_open": 0.3, "lip_spread": -1.0, "speech": 1.0}
    teeth = photo_teeth(avatar, lm)
    assert shown(rendered(renderer, marked(avatar, teeth), uw)[0]).sum() < 0.35 * teeth.sum()
    lips = polygon_mask(teeth.shape, lm[48:60])
    rest, rounded = (shown(c) for c in rendered(renderer, marked(avatar, lips), {}, uw))
    width = lambda mask: np.ptp(np.flatnonzero(mask.any(axis=0)))  # noqa: E731
    assert width(rounded) < 0.85 * width(rest), (width(rest), width(rounded))
    photo_rest, photo_uw = rendered(renderer, avatar, {}, uw)
    assert mouth_aperture(photo_uw, photo_rest, lm) > 0.01 * np.linalg.norm(lm[16] - lm[0])


EXTREMES = [
    {"jaw_open": 1.0, "lip_spread": 1.0, "head_yaw": 0.15, "head_pitch": 0.1, "head_roll": 0.1, "blink": 1.0},
    {"jaw_open": 1.0, "lip_spread": -1.0, "head_yaw": -0.15, "head_pitch": -0.1, "head_roll": -0.1},
    {"lip_closure": 1.0, "lip_tuck": 1.0, "upper_lip_raise": 1.0, "head_yaw": 0.15, "head_pitch": -0.1},
]


@pytest.mark.parametrize("crop_of_photo", [(slice(0, 300), slice(80, 430)), (slice(None), slice(None))])
def test_pixels_far_from_the_head_never_change(renderer, crop_of_photo):
    """Outside the head square the frame is the photo by construction; inside it, its rim and its corners
    (far from the face) are the photo too, so the square pastes back without a seam."""
    avatar = prepare_avatar(photo_bytes(np.ascontiguousarray(data.astronaut()[crop_of_photo])))
    frames = GraphRenderer.frames(renderer, avatar, *(np.stack(r) for r in zip(*(pose(**p) for p in EXTREMES))))
    x0, y0, x1, y1 = avatar.box
    outside = np.ones(avatar.background.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert (frames[:, outside] == avatar.background[outside]).all()
    crops = frames[:, y0:y1, x0:x1]
    photo = avatar.background[y0:y1, x0:x1]
    rim = np.ones(photo.shape[:2], bool)
    rim[2:-2, 2:-2] = False
    assert (crops[:, rim] == photo[rim]).all()
    k = (x1 - x0) // 16  # hair, which moves with the head, can reach further into the square's corners
    for corner in ((slice(0, k), slice(0, k)), (slice(0, k), slice(-k, None))):  # the top corners: background
        assert (crops[(slice(None), *corner)] == photo[corner]).all()


def test_rest_pose_is_the_photo(renderer, smiling):
    avatar, _ = smiling
    x0, y0, x1, y1 = avatar.box
    rest = rendered(renderer, avatar, {})[0]
    assert np.abs(rest.astype(int) - avatar.background[y0:y1, x0:x1]).max() <= 1


@pytest.mark.parametrize("which", ["smiling", "closed_smile", "closed_mouth"])
def test_a_full_aa_parts_the_lips_by_a_third_of_the_mouth_width(renderer, which, request):
    """Read back by dlib on the rendered frame, as a viewer's eye would: a natural /aa/ is 0.35-0.5."""
    avatar, _ = request.getfixturevalue(which)
    lm = find_faces(rendered(renderer, avatar, {"jaw_open": 1.0, "speech": 1.0})[0])[0].points
    assert inner_gap(lm) > np.linalg.norm(lm[54] - lm[48]) / 3


def test_a_smiling_photo_becomes_an_avatar_with_closed_lips(renderer, smiling, closed_smile):
    """By default the photo's teeth are covered by its own lips at rest, and dlib, reading the rendered frames,
    sees lips that touch at rest and under a full closure (under 4 % of the eye distance apart, as the pixel
    evaluation counts a closed mouth), where the photo itself shows them apart."""
    avatar, lm = closed_smile
    assert avatar.info["mouth_at_rest"] == "closed from the photo's open mouth"
    assert smiling[0].info["mouth_at_rest"] == "as in the photo"
    photo_lm = smiling[1]
    assert inner_gap(photo_lm) > 0.1 * eye_distance(photo_lm)
    assert inner_gap(lm) < 0.04 * eye_distance(lm)
    closed = find_faces(rendered(renderer, avatar, {"lip_closure": 1.0, "speech": 1.0})[0])[0].points
    assert inner_gap(closed) < 0.04 * eye_distance(closed)
    rest = rendered(renderer, avatar, {})[0]
    photo = smiling[0].background[avatar.box[1] : avatar.box[3], avatar.box[0] : avatar.box[2]]
    teeth = polygon_mask(rest.shape, photo_lm[60:68])  # between the photo's inner lips
    assert toothlike(photo)[teeth].sum() > 150
    # what stays bright there is the lower lip's own sheen, moved up with it
    assert toothlike(rest)[teeth].sum() < 0.25 * toothlike(photo)[teeth].sum()
    # the rest frame is the prepared picture, and away from the mouth that is the photo
    x0, y0, x1, y1 = avatar.box
    assert np.abs(rest.astype(int) - avatar.background[y0:y1, x0:x1]).max() <= 1
    eyes = polygon_mask(rest.shape, np.concatenate([lm[17:27], lm[[45, 36]]]))
    assert (avatar.background == smiling[0].background)[y0:y1, x0:x1][eyes].all()


def test_a_head_turn_moves_the_near_side_of_the_face_more_than_the_far_side(renderer, smiling):
    """Depth: turning, the nose (near) travels further than the cheeks at the face's edges (far)."""
    avatar, lm = smiling
    fields = avatar.inputs["avatar_fields"]  # [1 + K, H, W, 2]: the rest grid, then each basis in grid units
    yaw = fields[1, ..., 0] * fields.shape[2] / 2  # px of sideways shift per radian
    at = lambda p: abs(float(yaw[int(round(p[1])), int(round(p[0]))]))  # noqa: E731
    nose, cheeks = at(lm[30]), max(at(lm[1]), at(lm[15]))
    assert nose > 1.5 * cheeks > 0, (nose, cheeks)
    turned = rendered(renderer, avatar, {"head_yaw": 0.15})[0]
    moved = find_faces(turned)[0].points - lm
    assert abs(moved[30, 0]) > abs(moved[[1, 15], 0]).max() + 1.0, moved[[1, 15, 30]]


def test_gaze_moves_the_irises_and_leaves_the_lids(renderer, smiling):
    avatar, lm = smiling
    rest, right, left = rendered(renderer, avatar, {}, {"gaze_x": 0.6}, {"gaze_x": -0.6})
    for eye in (lm[36:42], lm[42:48]):
        inside = polygon_mask(rest.shape, eye)
        ys, xs = np.nonzero(inside)

        def iris_x(crop: np.ndarray) -> float:  # centroid of the eye's dark pixels
            dark = luma(crop)[ys, xs] < 0.6 * np.median(luma(rest)[ys, xs])
            return float(xs[dark].mean())

        width = np.ptp(eye[:, 0])
        assert iris_x(right) - iris_x(rest) > 0.03 * width and iris_x(left) - iris_x(rest) < -0.03 * width
        # the brow and the skin above the upper lid do not move
        above = polygon_mask(rest.shape, np.concatenate([eye[0:4] - [0, 0.5 * width], eye[3::-1] - [0, 0.1 * width]]))
        assert np.abs(right.astype(int) - rest)[above].max() <= 2


def test_brows_rise_and_knit_and_the_eyes_stay(renderer, smiling):
    avatar, lm = smiling
    rest, raised, knit = rendered(renderer, avatar, {}, {"brow_raise": 1.0}, {"brow_knit": 1.0})
    moved_up = find_faces(raised)[0].points - lm
    fw = float(np.linalg.norm(lm[16] - lm[0]))
    assert moved_up[17:27, 1].mean() < -0.02 * fw  # brows up by at least 2 % of the face width
    assert np.abs(moved_up[36:48]).mean() < 0.01 * fw  # the eyes do not follow
    inner = find_faces(knit)[0].points
    assert np.linalg.norm(inner[21] - inner[22]) < np.linalg.norm(lm[21] - lm[22]) - 0.01 * fw


def test_rounded_lips_hide_the_teeth_an_open_jaw_shows(renderer, closed_mouth):
    """Between the inner lips (dlib, on each rendered frame) an /uw/ shows less tooth than an open jaw does."""
    avatar, _ = closed_mouth
    open_, rounded = rendered(renderer, avatar, {"jaw_open": 0.5, "speech": 1.0},
                              {"jaw_open": 0.5, "lip_spread": -1.0, "speech": 1.0})

    def toothy(crop: np.ndarray) -> float:  # share of bright, pale pixels inside the inner lip line
        inner = polygon_mask(crop.shape, find_faces(crop)[0].points[60:68])
        hsv = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV)
        return float(((hsv[..., 2] > 120) & (hsv[..., 1] < 80))[inner].mean())

    assert toothy(rounded) < 0.85 * toothy(open_), (toothy(open_), toothy(rounded))


def with_own_teeth_marked(avatar: Avatar) -> Avatar:
    """The avatar with the photo's own teeth replaced by pure green: what shows green is drawn from them."""
    maps = avatar.inputs["avatar_mouth_maps"].copy()
    for name, value in (("photo_teeth_r", 0.5), ("photo_teeth_g", 255.5), ("photo_teeth_b", 0.5)):
        maps[MOUTH_MAP_NAMES.index(name)] = value
    return Avatar(avatar.id, avatar.background, avatar.box, {**avatar.inputs, "avatar_mouth_maps": maps})


def green(crop: np.ndarray) -> np.ndarray:
    return (crop[..., 1] > 120) & (crop[..., 0] < 60) & (crop[..., 2] < 60)


def test_an_opening_smile_shows_the_photos_own_teeth(renderer, closed_smile, closed_mouth):
    """Upper teeth stay with the skull: where the photo showed them, the opened mouth draws those very pixels.
    A photo with closed lips has none to show and keeps the drawn ones."""
    rest, opened = rendered(renderer, with_own_teeth_marked(closed_smile[0]), {}, {"jaw_open": 0.6, "speech": 1.0})
    assert green(rest).sum() == 0 and green(opened).sum() > 30, green(opened).sum()
    _, opened = rendered(renderer, with_own_teeth_marked(closed_mouth[0]), {}, {"jaw_open": 0.6, "speech": 1.0})
    assert green(opened).sum() == 0


def test_a_grayscale_smile_is_closed_too(renderer):
    """Nothing has colour in a grayscale photo: its teeth are found by brightness, and its lips closed."""
    grey = np.repeat(luma(SMILE)[..., None], 3, axis=2).astype(np.uint8)
    avatar = prepare_avatar(photo_bytes(grey))
    assert avatar.info["mouth_at_rest"] == "closed from the photo's open mouth"
    lm = find_faces(rendered(renderer, avatar, {})[0])[0].points
    assert inner_gap(lm) < 0.04 * eye_distance(lm)
