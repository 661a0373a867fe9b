"""The server's CPU accounts by stage: each thread's CPU counted under what it does, kept after it ends."""

from __future__ import annotations

import threading
import time

import pytest

from s2v.server.thread_cpu import ThreadCpu, stage_of


def test_threads_are_told_apart_by_their_names():
    assert stage_of("MainThread") == "event_loop"
    assert stage_of("render-ab12cd") == "render"
    assert stage_of("audio-decoder") == stage_of("video-decoder") == "decode"
    assert stage_of("asyncio_3") == "encode"
    assert stage_of("Thread-7 (worker)") == "other"


def test_a_thread_that_ended_keeps_its_cpu_in_its_stage():
    accounts = ThreadCpu()
    if not accounts.available:
        pytest.skip("no per-thread CPU accounts on this system (not Linux)")
    accounts.sample()
    before = accounts.totals()["render"]
    burnt, stop = threading.Event(), threading.Event()

    def burn() -> None:  # 0.2 s of CPU, then more until told to stop
        start = time.thread_time()
        while not stop.is_set():
            if time.thread_time() - start > 0.2:
                burnt.set()

    worker = threading.Thread(target=burn, name="render-test")
    worker.start()
    assert burnt.wait(30)
    accounts.sample()  # seen while it runs...
    stop.set()
    worker.join()
    accounts.sample()  # ...and gone at the next sample
    assert accounts.totals()["render"] - before >= 0.15
    assert accounts.totals()["render"] >= before
