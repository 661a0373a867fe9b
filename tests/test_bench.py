"""`s2v bench`'s load: real peers at once against a real server, measured per session and for the server."""

from __future__ import annotations

from s2v.client.load import BenchConfig, _looped, run_load, table


async def test_two_sessions_at_once_are_measured_per_session_and_for_the_server(live_server, short_speech_wav,
                                                                                  tmp_path):
    server = await live_server(max_sessions=2)
    config = BenchConfig(sessions=2, seconds=3.0)
    result = await run_load(config, server.url, _looped(short_speech_wav, config.seconds, tmp_path))
    assert not result["failed"] and len(result["per_session"]) == 2
    for session in result["per_session"]:
        assert session["fps"] >= 20 and session["render_ms_p50"] is not None and session["filled"] is not None
    assert 0 < result["server_cpu_per_session"] < 2 and result["server_rss_mb"] > 50
    stages = result["cpu_ms_per_frame"]
    for stage in ("graph", "encoders (VP8, Opus)", "event loop (RTP, SRTP, ICE, pacing)"):
        assert stages[stage] > 0, stage
    assert "server CPU" in table(result) and "graph" in table(result)
