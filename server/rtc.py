"""The two aiortc settings every peer of this project needs, for the server and the Python client alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.rtcrtpreceiver import RTCRtpReceiver


def rtc_configuration(servers: Sequence[str] = (), username: str | None = None, credential: str | None = None,
                      relay_only: bool = False) -> RTCConfiguration:
    """The STUN/TURN servers given (`stun:host:port`, `turn:host:port?transport=udp`), and none by default:
    aiortc would otherwise try a public STUN server, unreachable offline and useless on a LAN. `relay_only`
    offers TURN relay candidates alone, for peers that can reach each other only through the relay."""
    ice = [RTCIceServer(urls=list(servers), username=username, credential=credential)] if servers else []
    policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
    return RTCConfiguration(iceServers=ice, iceTransportPolicy=policy)


def browser_ice(servers: Sequence[str], username: str | None, credential: str | None,
                relay_only: bool) -> dict[str, Any]:
    """The same settings as a browser's RTCPeerConnection takes them."""
    entry: dict[str, Any] = {"urls": list(servers)}
    if username is not None:
        entry.update(username=username, credential=credential)
    return {"iceServers": [entry] if servers else [], "iceTransportPolicy": "relay" if relay_only else "all"}


def set_receive_prefetch(receiver: RTCRtpReceiver, packets: int) -> bool:
    """Make aiortc decode incoming audio after `packets` packets instead of its fixed 4 (80 ms).

    aiortc has no API for this. Whoever buffers the audio downstream already absorbs jitter with a
    delay of their choosing, so holding packets here too only adds latency. Returns False (and
    changes nothing) if aiortc's internals have moved.
    """
    name = "_RTCRtpReceiver__jitter_buffer"
    if not isinstance(getattr(receiver, name, None), JitterBuffer):
        return False
    setattr(receiver, name, JitterBuffer(capacity=16, prefetch=packets))
    return True
