"""Who may start work on this server: the optional token, which web pages may open the websockets, and how
often one client may ask."""

from __future__ import annotations

import hmac
import math
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from s2v.server.signalling import ApiError

GUARDED = ("/offer", "/avatars", "/ws", "/agent", "/ice")
ROUTES = frozenset(("/", "/healthz", "/readyz", "/metrics", *GUARDED))  # refusals are counted by these


def _guarded(path: str) -> bool:
    return path in GUARDED or path.startswith("/sessions/")


class RateLimiter:
    """A token bucket per client address: `rate` requests a second, `burst` at once. The buckets of the
    `max_clients` most recent clients are kept; a client forgotten starts again with a full bucket."""

    def __init__(self, rate: float, burst: int, max_clients: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, last refill)

    def take(self, client: str) -> float:
        """0 if the client may go ahead (a token is spent), else the seconds until it may."""
        now = time.monotonic()
        tokens, last = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens - 1.0 if wait == 0.0 else tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


def rate_limit(rate: float, burst: int) -> Any:
    """Middleware: a client that asks the endpoints that start work (offers, uploads, sockets, session stats)
    more often than `rate` a second gets 429 before anything is parsed, so a flood costs the server little;
    0 turns it off. The page, /healthz, /readyz and /metrics are never limited."""
    limiter = RateLimiter(rate, burst) if rate > 0 else None

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        if limiter is not None and _guarded(request.path):
            wait = limiter.take(request.remote or "")
            if wait > 0:
                raise ApiError(429, f"too many requests from {request.remote}: at most {rate:g} a second "
                                    f"(--rate-limit)", headers={"Retry-After": str(math.ceil(wait))})
        return await handler(request)

    return check


def token_check(token: str | None) -> Any:
    """Middleware: with --token set, the endpoints that start work need it (a header, or ?token= where a
    browser's WebSocket cannot send headers); the page, its scripts, /healthz, /readyz and /metrics stay open."""

    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        if token and _guarded(request.path):
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
