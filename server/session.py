"""One live conversation: a peer connection, its audio inlet, render thread and output tracks.

A session ends, and frees everything it holds, on any of: the peer closing, ICE/DTLS failure, a
peer that never connects, a peer that falls silent (no media and no RTCP reports), the time
limit, a render failure or server shutdown. Whatever happens to one session stays in it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import zlib
from collections.abc import Callable
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from s2v.avatar import Avatar
from s2v.control.idle import IdleConfig
from s2v.runtime.generator import StreamingGenerator
from s2v.runtime.playout import PlaybackEvent, SegmentPlayout
from s2v.runtime.model import ExportedModel
from s2v.server.audio_inlet import AudioInlet
from s2v.server.clock import SessionClock
from s2v.server.config import ServerConfig
from s2v.server.metrics import SessionMetrics
from s2v.server.render import RenderLoop
from s2v.server.rtc import rtc_configuration, set_receive_prefetch
from s2v.server.signalling import ApiError, OfferRequest
from s2v.server.tracks import AvatarAudioTrack, AvatarVideoTrack, FrameOutlet, video_frame

log = logging.getLogger(__name__)

WATCHDOG_PERIOD_S = 0.5


class SessionLog(logging.LoggerAdapter):
    """Every line names its session: in the text, and as the record's `session` (a field of JSON logs)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**self.extra, **kwargs.get("extra", {})}
        return f"[session {self.extra['session']}] {msg}", kwargs


class Session:
    def __init__(self, config: ServerConfig, model: ExportedModel, avatar: Avatar,
                 on_closed: Callable[[Session], None], may_go_live: Callable[[], bool] = lambda: True,
                 client: str = "", agent: bool = False) -> None:
        self.id = secrets.token_hex(4)
        self.log = SessionLog(log, {"session": self.id})
        self.config = config
        self.avatar = avatar
        self.client = client  # the peer's address, for the per-client cap
        self.created = time.monotonic()
        self.state = "connecting"  # connecting -> live -> closing -> closed
        self.close_reason: str | None = None
        self.closed = asyncio.Event()
        self.metrics = SessionMetrics()
        self._on_closed = on_closed
        self._may_go_live = may_go_live  # asked when the peer connects: live sessions have their own cap
        contract = model.contract
        spec = contract.audio
        self._rate = spec.sample_rate
        self.clock = SessionClock(spec.fps, contract.lookahead_frames, config.render_margin_ms / 1000.0)
        delay = max(spec.samples_per_frame, round(config.playout_delay_ms * spec.sample_rate / 1000.0))
        self.inlet = AudioInlet(delay_samples=delay, read_samples=spec.samples_per_frame, log=self.log)
        self.generator = StreamingGenerator(model, avatar, idle=IdleConfig(seed=zlib.crc32(self.id.encode())))
        # An agent's session speaks the segments it pushes; the viewer's microphone, if any, is not heard.
        self.playout = (SegmentPlayout(spec.sample_rate, spec.samples_per_frame, config.agent_buffer_s)
                        if agent else None)
        self.playback: asyncio.Queue[PlaybackEvent] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        video_out: FrameOutlet[av.VideoFrame] = FrameOutlet(loop)
        audio_out: FrameOutlet = FrameOutlet(loop)
        self.video_track = AvatarVideoTrack(self.clock, video_out, self.metrics, video_frame(avatar.background))
        self.audio_track = AvatarAudioTrack(self.clock, audio_out)
        self.render = RenderLoop(self.log, self.generator, self.playout or self.inlet, self.clock, video_out,
                                 audio_out, self.metrics, self._render_failed,
                                 shown=self._shown if self.playout is not None else None,
                                 speech_started=self._speech_started if self.playout is None else None)
        self.pc = RTCPeerConnection(rtc_configuration(config.ice_servers, config.ice_username, config.ice_credential,
                                                      config.ice_relay_only))
        self._loop = loop
        self._tasks: set[asyncio.Task] = set()
        self._closing: asyncio.Future | None = None
        self._audio_in = False
        self._last_heard = time.monotonic()
        self.rtt_ms: float | None = None

    # --- negotiation -------------------------------------------------------------------------

    async def answer(self, offer: OfferRequest) -> RTCSessionDescription:
        """Apply the peer's offer and return our answer (with all ICE candidates, no trickle)."""
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_connection_state)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        except Exception as exc:  # aiortc reports unusable offers with assorted exception types
            raise ApiError(400, f"could not apply the offer: {type(exc).__name__}: {exc}") from exc
        sending = {"audio": False, "video": False}
        for transceiver in self.pc.getTransceivers():
            kind = transceiver.kind
            if sending[kind]:
                transceiver.direction = "inactive"  # one microphone and one picture per session
                continue
            sending[kind] = True
            self.pc.addTrack(self.video_track if kind == "video" else self.audio_track)
            if kind == "video":
                transceiver.direction = "sendonly"  # the peer's camera is of no use: do not make it send
            elif not set_receive_prefetch(transceiver.receiver, self.config.receive_prefetch):
                self.log.warning("could not shorten aiortc's audio jitter buffer; expect 60 ms more latency")
        if offer.prompt:
            self.set_prompt(offer.prompt)
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:  # an offer aiortc took but cannot answer: a missing or doubled mid, BUNDLE, ...
            raise ApiError(400, f"could not answer the offer: {type(exc).__name__}: {exc}") from exc
        self._spawn(self._watchdog())
        self.log.info("answered (%s, avatar %s)", "audio in" if offer.sends_audio else "no audio in: idling",
                      self.avatar.id)
        return self.pc.localDescription

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and not self._audio_in and self.playout is None:
            self._audio_in = True
            self._spawn(self._feed_inlet(track))
        else:
            self._spawn(self._discard(track))

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        self.log.info("peer connection %s", state)
        if state == "connected" and self.state == "connecting":
            if not self._may_go_live():
                self.close("the server reached its live-session limit while this peer was connecting")
                return
            self.state = "live"
            self._last_heard = time.monotonic()
            self.clock.begin()
            self.metrics.render_started = self.clock.start
            self.render.start()
        elif state in ("failed", "closed"):
            self.close(f"peer connection {state}")

    # --- media in ----------------------------------------------------------------------------

    async def _feed_inlet(self, track: MediaStreamTrack) -> None:
        """Drain the peer's audio as it comes (aiortc's track queue is unbounded) into the inlet.

        Positions follow the RTP timestamps, so lost packets and silence suppression leave gaps
        on the timeline instead of pulling later audio early.
        """
        rate = self._rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        position = 0
        next_pts: int | None = None
        try:
            while True:
                frame = await track.recv()
                self._last_heard = time.monotonic()
                if next_pts is not None and frame.pts is not None and frame.pts != next_pts:
                    position += round((frame.pts - next_pts) * rate / frame.sample_rate)
                next_pts = None if frame.pts is None else frame.pts + frame.samples
                for out in resampler.resample(frame):
                    pcm = out.to_ndarray().reshape(-1)
                    self.inlet.push(pcm, position)
                    position += len(pcm)
        except MediaStreamError:
            self.log.info("incoming audio ended")

    async def _discard(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
        except MediaStreamError:
            pass

    # --- control -----------------------------------------------------------------------------

    def interrupt(self) -> int:
        """Stop the avatar speaking now: buffered speech is dropped and the mouth returns to rest.

        Returns the index on the output timeline (RTP timestamp / 3600) of the first frame at rest."""
        self.inlet.clear()
        if self.playout is not None:
            for event in self.playout.clear():
                self.playback.put_nowait(event)
        rest = self.render.redraw_at_rest(self.generator.interrupt() + self.render.skipped)
        self.log.info("interrupted: frame %d on is at rest", rest)
        return rest

    def _speech_started(self, index: int, audio_read: int) -> None:
        """Render thread: frame `index`, drawn from the inlet's read `audio_read`, is the first drawn speaking
        after silence. From the arrival of its audio to its release is the server's onset-to-lips latency: the
        playout delay, the look-ahead, the render and the release margin, as they really add up."""
        if (arrived := self.inlet.arrival(audio_read)) is not None:
            self.metrics.onset_s.append(self.clock.release_time(index) - arrived)

    def _shown(self, index: int) -> None:
        """Render thread: frame `index` was drawn; its playback events go out when it is released."""
        events = self.playout.shown().events
        if events:
            try:
                self._loop.call_soon_threadsafe(self._release_events, index, events)
            except RuntimeError:  # the loop closed: the server is stopping
                pass

    def _release_events(self, index: int, events: list[PlaybackEvent]) -> None:
        def put() -> None:
            for event in events:
                self.playback.put_nowait(event)
        self._loop.call_at(self.clock.release_time(index), put)

    def set_prompt(self, text: str) -> dict[str, float]:
        style = self.generator.set_prompt(text)
        self.log.info("prompt %r", text)
        return dict(vars(style))

    # --- health ------------------------------------------------------------------------------

    async def _watchdog(self) -> None:
        config = self.config
        while True:
            await asyncio.sleep(WATCHDOG_PERIOD_S)
            age = time.monotonic() - self.created
            if self.state == "connecting" and age > config.connect_timeout_s:
                self.close(f"peer did not connect within {config.connect_timeout_s:g} s")
            elif age > config.session_time_limit_s:
                self.close(f"time limit of {config.session_time_limit_s:g} s reached")
            elif self.state == "live":
                silent = time.monotonic() - max(self._last_heard, await self._last_report())
                if silent > config.peer_timeout_s:
                    self.close(f"nothing heard from the peer for {silent:.1f} s")

    async def _last_report(self) -> float:
        """Monotonic time of the newest RTCP receiver report about our tracks (the peer is alive and listening)."""
        newest = 0.0
        for sender in self.pc.getSenders():
            for stats in (await sender.getStats()).values():
                if stats.type == "remote-inbound-rtp":
                    newest = max(newest, time.monotonic() - (time.time() - stats.timestamp.timestamp()))
                    if stats.kind == "video" and stats.roundTripTime is not None:
                        self.rtt_ms = round(stats.roundTripTime * 1000.0, 1)
        return newest

    def stats(self) -> dict[str, Any]:
        rate = self._rate
        if self.state == "live":
            label = "speaking" if self.render.speaking else "idle"
        else:
            label = self.state
        return {
            "session": self.id,
            "state": label,
            **self.metrics.snapshot(),
            "latency_ms": round(1000.0 * (self.inlet.depth_samples / rate + self.clock.latency_s)),
            "rtt_ms": self.rtt_ms,
            "inlet_underruns": self.inlet.counters.underruns,
            "inlet_late_ms": round(1000.0 * self.inlet.counters.late_samples / rate),
            "inlet_dropped_ms": round(1000.0 * self.inlet.counters.dropped_samples / rate),
            "age_s": round(time.monotonic() - self.created, 1),
            **({"buffered_s": round(self.playout.buffered_s, 2)} if self.playout is not None else {}),
        }

    # --- ending ------------------------------------------------------------------------------

    def _render_failed(self, exc: BaseException) -> None:
        """Called on the render thread."""
        try:
            self._loop.call_soon_threadsafe(self.close, f"render failed: {type(exc).__name__}: {exc}")
        except RuntimeError:  # the loop is gone: the server is shutting down anyway
            pass

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        """A background task (audio pump, watchdog) that fails ends its session, saying why."""
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.log.error("%s failed: %s: %s", task.get_coro().__qualname__, type(exc).__name__, exc)
            self.close(f"internal error in {task.get_coro().__qualname__}: {type(exc).__name__}")

    def close(self, reason: str) -> asyncio.Future:
        """End the session (idempotent); the future completes once everything is freed."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._shutdown(reason))
        return self._closing

    async def _shutdown(self, reason: str) -> None:
        self.close_reason = reason
        self.state = "closing"
        self.log.info("closing: %s", reason)
        try:
            self.render.stop()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.video_track.stop()
            self.audio_track.stop()
            try:
                await asyncio.wait_for(self.pc.close(), 5.0)
            except Exception:
                self.log.exception("peer connection did not close cleanly")
            await asyncio.to_thread(self.render.join, 5.0)
        except Exception:
            self.log.exception("shutdown failed part-way; the session is forgotten all the same")
        finally:  # whatever failed above, the session leaves the registry and its waiters are released
            self.state = "closed"
            self.closed.set()
            snapshot = self.metrics.snapshot()
            self.log.info("closed after %.1f s: %d frames, %d late ticks, %d filled, render p50 %s ms, cpu %s",
                          time.monotonic() - self.created, snapshot["frames"], snapshot["late"], snapshot["filled"],
                          snapshot["render_ms_p50"], snapshot["render_cpu"])
            self._on_closed(self)


class SessionRegistry:
    """The sessions, with admission control: a full server refuses with a readable 503.

    Live sessions and sessions still connecting have separate caps, so offers that are never followed by a
    connection (abandoned, or an attacker's) cannot lock out people who do connect: they wait out
    `--connect-timeout-s` in their own slots.
    """

    def __init__(self, max_sessions: int, max_connecting: int, per_client: int = 0) -> None:
        self.max_sessions = max_sessions
        self.max_connecting = max_connecting
        self.per_client = per_client  # sessions one address may hold, live or connecting; 0: no cap
        self.draining = False  # the server is stopping: no new sessions
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self):
        return iter(list(self._sessions.values()))

    def _live(self) -> int:
        return sum(s.state != "connecting" for s in self._sessions.values())

    def may_go_live(self) -> bool:
        return self._live() < self.max_sessions  # the session asking is still "connecting": not counted

    def check_capacity(self, client: str = "") -> None:
        if self.per_client and client:
            held = sum(s.client == client for s in self._sessions.values())
            if held >= self.per_client:
                raise ApiError(429, f"{client} already holds {held} sessions, the most one client may "
                                    "(--max-sessions-per-client); end one first", headers={"Retry-After": "5"})
        if self.draining:
            raise ApiError(503, "the server is shutting down; its live sessions are finishing",
                           headers={"Retry-After": "30"})
        live = self._live()
        connecting = len(self._sessions) - live
        if live >= self.max_sessions:
            raise ApiError(503, f"the server is at capacity ({live} of {self.max_sessions} sessions live); try "
                                "again when one ends", headers={"Retry-After": "5"})
        if connecting >= self.max_connecting:
            raise ApiError(503, f"{connecting} offers are still connecting; try again in a few seconds",
                           headers={"Retry-After": "5"})

    def add(self, session: Session) -> None:
        self.check_capacity(session.client)
        self._sessions[session.id] = session

    def remove(self, session: Session) -> None:
        self._sessions.pop(session.id, None)

    def get(self, session_id: str) -> Session:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise ApiError(404, f"no live session {session_id!r}") from None

    async def close_all(self, reason: str) -> None:
        await asyncio.gather(*(s.close(reason) for s in self), return_exceptions=True)
