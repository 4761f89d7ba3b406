"""Run every sandbox in the foreground (HTTP apps on one port, the SFTP drop box on another) until
SIGINT or SIGTERM. Used by `tidings sandbox serve` and `make dev`."""

from __future__ import annotations

import signal
import tempfile
import threading
from pathlib import Path
from types import FrameType

from syncs.sandbox.apps import SANDBOX_CREDENTIALS, all_apps
from syncs.sandbox.server import SandboxServer
from syncs.sandbox.sftp import SftpSandbox


def serve(port: int = 8765, sftp_port: int = 8722, sftp_root: Path | None = None) -> None:
    root = sftp_root or Path(tempfile.mkdtemp(prefix="tidings-mailhouse-"))
    apps = all_apps()
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    with SandboxServer(apps, port=port) as http, SftpSandbox(root, port=sftp_port) as sftp:
        print(f"Tidings sandboxes on {http.url} (export TIDINGS_SANDBOX_URL={http.url})", flush=True)
        for app in apps:
            print(f"  {app.name:<12} {http.url}{app.prefix}", flush=True)
        print(f"  {'sftp':<12} sftp://{sftp.username}@127.0.0.1:{sftp.port}/ serving {root}", flush=True)
        print("Credentials they accept (the sandbox profile reads these env vars):", flush=True)
        for name, value in SANDBOX_CREDENTIALS.items():
            print(f"  export {name}={value}", flush=True)
        try:
            stop.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    print("Sandboxes stopped.", flush=True)


if __name__ == "__main__":
    serve()
