"""Who may start work on this server: the optional token, and which web pages may open the websocket."""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from s2v.server.signalling import ApiError

GUARDED = ("/offer", "/avatars", "/ws", "/agent")
ROUTES = frozenset(("/", "/healthz", "/readyz", "/metrics", *GUARDED))  # refusals are counted by these


def token_check(token: str | None) -> Any:
    """Middleware: with --token set, the endpoints that start work need it (a header, or ?token= where a
    browser's WebSocket cannot send headers); the page, its scripts, /healthz, /readyz and /metrics stay open."""

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        if token and (request.path in GUARDED or request.path.startswith("/sessions/")):
            header = request.headers.get("Authorization", "")
            given = header.removeprefix("Bearer ") if header.startswith("Bearer ") else request.query.get("token", "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise ApiError(401, "this server needs its token: 'Authorization: Bearer TOKEN' or ?token=TOKEN",
                               headers={"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return check


def check_origin(request: web.Request, allowed: tuple[str, ...]) -> None:
    """A browser opens a websocket for any page, from any site, and says which in Origin: only the server's own
    page and the allowed origins may drive sessions. Clients that are not browsers send no Origin."""
    origin = request.headers.get("Origin")
    if origin is None or origin in allowed or urlsplit(origin).netloc == request.host:
        return
    raise ApiError(403, f"pages from {origin} may not open this server's websocket (see --allowed-origins)")
