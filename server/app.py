"""The HTTP face of the service: the browser page, signalling, avatar uploads, live control and health.

Routes
  GET  /          the browser client (client/static)
  GET  /healthz   {"ok", "sessions", "max_sessions", "provider", "live": [per-session stats]}
  POST /offer     {"sdp", "type": "offer", "avatar"?, "prompt"?} -> {"sdp", "type", "session", "avatar"}
  POST /avatars   an image (raw body or multipart) -> {"avatar": id, "size", "box", "mouth", "info"};
                  413 too large, 422 not a usable photo
  GET  /ws        websocket: {"type": "offer", ...} -> {"type": "answer", ...}; then {"type": "interrupt"},
                  {"type": "prompt", "text"}, {"type": "stop"}; the server pushes {"type": "stats", ...}
                  every second and {"type": "closed", "reason"} when the session ends.
Every error is JSON {"error": message, "status"} with the matching 4xx/5xx.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import weakref
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import BodyPartReader, WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from s2v.avatar import Avatar, AvatarConfig, AvatarError, AvatarStore
from s2v.runtime.model import ExportedModel, ModelConfig
from s2v.server.access import ROUTES, check_origin, token_check
from s2v.server.config import ServerConfig
from s2v.server.prometheus import CONTENT_TYPE, ServerMetrics
from s2v.server.session import Session, SessionRegistry
from s2v.server.signalling import MAX_PROMPT_CHARS, ApiError, parse_json, parse_offer

log = logging.getLogger(__name__)

UPLOAD_CHUNK = 1 << 16


def _static_dir() -> Path:
    """client/static, wherever the package was installed from."""
    import s2v.client

    return Path(s2v.client.__file__).resolve().parent / "static"


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def json_response(data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=lambda d: json.dumps(d, default=_jsonable))


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

    async def open_session(self, body: dict[str, Any], client: str = "") -> tuple[Session, dict[str, Any]]:
        offer = parse_offer(body)
        avatar = await asyncio.to_thread(self.find_avatar, offer.avatar)  # a stored avatar is read from disk
        self.sessions.check_capacity(client)
        session = Session(self.config, self.model, avatar, on_closed=self._ended,
                          may_go_live=self.sessions.may_go_live, client=client)
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


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        log.info("%s %s refused: %d %s", request.method, request.path, exc.status, exc.message)
        request.app[SERVICE].metrics.refused(request.path if request.path in ROUTES else "other", exc.status)
        return json_response(exc.as_json(), exc.status, exc.headers)
    except (HttpProcessingError, RequestPayloadError) as exc:  # a body aiohttp cannot decode (gzip on plain bytes)
        return json_response({"error": f"cannot read the request body: {exc}"[:300], "status": 400}, 400)
    except web.HTTPException as exc:
        if exc.empty_body:
            raise
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return json_response({"error": message, "status": exc.status}, exc.status)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return json_response({"error": "internal server error (see the server log)", "status": 500}, 500)


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(_static_dir() / "index.html")


async def healthz(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    return json_response({
        "ok": True,
        "sessions": len(service.sessions),
        "max_sessions": service.sessions.max_sessions,
        "provider": service.model.provider,
        "live": [{k: v for k, v in s.stats().items() if k != "session"} for s in service.sessions],  # no ids
    })


async def _body(request: web.Request, reading: Awaitable[bytes]) -> bytes:
    """`reading` within the body timeout: a client that promises a body and never sends it holds nothing."""
    seconds = request.app[SERVICE].config.body_timeout_s
    try:
        return await asyncio.wait_for(reading, seconds)
    except asyncio.TimeoutError:
        raise ApiError(408, f"the request body did not arrive within {seconds:g} s") from None


async def session_stats(request: web.Request) -> web.Response:
    """One session's numbers, for whoever holds its id (the offer's answer gives it; /healthz does not)."""
    return json_response(request.app[SERVICE].sessions.get(request.match_info["session"]).stats())


async def readyz(request: web.Request) -> web.Response:
    """200 while this server would admit one more session, else 503: for a load balancer choosing a server."""
    try:
        request.app[SERVICE].sessions.check_capacity()
    except ApiError as exc:
        return json_response({"ready": False, "reason": exc.message}, 503)
    return json_response({"ready": True})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[SERVICE].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def offer(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    if request.content_type != "application/json":
        # A page on another site may POST plain text or a form without asking; JSON needs a CORS preflight,
        # which this server does not grant, so only its own page and API clients can start sessions.
        raise ApiError(415, "send the offer as JSON (Content-Type: application/json)")
    _, reply = await service.open_session(parse_json(await _body(request, request.read())), request.remote or "")
    return json_response(reply)


async def _read_capped(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """Read an upload without ever holding more than the limit (Content-Length may be absent or false)."""
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if len(data) > limit:
            raise ApiError(413, f"upload larger than the limit of {limit} bytes")
    return bytes(data)


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(UPLOAD_CHUNK):
        yield chunk


async def _read_upload(request: web.Request, limit: int) -> bytes:
    """The photo: the request body, or the file part of a multipart body, never more than `limit` bytes."""
    if not request.content_type.startswith("multipart/"):
        return await _read_capped(request.content.iter_chunked(UPLOAD_CHUNK), limit)
    try:
        async for part in await request.multipart():
            if isinstance(part, BodyPartReader) and (part.filename or part.name in ("image", "photo", "file", "avatar")):
                return await _read_capped(_part_chunks(part), limit)
    except (ValueError, AssertionError, LookupError) as exc:  # aiohttp's reader on a missing or empty boundary
        raise ApiError(400, f"malformed multipart upload: {type(exc).__name__} {exc}"[:300]) from exc
    raise ApiError(400, "multipart upload has no file part (name it image, photo, file or avatar)")


async def upload_avatar(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    limit = service.config.max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"upload of {request.content_length} bytes is larger than the limit of {limit} bytes")
    data = await _body(request, _read_upload(request, limit))
    if not data:
        raise ApiError(400, "empty upload: send the photo as the request body or as a multipart file")
    avatar = await service.add_avatar(data)
    log.info("avatar %s added", avatar.id)
    return json_response({"avatar": avatar.id, **describe(avatar)})


async def websocket(request: web.Request) -> web.WebSocketResponse:
    service = request.app[SERVICE]
    check_origin(request, service.config.allowed_origins)
    ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=1 << 20)
    await ws.prepare(request)
    service.sockets.add(ws)
    session: Session | None = None
    reporter: asyncio.Task | None = None
    try:
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                await ws.send_json({"type": "error", "status": 400, "error": "send JSON text messages"})
                continue
            try:
                body = parse_json(message.data)
                kind = body.get("type")
                if kind == "offer":
                    if session is not None and not session.closed.is_set():
                        raise ApiError(409, "this websocket already carries a live session; send stop first")
                    session, reply = await service.open_session(body, request.remote or "")
                    await ws.send_json({"type": "answer", **reply}, dumps=lambda d: json.dumps(d, default=_jsonable))
                    reporter = asyncio.ensure_future(_report(ws, session, service.config.stats_interval_s))
                elif kind == "interrupt":
                    _live(session).interrupt()
                    await ws.send_json({"type": "interrupted"})
                elif kind == "prompt":
                    text = body.get("text")
                    if not isinstance(text, str) or len(text) > MAX_PROMPT_CHARS:
                        raise ApiError(400, f'"text" must be a string of at most {MAX_PROMPT_CHARS} characters')
                    await ws.send_json({"type": "prompt", "text": text, "style": _live(session).set_prompt(text)})
                elif kind == "stop":
                    await _live(session).close("stopped by the client")
                else:
                    raise ApiError(400, f"unknown message type {kind!r}: expected offer, interrupt, prompt or stop")
            except ApiError as exc:
                await ws.send_json({"type": "error", **exc.as_json()})
    finally:
        service.sockets.discard(ws)
        if session is not None:
            await session.close("websocket closed")
        if reporter is not None:
            reporter.cancel()
    return ws


def _live(session: Session | None) -> Session:
    if session is None or session.closed.is_set():
        raise ApiError(409, "no live session on this websocket: send an offer first")
    return session


async def _report(ws: web.WebSocketResponse, session: Session, interval: float) -> None:
    """Push stats while the session lives, then say why it ended."""
    try:
        while not session.closed.is_set() and not ws.closed:
            try:
                await asyncio.wait_for(session.closed.wait(), interval)
            except asyncio.TimeoutError:
                await ws.send_json({"type": "stats", **session.stats()})
        if not ws.closed:
            await ws.send_json({"type": "closed", "session": session.id, "reason": session.close_reason})
    except ConnectionError:  # the browser went away between two reports; the websocket handler cleans up
        pass


async def _on_shutdown(app: web.Application) -> None:
    service = app[SERVICE]
    await service.sessions.close_all("server shutting down")
    for ws in list(service.sockets):
        await ws.close(code=1001, message=b"server shutting down")


def create_app(config: ServerConfig, model: ExportedModel | None = None, store: AvatarStore | None = None) -> web.Application:
    """The aiohttp application; loads the model and the avatar store unless given (tests share theirs).

    A given store decides the frame size; otherwise it is `config.width` x `config.height`.
    """
    if model is None:
        model = ExportedModel(ModelConfig(model=config.model, device=config.device))
    if store is None:
        store = AvatarStore(config.avatar_dir, AvatarConfig(width=config.width, height=config.height))
    if config.avatar is not None:
        try:
            default_avatar = store.put(Path(config.avatar).read_bytes())
        except (OSError, AvatarError) as exc:
            raise SystemExit(f"--avatar {config.avatar}: {exc}") from exc
    else:
        default_avatar = store.builtin()
    app = web.Application(middlewares=[json_errors, token_check(config.token)])
    app[SERVICE] = AvatarService(config, model, store, default_avatar)
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/sessions/{session}", session_stats)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/offer", offer)
    app.router.add_post("/avatars", upload_avatar)
    app.router.add_get("/ws", websocket)
    app.router.add_static("/static", _static_dir())
    app.on_shutdown.append(_on_shutdown)
    return app


def serve(config: ServerConfig) -> None:
    """Run the server until SIGINT/SIGTERM (the `s2v serve` command); prints the address once listening."""
    logging.getLogger("aioice").setLevel(logging.WARNING)  # one INFO line per ICE candidate pair otherwise
    app = create_app(config)
    asyncio.run(_serve(app, config))


async def _serve(app: web.Application, config: ServerConfig) -> None:
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, config.host, config.port).start()
        host, port = runner.addresses[0][:2]
        service = app[SERVICE]
        signals: asyncio.Queue[signal.Signals] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, signals.put_nowait, sig)
        print(f"s2v serving on http://{host}:{port}/ ({service.model.provider}, up to {config.max_sessions} "
              f"sessions, default avatar {service.default_avatar.id})", flush=True)
        await signals.get()
        await _drain(service, signals, config.drain_timeout_s)
    finally:
        await runner.cleanup()


async def _drain(service: AvatarService, signals: asyncio.Queue, timeout_s: float) -> None:
    """Stop admitting; let the live sessions go on until they end, `timeout_s` passes or a second signal comes."""
    service.sessions.draining = True
    log.info("draining: no new sessions; %d live ones may go on for up to %g s", len(service.sessions), timeout_s)
    ended = asyncio.ensure_future(_all_ended(service.sessions))
    again = asyncio.ensure_future(signals.get())
    await asyncio.wait([ended, again], timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    for waiter in (ended, again):
        waiter.cancel()
    log.info("stopping (%d sessions still live are closed)", len(service.sessions))


async def _all_ended(sessions: SessionRegistry) -> None:
    while len(sessions):
        await asyncio.sleep(0.2)
