"""Settings of the streaming service, one typed dataclass filled from `s2v serve` flags and S2V_* variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from s2v.avatar.store import AvatarStore
from s2v.runtime.model import DEFAULT_MODEL


SESSION_CORES_512 = 0.21  # server CPU per live 512x512 session (`s2v bench --sessions 6 --seconds 300`: 0.202)
LOOP_SESSIONS = 8  # aiortc's packet work is pure Python on one event loop: one process holds about this many


def measured_capacity(width: int, height: int) -> int:
    """Live sessions this machine holds: 80 % of its cores over the measured cost of one session, that cost taken
    to grow with the frame's pixels (encoding and rendering do), and at most LOOP_SESSIONS."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    per_session = SESSION_CORES_512 * max(1.0, width * height / (512 * 512))
    return max(1, min(LOOP_SESSIONS, int(0.8 * cores / per_session)))


@dataclass
class ServerConfig:
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on"})
    port: int = field(default=8080, metadata={"help": "TCP port (0 picks a free one)"})
    model: Path = field(default=DEFAULT_MODEL, metadata={"help": "exported ONNX model"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when a GPU is really there), cpu or cuda"})
    avatar: Path | None = field(default=None, metadata={"help": "photo used when an offer names no avatar "
                                                                "(default: the built-in avatar)"})
    avatar_dir: Path = field(default_factory=AvatarStore.default_root,
                             metadata={"help": "folder where uploaded avatars are kept (S2V_AVATAR_DIR)"})
    avatar_quota_mb: float = field(default=2000.0, metadata={"help": "disk the stored avatars may take; the least "
                                                                     "recently used are deleted beyond (0: no limit)"})
    width: int = field(default=512, metadata={"help": "output video width; photos are framed to width x height"})
    height: int = field(default=512, metadata={"help": "output video height (VP8 costs ~3 ms a frame at 512x512, "
                                                       "~9 ms at 1280x720, per session)"})
    close_mouth: bool = field(default=True, metadata={
        "help": "bring an open-mouthed photo's lips together, so the avatar rests and talks from a closed mouth"})
    max_sessions: int = field(default=0, metadata={"help": "live sessions at once; more are refused with 503 (0: "
                                                           "what this machine holds, from the measured cost per "
                                                           "session at this frame size)"})
    max_connecting: int = field(default=4, metadata={"help": "offers still waiting for their peer to connect, apart "
                                                             "from --max-sessions (abandoned offers cannot lock out "
                                                             "live users)"})
    max_sessions_per_client: int = field(default=4, metadata={"help": "sessions one client address may hold, "
                                                                      "live or connecting (429 above; 0: no cap)"})
    session_time_limit_s: float = field(default=600.0, metadata={"help": "a session is ended after this long"})
    connect_timeout_s: float = field(default=15.0, metadata={"help": "a peer that has not connected by then is dropped"})
    peer_timeout_s: float = field(default=5.0, metadata={"help": "a connected peer not heard from (media or RTCP "
                                                                 "reports) this long is dropped"})
    max_upload_bytes: int = field(default=10_000_000, metadata={"help": "largest avatar photo accepted (413 above)"})
    token: str | None = field(default=None, metadata={"help": "if set, /offer, /avatars and /ws need it, as "
                                                              "'Authorization: Bearer TOKEN' or ?token=TOKEN (S2V_TOKEN)"})
    rate_limit: float = field(default=10.0, metadata={"help": "requests a second one client address may make to "
                                                              "/offer, /avatars, /ws, /agent and /sessions (429 "
                                                              "above; 0: no limit)"})
    rate_burst: int = field(default=30, metadata={"help": "requests one client may make at once before "
                                                          "--rate-limit applies"})
    upload_queue: int = field(default=4, metadata={"help": "photos prepared or waiting at once; more get a 503"})
    allowed_origins: tuple[str, ...] = field(default=(), metadata={
        "help": "web origins besides the server's own whose pages may open /ws (e.g. https://app.example.com); "
                "browsers let any page open a websocket, so others are refused with 403"})
    drain_timeout_s: float = field(default=30.0, metadata={"help": "on SIGTERM/SIGINT, live sessions may go on this "
                                                                   "long (no new ones) before they are closed; a "
                                                                   "second signal closes them at once"})
    body_timeout_s: float = field(default=10.0, metadata={"help": "a request body (offer, photo) must arrive within "
                                                                  "this long (408 after)"})
    playout_delay_ms: float = field(default=60.0, metadata={"help": "incoming audio buffered before it is rendered; "
                                                                    "absorbs network jitter"})
    render_margin_ms: float = field(default=40.0, metadata={"help": "time a frame has to render before it is due "
                                                                    "on the wire; a later frame is replaced"})
    receive_prefetch: int = field(default=1, metadata={"help": "Opus packets aiortc holds before decoding "
                                                               "(its own default, 4, adds 60 ms)"})
    agent_buffer_s: float = field(default=120.0, metadata={"help": "speech an agent on /agent may send ahead of "
                                                                    "playback; chunks beyond are refused"})
    ice_servers: tuple[str, ...] = field(default=(), metadata={
        "help": "STUN/TURN servers for the server and the page, e.g. turn:turn.example.com:3478?transport=udp "
                "(default: none, for loopback and LANs)"})
    ice_username: str | None = field(default=None, metadata={"help": "TURN user name"})
    ice_credential: str | None = field(default=None, metadata={"help": "TURN password (S2V_ICE_CREDENTIAL)"})
    ice_relay_only: bool = field(default=False, metadata={"help": "offer only TURN relay candidates"})
    certfile: Path | None = field(default=None, metadata={"help": "serve HTTPS with this certificate (PEM); "
                                                                   "browsers give the microphone only to HTTPS pages "
                                                                   "or localhost"})
    keyfile: Path | None = field(default=None, metadata={"help": "the certificate's private key (PEM)"})
    log_format: str = field(default="text", metadata={"help": "text, or json: one JSON object per line, with the "
                                                              "session id as a field"})
    stats_interval_s: float = field(default=1.0, metadata={"help": "seconds between stats events on /ws"})

    def __post_init__(self) -> None:
        if self.ice_relay_only and not any(url.startswith(("turn:", "turns:")) for url in self.ice_servers):
            raise ValueError("--ice-relay-only needs a turn: server in --ice-servers")
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("--certfile and --keyfile go together")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"--log-format must be text or json, not {self.log_format!r}")
        if self.max_sessions == 0:
            self.max_sessions = measured_capacity(self.width, self.height)
        if self.max_sessions < 1 or self.max_connecting < 1:
            raise ValueError("max_sessions and max_connecting must be at least 1")
        if self.width % 2 or self.height % 2 or min(self.width, self.height) < 64:
            raise ValueError("width and height must be even and at least 64 (the encoders use 4:2:0)")
