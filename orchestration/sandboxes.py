"""The destination sandboxes (every HTTP app on one port, the SFTP drop box on another) run in this process.

While running, `TIDINGS_SANDBOX_URL` and `TIDINGS_SANDBOX_SFTP_PORT` point the default destinations profile at
them and the sandbox credentials are set, so syncs loaded during that time deliver to the sandboxes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from syncs.sandbox.apps import all_apps, use_sandbox_credentials
from syncs.sandbox.server import SandboxServer
from syncs.sandbox.sftp import SftpSandbox

SANDBOX_URL_ENV = "TIDINGS_SANDBOX_URL"
SANDBOX_SFTP_PORT_ENV = "TIDINGS_SANDBOX_SFTP_PORT"


@dataclass(frozen=True)
class RunningSandboxes:
    http: SandboxServer
    sftp: SftpSandbox

    @property
    def sftp_root(self) -> Path:
        return self.sftp.root


@contextmanager
def running_sandboxes(sftp_root: Path, http_port: int = 0, sftp_port: int = 0) -> Iterator[RunningSandboxes]:
    """Start both sandboxes (port 0: any free port) and point the environment at them until exit."""
    use_sandbox_credentials()
    with SandboxServer(all_apps(), port=http_port) as http, SftpSandbox(sftp_root, port=sftp_port) as sftp:
        previous = {name: os.environ.get(name) for name in (SANDBOX_URL_ENV, SANDBOX_SFTP_PORT_ENV)}
        os.environ[SANDBOX_URL_ENV] = http.url
        os.environ[SANDBOX_SFTP_PORT_ENV] = str(sftp.port)
        try:
            yield RunningSandboxes(http=http, sftp=sftp)
        finally:
            for name, value in previous.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
