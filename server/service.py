"""What every route shares: the one model, the avatars, the live sessions and the admission rules."""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import numpy as np
from aiohttp import web

from s2v.avatar import Avatar, AvatarError, AvatarStore
from s2v.runtime.model import ExportedModel
from s2v.server.config import ServerConfig
from s2v.server.prometheus import ServerMetrics
from s2v.server.session import Session, SessionRegistry
from s2v.server.signalling import ApiError, parse_offer


def jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


class AvatarService:
    """What every route shares: the one model, the avatars, the live sessions."""

    def __init__(self, config: ServerConfig, model: ExportedModel, store: AvatarStore, default_avatar: Avatar) -> None:
        self.config = config
        self.model = model
        self.store = store
        self.default_avatar = default_avatar
        self.sessions = SessionRegistry(config.max_sessions, config.max_connecting, config.max_sessions_per_client)
        self.metrics = ServerMetrics(self.sessions)
        self.sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        self._preparing = asyncio.Semaphore(1)  # photo preparation is CPU-heavy: one at a time, off the loop
        self._uploads = 0  # photos being prepared or waiting for their turn

    def find_avatar(self, avatar_id: str | None) -> Avatar:
        if avatar_id is None or avatar_id == self.default_avatar.id:
            return self.default_avatar
        try:
            return self.store.get(avatar_id)
        except KeyError:
            raise ApiError(404, f"unknown avatar {avatar_id!r}: upload a photo to POST /avatars first") from None

    async def open_session(self, body: dict[str, Any], client: str = "",
                           agent: bool = False) -> tuple[Session, dict[str, Any]]:
        """Admit an offer; `agent`: the speech comes as segments from a voice agent, not the peer's microphone."""
        offer = parse_offer(body)
        avatar = await asyncio.to_thread(self.find_avatar, offer.avatar)  # a stored avatar is read from disk
        self.sessions.check_capacity(client)
        session = Session(self.config, self.model, avatar, on_closed=self._ended,
                          may_go_live=self.sessions.may_go_live, client=client, agent=agent)
        self.sessions.add(session)
        try:
            answer = await session.answer(offer)
        except asyncio.CancelledError:
            session.close("signalling cancelled")
            raise
        except Exception:
            await session.close("negotiation failed")
            raise
        self.metrics.admitted += 1
        reply = {"sdp": answer.sdp, "type": answer.type, "session": session.id, "avatar": describe(avatar)}
        return session, reply

    def _ended(self, session: Session) -> None:
        self.sessions.remove(session)
        self.metrics.ended(session)

    async def add_avatar(self, data: bytes) -> Avatar:
        if self._uploads >= self.config.upload_queue:
            raise ApiError(503, f"{self._uploads} photos are already being prepared; try again shortly",
                           headers={"Retry-After": "5"})
        self._uploads += 1
        try:
            async with self._preparing:
                return await asyncio.to_thread(self.store.put, data)
        except AvatarError as exc:
            raise ApiError(422, f"unusable avatar photo: {exc}") from exc
        finally:
            self._uploads -= 1


def describe(avatar: Avatar) -> dict[str, Any]:
    """Where the face and the mouth are in the video, so clients can watch the lips."""
    height, width = avatar.background.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in avatar.box)
    description = {"id": avatar.id, "size": [width, height], "box": [x0, y0, x1, y1], "info": avatar.info}
    rig = avatar.info.get("rig", {})
    if "mouth_centre" in rig and "mouth_half_width_px" in rig:
        cx, cy = rig["mouth_centre"]
        half = rig["mouth_half_width_px"]
        jaw = rig.get("jaw_px", half / 2)
        # The lips spread sideways and the jaw drops below the centre line: cover both.
        mouth = (x0 + cx - 1.3 * half, y0 + cy - 0.6 * half, x0 + cx + 1.3 * half, y0 + cy + 0.6 * half + jaw)
        description["mouth"] = [int(np.clip(round(v), 0, limit)) for v, limit in zip(mouth, (width, height) * 2)]
    return description


SERVICE = web.AppKey("service", AvatarService)
