"""The HTTP face of the service: the browser page, signalling, avatar uploads, live control and health.

Routes
  GET  /          the browser client (client/static)
  GET  /healthz   {"ok", "sessions", "max_sessions", "provider", "live": [per-session stats]}
  POST /offer     {"sdp", "type": "offer", "avatar"?, "prompt"?} -> {"sdp", "type", "session", "avatar"}
  POST /avatars   an image (raw body or multipart) -> {"avatar": id, "size", "box", "mouth", "info"};
                  413 too large, 422 not a usable photo
  GET  /ws        websocket: a session driven by the viewer's microphone (server/sockets.py)
  GET  /agent     websocket: a session driven by a voice agent's TTS segments (server/sockets.py)
Every error is JSON {"error": message, "status"} with the matching 4xx/5xx.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import ssl
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from s2v.avatar import AvatarConfig, AvatarError, AvatarStore
from s2v.runtime.model import ExportedModel, ModelConfig
from s2v.server.access import ROUTES, rate_limit, token_check
from s2v.server.config import ServerConfig
from s2v.server.logs import use_json_logs
from s2v.server.prometheus import CONTENT_TYPE
from s2v.server.rtc import browser_ice
from s2v.server.service import SERVICE, AvatarService, describe, jsonable
from s2v.server.session import SessionRegistry
from s2v.server.signalling import ApiError, parse_json
from s2v.server.sockets import agent_socket, websocket

log = logging.getLogger(__name__)

UPLOAD_CHUNK = 1 << 16


def _static_dir() -> Path:
    """client/static, wherever the package was installed from."""
    import s2v.client

    return Path(s2v.client.__file__).resolve().parent / "static"


def json_response(data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=lambda d: json.dumps(d, default=jsonable))


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        # A flood is refused with 429 by the thousand: counted, not logged one by one, and its connections are
        # closed rather than drained of the bodies nobody will read.
        level = logging.DEBUG if exc.status == 429 else logging.INFO
        log.log(level, "%s %s refused: %d %s", request.method, request.path, exc.status, exc.message)
        request.app[SERVICE].metrics.refused(request.path if request.path in ROUTES else "other", exc.status)
        response = json_response(exc.as_json(), exc.status, exc.headers)
        if exc.status == 429:
            response.force_close()
        return response
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


async def ice(request: web.Request) -> web.Response:
    """The STUN/TURN servers the page should give its RTCPeerConnection (the TURN password included)."""
    config = request.app[SERVICE].config
    return json_response(browser_ice(config.ice_servers, config.ice_username, config.ice_credential,
                                     config.ice_relay_only))


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


async def _on_startup(app: web.Application) -> None:
    app[SERVICE].metrics.threads.start()


async def _on_shutdown(app: web.Application) -> None:
    service = app[SERVICE]
    service.metrics.threads.stop()
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
        avatars = AvatarConfig(width=config.width, height=config.height, close_mouth=config.close_mouth)
        store = AvatarStore(config.avatar_dir, avatars, max_bytes=int(config.avatar_quota_mb * 2**20))
    if config.avatar is not None:
        try:
            default_avatar = store.put(Path(config.avatar).read_bytes())
        except (OSError, AvatarError) as exc:
            raise SystemExit(f"--avatar {config.avatar}: {exc}") from exc
    else:
        default_avatar = store.builtin()
    app = web.Application(middlewares=[json_errors, rate_limit(config.rate_limit, config.rate_burst),
                                       token_check(config.token)])
    app[SERVICE] = AvatarService(config, model, store, default_avatar)
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/sessions/{session}", session_stats)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/ice", ice)
    app.router.add_post("/offer", offer)
    app.router.add_post("/avatars", upload_avatar)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/agent", agent_socket)
    app.router.add_static("/static", _static_dir())
    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)
    return app


def serve(config: ServerConfig) -> None:
    """Run the server until SIGINT/SIGTERM (the `s2v serve` command); prints the address once listening."""
    logging.getLogger("aioice").setLevel(logging.WARNING)  # one INFO line per ICE candidate pair otherwise
    if config.log_format == "json":
        use_json_logs()
    app = create_app(config)
    asyncio.run(_serve(app, config))


async def _serve(app: web.Application, config: ServerConfig) -> None:
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        tls = None
        if config.certfile is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(config.certfile, config.keyfile)
        await web.TCPSite(runner, config.host, config.port, ssl_context=tls).start()
        host, port = runner.addresses[0][:2]
        service = app[SERVICE]
        signals: asyncio.Queue[signal.Signals] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, signals.put_nowait, sig)
        scheme = "https" if tls else "http"
        print(f"s2v serving on {scheme}://{host}:{port}/ ({service.model.provider}, up to {config.max_sessions} "
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
