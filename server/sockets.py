"""The two websockets: `/ws` drives a session whose speech is the viewer's microphone, `/agent` one whose
speech a voice agent pushes as TTS segments.

/ws     {"type": "offer", sdp, avatar?, prompt?} -> {"type": "answer", sdp, session, avatar}; then
        {"type": "interrupt"}, {"type": "prompt", "text"}, {"type": "stop"}.
/agent  the same offer (the viewer's side: recvonly is enough), then per segment
        {"type": "segment", "sample_rate", "channels"?, "format"?: "s16" | "f32"} -> {"type": "segment", "segment"},
        binary PCM chunks (little-endian, interleaved), {"type": "end_segment"}; at any time {"type": "clear"}
        (or "interrupt"), {"type": "prompt", "text"}, {"type": "say", "text"} (the server's own TTS), {"type": "stop"}.
        Back: {"type": "playback_started", segment} and {"type": "playback_finished", segment, position_s,
        interrupted}, sent as the frame that starts or ends the segment leaves for the viewer.
Both push {"type": "stats", ...} every `--stats-interval-s` and {"type": "closed", reason} at the end; a message
that cannot be acted on gets {"type": "error", status, error} and changes nothing.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import WSMsgType, web

from s2v.runtime.playout import PcmFormat, PlaybackEvent, PlayoutError
from s2v.server.access import check_origin
from s2v.server.service import SERVICE, AvatarService, jsonable
from s2v.server.session import Session
from s2v.server.signalling import MAX_PROMPT_CHARS, ApiError, parse_json
from s2v.server.speech import synthesise

MAX_MESSAGE_BYTES = 1 << 20


class SocketSession:
    """One websocket and the session it opened, if any."""

    def __init__(self, ws: web.WebSocketResponse, service: AvatarService, client: str, agent: bool) -> None:
        self.ws = ws
        self.service = service
        self.client = client
        self.agent = agent
        self.session: Session | None = None
        self.request_id: int | str | None = None  # of the message being handled; its replies carry it
        self._tasks: list[asyncio.Task] = []

    async def send(self, data: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_json(data, dumps=lambda d: json.dumps(d, default=jsonable))

    async def reply(self, data: dict[str, Any]) -> None:
        """A reply to the message being handled: it carries that message's "id", if it had one."""
        await self.send(data if self.request_id is None else {**data, "id": self.request_id})

    async def handle(self, message: Any) -> None:
        self.request_id = None
        if message.type == WSMsgType.BINARY and self.agent:
            self.live().playout.push(message.data)
            return
        if message.type != WSMsgType.TEXT:
            raise ApiError(400, "send JSON text messages" + (" (and PCM as binary)" if self.agent else ""))
        body = parse_json(message.data)
        if isinstance(body.get("id"), (int, str)) and not isinstance(body.get("id"), bool):
            self.request_id = body["id"]
        kind = body.get("type")
        if kind == "offer":
            await self.open(body)
        elif kind in ("interrupt", "clear"):
            rest = self.live().interrupt()
            await self.reply({"type": "interrupted" if kind == "interrupt" else "cleared", "rest_frame": rest})
        elif kind == "prompt":
            await self.reply({"type": "prompt", "text": _text(body), "style": self.live().set_prompt(_text(body))})
        elif kind == "stop":
            await self.live().close("stopped by the client")
        elif self.agent and kind == "segment":
            segment = self.live().playout.begin(PcmFormat.from_json(body))
            await self.reply({"type": "segment", "segment": segment})
        elif self.agent and kind == "end_segment":
            await self.reply({"type": "segment_ended", "segment": self.live().playout.end()})
        elif self.agent and kind == "say":
            await self.say(_text(body))
        else:
            expected = "offer, segment, end_segment, clear, prompt, say or stop" if self.agent else \
                "offer, interrupt, prompt or stop"
            raise ApiError(400, f"unknown message type {kind!r}: expected {expected}")

    async def open(self, body: dict[str, Any]) -> None:
        if self.session is not None and not self.session.closed.is_set():
            raise ApiError(409, "this websocket already carries a live session; send stop first")
        self.session, reply = await self.service.open_session(body, self.client, agent=self.agent)
        await self.reply({"type": "answer", **reply})
        self._tasks.append(asyncio.ensure_future(self._report(self.session)))
        if self.agent:
            self._tasks.append(asyncio.ensure_future(self._relay_playback(self.session)))

    async def say(self, text: str) -> None:
        """Speak `text` with the server's own synthesiser as one segment, as an agent's TTS would."""
        session = self.live()
        pcm, rate = await synthesise(text)
        segment = session.playout.begin(PcmFormat(rate))
        await self.reply({"type": "segment", "segment": segment})
        try:
            session.playout.push(pcm.tobytes())
        finally:
            session.playout.end()
        await self.reply({"type": "segment_ended", "segment": segment})

    def live(self) -> Session:
        if self.session is None or self.session.closed.is_set():
            raise ApiError(409, "no live session on this websocket: send an offer first")
        return self.session

    async def _report(self, session: Session) -> None:
        """Push stats while the session lives, then say why it ended."""
        interval = self.service.config.stats_interval_s
        try:
            while not session.closed.is_set() and not self.ws.closed:
                try:
                    await asyncio.wait_for(session.closed.wait(), interval)
                except asyncio.TimeoutError:
                    await self.send({"type": "stats", **session.stats()})
            await self.send({"type": "closed", "session": session.id, "reason": session.close_reason})
        except ConnectionError:  # the peer went away between two reports; the handler cleans up
            pass

    async def _relay_playback(self, session: Session) -> None:
        try:
            while True:
                event: PlaybackEvent = await session.playback.get()
                await self.send(event.as_json())
        except ConnectionError:
            pass

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close("websocket closed")
        for task in self._tasks:
            task.cancel()


def _text(body: dict[str, Any]) -> str:
    text = body.get("text")
    if not isinstance(text, str) or len(text) > MAX_PROMPT_CHARS:
        raise ApiError(400, f'"text" must be a string of at most {MAX_PROMPT_CHARS} characters')
    return text


async def _serve_socket(request: web.Request, agent: bool) -> web.WebSocketResponse:
    service = request.app[SERVICE]
    check_origin(request, service.config.allowed_origins)
    ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=MAX_MESSAGE_BYTES)
    await ws.prepare(request)
    service.sockets.add(ws)
    socket = SocketSession(ws, service, request.remote or "", agent)
    try:
        async for message in ws:
            try:
                await socket.handle(message)
            except (ApiError, PlayoutError) as exc:
                error = exc.as_json() if isinstance(exc, ApiError) else {"error": str(exc), "status": 400}
                await socket.reply({"type": "error", **error})
    finally:
        service.sockets.discard(ws)
        await socket.close()
    return ws


async def websocket(request: web.Request) -> web.WebSocketResponse:
    return await _serve_socket(request, agent=False)


async def agent_socket(request: web.Request) -> web.WebSocketResponse:
    return await _serve_socket(request, agent=True)
