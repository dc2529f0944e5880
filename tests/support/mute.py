"""An Orpheus front-end that keeps every request waiting, as the real one does while it
synthesizes a long speech (it is serial), over a completions backend that answers."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HANG_GUARD_S = 120.0


class MuteOrpheus:
    """`url` is a front-end whose every request waits until `close()` (or the hang
    guard); `backend_url` answers `/v1/models` at once."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.servers = [self._serve(mute=True), self._serve(mute=False)]

    def _serve(self, *, mute: bool) -> ThreadingHTTPServer:
        released = self.released

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if mute:
                    released.wait(HANG_GUARD_S)
                body = json.dumps({"data": [], "voices": []}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the prober gave up waiting long ago
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.servers[0].server_address[1]}"

    @property
    def backend_url(self) -> str:
        return f"http://127.0.0.1:{self.servers[1].server_address[1]}"

    def close(self) -> None:
        self.released.set()
        for server in self.servers:
            server.shutdown()
            server.server_close()


def serve_orpheus_from(config_path: Path, orpheus: MuteOrpheus) -> None:
    """Point the test cluster's `[services.orpheus]` at `orpheus` and its backend."""
    text = config_path.read_text()
    head, section = text.split("[services.orpheus]", 1)
    section, tail = section.split("\n[", 1)
    section = re.sub(r'^url = ".*"$', f'url = "{orpheus.url}"', section, flags=re.M)
    section = re.sub(r'^backend_url = ".*"$', f'backend_url = "{orpheus.backend_url}"', section,
                     flags=re.M)  # fmt: skip
    config_path.write_text(f"{head}[services.orpheus]{section}\n[{tail}")
