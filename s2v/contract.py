"""The exported model's contract, written once as data.

Training, export, the ONNX Runtime generator and the tests all read these numbers from here, so
the graph's inputs and outputs can never drift from what the code around it expects.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AudioSpec:
    """Audio the model consumes: 16 kHz mono float PCM, framed for a log-mel front end."""

    sample_rate: int = 16000
    fps: int = 25
    win: int = 400  # 25 ms analysis window
    hop: int = 160  # 10 ms hop: 4 mel frames per video frame
    n_mels: int = 40
    fmin: float = 60.0
    fmax: float = 7600.0

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate // self.fps

    @property
    def mels_per_frame(self) -> int:
        return self.samples_per_frame // self.hop

    @property
    def pcm_tail(self) -> int:
        """PCM samples carried in the state so the first window of a chunk can look back."""
        return self.win - self.hop


# Audio-driven mouth motion, one row per video frame, each in [0, 1] except lip_spread in [-1, 1].
MOTION_CHANNELS: tuple[str, ...] = (
    "jaw_open",  # 0 closed .. 1 wide open (/aa/)
    "lip_spread",  # -1 rounded pucker (/uw/, /ow/) .. +1 spread (/iy/, smile)
    "lip_closure",  # 1 lips pressed together (/p/ /b/ /m/), even when the sound is loud
    "lip_tuck",  # 1 lower lip against the upper teeth (/f/ /v/)
    "upper_lip_raise",  # 1 upper lip lifted, showing upper teeth (/sh/, /ch/, /r/)
    "speech",  # voice activity: 1 while the person speaks
)

# Global motion the generator supplies from its idle/prompt controller, one row per video frame.
CONTROL_CHANNELS: tuple[str, ...] = (
    "head_yaw",  # radians, + turns the face towards image right
    "head_pitch",  # radians, + nods the face down
    "head_roll",  # radians, + tilts clockwise in the image
    "blink",  # 0 eyes open .. 1 eyelids shut
    "gaze_x",  # -1 .. 1 of the irises' travel, + towards image right
    "gaze_y",  # -1 .. 1, + down
    "brow_raise",  # 0 .. 1 brows up (emphasis, surprise)
    "brow_knit",  # 0 .. 1 inner brows together and down (concern, concentration)
)


@dataclass(frozen=True)
class ModelContract:
    """Names, shapes and timing of the one exported graph.

    Inputs
      audio     float32 [n * samples_per_frame]   the next n video frames' worth of 16 kHz PCM
      state     float32 [1, state_size]           carried from the previous call (zeros to start)
      controls  float32 [n, len(CONTROL_CHANNELS)] global motion for the n frames being rendered
      avatar_*  float32                           per-avatar tensors from `s2v.avatar` (see AVATAR_INPUTS)
    Outputs
      frames    uint8   [n, H, W, 3]              RGB head crops, to be pasted into the avatar's background
      motion    float32 [n, len(MOTION_CHANNELS)] the mouth motion those crops show
      new_state float32 [1, state_size]

    The motion network is causal over frames and trained to predict frame t - lookahead_frames at
    step t, so the frames returned by a call are the ones `lookahead_frames` behind the audio it
    received: algorithmic latency = (1 + lookahead_frames) / fps seconds.
    """

    audio: AudioSpec = field(default_factory=AudioSpec)
    lookahead_frames: int = 2
    state_size: int = 0  # filled in by the network definition at export time, read back from the graph
    opset: int = 17

    @property
    def latency_ms(self) -> float:
        return 1000.0 * (1 + self.lookahead_frames) / self.audio.fps


# Per-avatar tensors the renderer part of the graph takes, by input name.
AVATAR_INPUTS: tuple[str, ...] = (
    "avatar_image",  # float32 [3, H, W]: the head crop of the photo, pixel values + 0.5 (the output cast rounds)
    "avatar_fields",  # float32 [1+K, H, W, 2]: rest grid + displacement bases, grid units, s2v.avatar.rig
    "avatar_pixels",  # float32 [2P]: sampling-grid slots (2i, 2i+1; i = y*W + x) of the eye, then the mouth pixels
    "avatar_eye_maps",  # float32 [E, Pe]: eyelid maps and field samples at the eye pixels, s2v.avatar.rig
    "avatar_mouth_maps",  # float32 [Q, Pm]: lip-line, interior maps and field samples at the mouth pixels
    "avatar_geometry",  # float32 [G]: face orientation and mouth-interior colours, s2v.avatar.rig.GEOMETRY_NAMES
)

INPUT_NAMES: tuple[str, ...] = ("audio", "state", "controls") + AVATAR_INPUTS
OUTPUT_NAMES: tuple[str, ...] = ("frames", "motion", "new_state")

CONTRACT = ModelContract()
