"""A voice agent's side of the server's `/agent` websocket: push TTS audio, end segments, clear on barge-in.

The names and meaning follow the avatar contract of LiveKit Agents (`push_audio`, `clear_buffer`,
playback started / finished with the position reached and whether it was interrupted), so an adapter
for an agent framework is a thin shell around this class:

    agent = AgentClient("http://127.0.0.1:8080")
    await agent.connect(offer=viewer_offer)          # or connect() to receive the avatar here, with aiortc
    await agent.push_audio(tts_chunk, sample_rate=24000)   # as fast as the TTS makes it
    segment = await agent.end_segment()
    async for event in agent.events():               # playback_started, playback_finished, stats, error
        ...
    await agent.clear_buffer()                       # the user interrupted
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from s2v.server.rtc import rtc_configuration, set_receive_prefetch


class AgentError(RuntimeError):
    """The server refused a message or the connection; the message says why."""


class AgentClient:
    """One agent session: the socket, and (with `connect()` and no offer) an aiortc viewer of the avatar."""

    def __init__(self, server: str, token: str | None = None) -> None:
        self.base = server.rstrip("/")
        self.token = token
        self.session: str | None = None
        self.avatar: dict[str, Any] | None = None  # the server's description of the avatar (size, face, mouth)
        self.viewer: RTCPeerConnection | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task | None = None
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._replies: dict[tuple[int, str], asyncio.Future] = {}  # (request id, reply type) -> its waiter
        self._ids = itertools.count(1)
        self._open_format: tuple[int, int, str] | None = None  # the open segment's (rate, channels, format)

    async def connect(self, offer: dict[str, Any] | None = None, *, avatar: str | None = None,
                      prompt: str | None = None,
                      on_track: Callable[[MediaStreamTrack], None] | None = None) -> dict[str, Any]:
        """Open the session. `offer`: a viewer's WebRTC offer ({"sdp", "type"}) to answer; without one, this
        client receives the avatar itself and hands each track to `on_track`. Returns the server's answer."""
        url = self.base.replace("http", "ws", 1) + "/agent"
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = aiohttp.ClientSession(headers=headers)
        try:
            self._ws = await self._http.ws_connect(url, heartbeat=10.0)
        except aiohttp.ClientError as exc:
            await self._http.close()
            raise AgentError(f"{url}: {exc}") from exc
        self._reader = asyncio.ensure_future(self._read())
        if offer is None:
            offer = await self._own_viewer(on_track)
        request = {"type": "offer", "sdp": offer["sdp"]}
        request.update({k: v for k, v in (("avatar", avatar), ("prompt", prompt)) if v is not None})
        reply = await self._request(request, "answer")
        self.session, self.avatar = reply["session"], reply["avatar"]
        if self.viewer is not None:
            await self.viewer.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type=reply["type"]))
        return reply

    async def push_audio(self, pcm: np.ndarray | bytes, sample_rate: int, channels: int = 1) -> None:
        """TTS audio, as fast as it is made: int16 or float32 samples (interleaved if stereo), or s16 bytes.

        The first chunk after `end_segment` (or a clear) opens a new segment in its format."""
        if isinstance(pcm, np.ndarray):
            kinds = {np.dtype(np.int16): "s16", np.dtype(np.float32): "f32"}
            if pcm.dtype not in kinds:
                raise ValueError(f"PCM must be int16 or float32, not {pcm.dtype}")
            fmt, data = kinds[pcm.dtype], pcm.astype(pcm.dtype.newbyteorder("<"), copy=False).tobytes()
        else:
            fmt, data = "s16", bytes(pcm)
        declared = (sample_rate, channels, fmt)
        if self._open_format is not None and self._open_format != declared:
            await self.end_segment()
        if self._open_format is None:
            await self._request({"type": "segment", "sample_rate": sample_rate, "channels": channels,
                                 "format": fmt}, "segment")
            self._open_format = declared
        await self._socket().send_bytes(data)

    async def end_segment(self) -> int:
        """The TTS finished this response: play what was pushed to its end. Returns the segment id."""
        if self._open_format is None:
            raise AgentError("no segment is open: push_audio first")
        self._open_format = None
        return (await self._request({"type": "end_segment"}, "segment_ended"))["segment"]

    async def clear_buffer(self) -> int:
        """Barge-in: drop all queued speech. Returns the first video frame at rest (its RTP timestamp / 3600)."""
        self._open_format = None
        return (await self._request({"type": "clear"}, "cleared"))["rest_frame"]

    async def set_prompt(self, text: str) -> dict[str, Any]:
        return await self._request({"type": "prompt", "text": text}, "prompt")

    async def say(self, text: str) -> int:
        """Speak `text` with the server's own synthesiser (espeak-ng), as one segment; returns its id."""
        return (await self._request({"type": "say", "text": text}, "segment_ended"))["segment"]

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """playback_started {segment}, playback_finished {segment, position_s, interrupted}, stats, error,
        closed; ends after closed."""
        while True:
            event = await self._events.get()
            yield event
            if event["type"] == "closed":
                return

    async def wait_for(self, kind: str, **match: Any) -> dict[str, Any]:
        """The next event of `kind` whose fields equal `match`; events before it are dropped."""
        async for event in self.events():
            if event["type"] == kind and all(event.get(k) == v for k, v in match.items()):
                return event
        raise AgentError(f"the session closed before {kind} {match}")

    async def close(self) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self.viewer is not None:
            await self.viewer.close()
        if self._http is not None:
            await self._http.close()

    async def __aenter__(self) -> AgentClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- internals ---------------------------------------------------------------------------

    async def _own_viewer(self, on_track: Callable[[MediaStreamTrack], None] | None) -> dict[str, Any]:
        self.viewer = pc = RTCPeerConnection(rtc_configuration())
        pc.addTransceiver("video", direction="recvonly")
        set_receive_prefetch(pc.addTransceiver("audio", direction="recvonly").receiver, 1)
        if on_track is not None:
            pc.on("track", on_track)
        await pc.setLocalDescription(await pc.createOffer())
        return {"sdp": pc.localDescription.sdp, "type": "offer"}

    def _socket(self) -> aiohttp.ClientWebSocketResponse:
        if self._ws is None or self._ws.closed:
            raise AgentError("not connected: call connect() first")
        return self._ws

    async def _request(self, message: dict[str, Any], reply: str) -> dict[str, Any]:
        """Send `message` with a fresh id; the server answers it with `reply` (or an error) carrying that id."""
        request_id = next(self._ids)
        waiter = self._replies[request_id, reply] = asyncio.get_running_loop().create_future()
        try:
            await self._socket().send_str(json.dumps({**message, "id": request_id}))
            return await waiter
        finally:
            self._replies.pop((request_id, reply), None)

    async def _read(self) -> None:
        """Replies go to their request's waiter; everything else (and errors about audio chunks) to events()."""
        assert self._ws is not None
        async for message in self._ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            event = json.loads(message.data)
            request_id, kind = event.get("id"), event.get("type")
            if kind == "error" and request_id is not None:
                for (rid, _), waiter in self._replies.items():
                    if rid == request_id and not waiter.done():
                        waiter.set_exception(AgentError(event.get("error")))
                continue
            waiter = self._replies.get((request_id, kind))
            if waiter is not None and not waiter.done():
                waiter.set_result(event)
                if kind != "segment":  # "say" also announces its segment: let events() see it too
                    continue
            self._events.put_nowait(event)
        for waiter in self._replies.values():
            if not waiter.done():
                waiter.set_exception(AgentError("the server closed the socket"))
        self._events.put_nowait({"type": "closed", "reason": "socket closed"})
