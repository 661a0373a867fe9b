"""What a peer may ask for, checked before any session or peer connection exists.

Every refusal is an `ApiError` carrying the HTTP status and a message a person can act on; the
HTTP routes and the websocket both answer with it as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiortc.sdp import SessionDescription

MAX_PROMPT_CHARS = 500


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def as_json(self) -> dict[str, Any]:
        return {"error": self.message, "status": self.status}


MAX_MEDIA_LINES = 8


@dataclass(frozen=True)
class OfferRequest:
    sdp: str
    avatar: str | None  # id from POST /avatars; None for the server's default avatar
    prompt: str | None
    sends_audio: bool  # the peer will send a microphone; without it the avatar idles


def parse_json(text: str | bytes) -> dict[str, Any]:
    try:
        body = json.loads(text)
    except (ValueError, RecursionError) as exc:  # bad syntax or encoding, a 5,000-digit number, 10^5 nested [
        raise ApiError(400, f"request body is not valid JSON: {type(exc).__name__} {exc}"[:300]) from exc
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object")
    return body


def parse_offer(body: dict[str, Any]) -> OfferRequest:
    """Check an offer's fields and its SDP media lines."""
    sdp = body.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise ApiError(400, 'offer is missing "sdp" (the SDP text of an RTCSessionDescription)')
    if body.get("type", "offer") != "offer":
        raise ApiError(400, f'"type" must be "offer", not {body.get("type")!r}')
    avatar = body.get("avatar")
    if avatar is not None and (not isinstance(avatar, str) or not avatar):
        raise ApiError(400, '"avatar" must be an avatar id string from POST /avatars')
    prompt = body.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise ApiError(400, '"prompt" must be a string')
    if prompt is not None and len(prompt) > MAX_PROMPT_CHARS:
        raise ApiError(400, f'"prompt" is longer than {MAX_PROMPT_CHARS} characters')

    if not sdp.lstrip().startswith("v=0"):
        raise ApiError(400, 'invalid SDP: it must start with "v=0"')
    if (lines := sdp.count("\nm=")) > MAX_MEDIA_LINES:  # each one costs aiortc a transceiver to set up
        raise ApiError(400, f"the offer has {lines} m-lines; a session uses one audio and one video "
                            f"(at most {MAX_MEDIA_LINES} accepted)")
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises asserts, ValueError, KeyError... on bad input
        raise ApiError(400, f"invalid SDP: {type(exc).__name__} {exc}".strip()) from exc
    media = {m.kind: m for m in description.media if m.kind in ("audio", "video") and m.port != 0}
    if not media:
        raise ApiError(400, "the offer has no audio or video m-line: add a video transceiver to receive the "
                            "avatar and an audio track to drive it")
    video = media.get("video")
    if video is None or video.direction not in (None, "sendrecv", "recvonly"):
        raise ApiError(400, "the offer must receive video (a video m-line that is recvonly or sendrecv): "
                            "the avatar comes back as video")
    audio = media.get("audio")
    sends_audio = audio is not None and audio.direction in (None, "sendrecv", "sendonly")
    return OfferRequest(sdp=sdp, avatar=avatar, prompt=prompt, sends_audio=sends_audio)
