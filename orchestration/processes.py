"""Starting and stopping `dagster dev` (or any service tree) as one process group.

A child inherits ignored signals: started from a non-interactive shell or a CI runner, `dagster dev` would ignore
SIGINT and SIGTERM and outlive its parent. So the child gets default handlers back, runs in its own session,
and is stopped with SIGINT (dagster dev then shuts down its webserver, daemon and code servers), and, if it is
still running after a grace period, SIGKILL to the whole group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from typing import Any

GRACE_SECONDS = 20


def _default_signal_handlers() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def start_group(command: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(list(command), start_new_session=True, preexec_fn=_default_signal_handlers, **popen_kwargs)


def stop_group(process: subprocess.Popen[bytes], grace_seconds: float = GRACE_SECONDS) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace_seconds)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # whatever the group left behind
    process.wait()
