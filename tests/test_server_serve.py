"""`serve()` (what `s2v serve` runs): prints where it listens, answers, and stops cleanly on SIGINT."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request

SERVE = """
import sys
from pathlib import Path
from s2v.server.app import serve
from s2v.server.config import ServerConfig
serve(ServerConfig(port=0, device="cpu", avatar_dir=Path(sys.argv[1])))
"""


def test_serve_prints_its_address_answers_and_stops_on_sigint(tmp_path):
    server = subprocess.Popen([sys.executable, "-c", SERVE, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline()
        assert line.startswith("s2v serving on http://127.0.0.1:"), line
        url = line.split()[3]
        with urllib.request.urlopen(f"{url}healthz", timeout=10) as response:
            health = json.load(response)
        assert health["ok"] and health["sessions"] == 0 and health["provider"] == "CPUExecutionProvider"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert b"<video" in response.read()
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=15) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
