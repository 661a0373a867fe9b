"""MP4 (H.264 + AAC) recording of received frames, encoded on a thread so the event loop keeps receiving."""

from __future__ import annotations

import fractions
import logging
import queue
import threading
from pathlib import Path

import av

log = logging.getLogger(__name__)

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)


class Mp4Recorder:
    """Frames keep their RTP timestamps (both tracks restart at 0 in aiortc), so gaps stay gaps.

    Both streams are declared up front (MP4 writes its header on the first packet): the video at
    the size the server announced, the audio as aiortc decodes Opus, 48 kHz stereo.
    """

    def __init__(self, path: Path, size: tuple[int, int]) -> None:
        self.path = Path(path)
        self._size = size
        self._queue: queue.SimpleQueue[av.VideoFrame | av.AudioFrame | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write, name="mp4-recorder", daemon=True)
        self._thread.start()

    def add(self, frame: av.VideoFrame | av.AudioFrame) -> None:
        self._queue.put(frame)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _write(self) -> None:
        container = av.open(str(self.path), "w")
        video = container.add_stream("libx264", rate=25)
        video.width, video.height = self._size
        video.pix_fmt = "yuv420p"
        video.time_base = VIDEO_TIME_BASE
        video.options = {"preset": "veryfast", "tune": "zerolatency"}
        audio = container.add_stream("aac", rate=48000)
        audio.layout = "stereo"
        last_video_pts = -1
        try:
            while (frame := self._queue.get()) is not None:
                if isinstance(frame, av.VideoFrame):
                    if frame.pts <= last_video_pts:
                        continue
                    last_video_pts = frame.pts
                    frame.time_base = VIDEO_TIME_BASE
                    container.mux(video.encode(frame))
                else:
                    container.mux(audio.encode(frame))
            for stream in (video, audio):
                container.mux(stream.encode(None))
        except Exception:
            log.exception("recording to %s failed", self.path)
        finally:
            container.close()
