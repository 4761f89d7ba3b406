"""A real SFTP server (paramiko) on loopback that stands in for a mail house's drop box.

It serves one local directory as `/`, accepts a password or a public key for one user, and renames the way
OpenSSH's server does: a plain SFTP rename onto an existing file fails (link + unlink), so an uploader that
renames its temporary file into place can never overwrite a delivered drop.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import socket
import threading
from pathlib import Path
from typing import Any

import paramiko
from paramiko.sftp import SFTP_FAILURE, SFTP_OK, SFTP_OP_UNSUPPORTED, SFTP_PERMISSION_DENIED

from syncs.sandbox.apps.credentials import MAILHOUSE_SFTP_PASSWORD, MAILHOUSE_SFTP_USERNAME, SANDBOX_CREDENTIALS


class SftpSandbox:
    """Serves `root` over SFTP on 127.0.0.1. Use as a context manager or call start()/stop().

    `fail_renames` makes the next N renames fail, to simulate a connection lost between upload and rename.
    `refuse_writes` (a glob on file names, say `*.manifest.json`) refuses to open a matching file for writing or
    to rename a file to a matching name (permission denied), as a drop box that lets one kind of file in but not
    another.
    """

    def __init__(
        self,
        root: Path,
        *,
        port: int = 0,
        username: str = MAILHOUSE_SFTP_USERNAME,
        password: str | None = None,
        authorized_key: paramiko.PKey | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.username = username
        self.password = password if password is not None else SANDBOX_CREDENTIALS[MAILHOUSE_SFTP_PASSWORD]
        self.authorized_key = authorized_key
        self.host_key = paramiko.ECDSAKey.generate()
        self.fail_renames = 0
        self.refuse_writes = ""
        self.stats = dict.fromkeys(
            ("logins", "failed_logins", "uploads", "renames", "refused_renames", "refused_writes"), 0
        )
        self.lock = threading.Lock()
        self._socket = socket.create_server(("127.0.0.1", port))
        self._socket.settimeout(0.2)  # so the accept loop notices stop()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._transports: list[paramiko.Transport] = []

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    def count(self, stat: str) -> None:
        with self.lock:
            self.stats[stat] += 1

    def start(self) -> SftpSandbox:
        self._thread = threading.Thread(target=self.serve_forever, name="sftp-sandbox", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            transport = paramiko.Transport(connection)
            transport.add_server_key(self.host_key)
            transport.set_subsystem_handler("sftp", paramiko.SFTPServer, _RootedSftp)
            try:
                transport.start_server(server=_Authenticator(self))
            except (paramiko.SSHException, OSError, EOFError):
                transport.close()  # a client that hung up during key exchange (e.g. refused our host key)
                continue
            self._transports.append(transport)

    def stop(self) -> None:
        self._stopping.set()
        self._socket.close()
        for transport in self._transports:
            transport.close()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def __enter__(self) -> SftpSandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Authenticator(paramiko.ServerInterface):
    def __init__(self, sandbox: SftpSandbox) -> None:
        self.sandbox = sandbox

    def get_allowed_auths(self, username: str) -> str:
        return "password,publickey"

    def check_auth_password(self, username: str, password: str) -> int:
        ok = username == self.sandbox.username and password == self.sandbox.password
        return self._result(ok)

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        authorized = self.sandbox.authorized_key
        ok = username == self.sandbox.username and authorized is not None and key == authorized
        return self._result(ok)

    def _result(self, ok: bool) -> int:
        self.sandbox.count("logins" if ok else "failed_logins")
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class _Handle(paramiko.SFTPHandle):
    def stat(self) -> Any:
        return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))

    def chattr(self, attr: paramiko.SFTPAttributes) -> int:
        return SFTP_OK


class _RootedSftp(paramiko.SFTPServerInterface):
    """Maps SFTP paths into the sandbox root; nothing outside it is reachable."""

    def __init__(self, server: _Authenticator, *args: Any, **kwargs: Any) -> None:
        super().__init__(server, *args, **kwargs)
        self.sandbox = server.sandbox

    def _local(self, path: str) -> Path:
        local = (self.sandbox.root / self.canonicalize(path).lstrip("/")).resolve()
        if local != self.sandbox.root and self.sandbox.root not in local.parents:
            raise PermissionError(path)
        return local

    def _refused(self, path: str) -> bool:
        """Whether `refuse_writes` forbids writing a file at `path` (counted when it does)."""
        pattern = self.sandbox.refuse_writes
        refused = bool(pattern) and fnmatch.fnmatchcase(path.rpartition("/")[2], pattern)
        if refused:
            self.sandbox.count("refused_writes")
        return refused

    def canonicalize(self, path: str) -> str:
        return os.path.normpath("/" + path).replace("//", "/")

    def list_folder(self, path: str) -> Any:
        try:
            folder = self._local(path)
            return [
                _with_name(paramiko.SFTPAttributes.from_stat(entry.stat()), entry.name) for entry in folder.iterdir()
            ]
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno or errno.EACCES)

    def stat(self, path: str) -> Any:
        try:
            return paramiko.SFTPAttributes.from_stat(self._local(path).stat())
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno or errno.EACCES)

    lstat = stat

    def open(self, path: str, flags: int, attr: Any) -> Any:
        writing = flags & (os.O_WRONLY | os.O_RDWR)
        if writing and self._refused(path):
            return SFTP_PERMISSION_DENIED
        try:
            local = self._local(path)
            fd = os.open(local, flags | getattr(os, "O_BINARY", 0), 0o644)
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno or errno.EACCES)
        mode = ("ab" if flags & os.O_APPEND else "r+b" if flags & os.O_RDWR else "wb") if writing else "rb"
        handle = _Handle(flags)
        file = os.fdopen(fd, mode)
        handle.readfile = file
        handle.writefile = file if writing else None
        if writing:
            self.sandbox.count("uploads")
        return handle

    def remove(self, path: str) -> int:
        try:
            self._local(path).unlink()
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno or errno.EACCES)
        return SFTP_OK

    def rename(self, oldpath: str, newpath: str) -> int:
        """Like OpenSSH: hard-link then unlink, so the rename fails when the new name exists."""
        with self.sandbox.lock:
            if self.sandbox.fail_renames > 0:
                self.sandbox.fail_renames -= 1
                return SFTP_FAILURE
        if self._refused(newpath):
            return SFTP_PERMISSION_DENIED
        try:
            source, target = self._local(oldpath), self._local(newpath)
            os.link(source, target)
            source.unlink()
        except FileExistsError:
            self.sandbox.count("refused_renames")
            return SFTP_FAILURE
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno or errno.EACCES)
        self.sandbox.count("renames")
        return SFTP_OK

    def posix_rename(self, oldpath: str, newpath: str) -> int:
        """Refused: it would replace an existing file, which a drop box must never allow."""
        return SFTP_OP_UNSUPPORTED

    def mkdir(self, path: str, attr: Any) -> int:
        try:
            self._local(path).mkdir()
        except OSError as exc:
            return paramiko.SFTPServer.convert_errno(exc.errno or errno.EACCES)
        return SFTP_OK

    def rmdir(self, path: str) -> int:
        return SFTP_PERMISSION_DENIED

    def chattr(self, path: str, attr: Any) -> int:
        return SFTP_OK


def _with_name(attributes: paramiko.SFTPAttributes, name: str) -> paramiko.SFTPAttributes:
    attributes.filename = name
    return attributes
