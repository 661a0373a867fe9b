"""The two aiortc settings every peer of this project needs, for the server and the Python client alike."""

from __future__ import annotations

from aiortc import RTCConfiguration
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpreceiver import RTCRtpReceiver


def rtc_configuration() -> RTCConfiguration:
    """No ICE servers: aiortc would otherwise try a public STUN server, unreachable offline and useless on a LAN."""
    return RTCConfiguration(iceServers=[])


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
