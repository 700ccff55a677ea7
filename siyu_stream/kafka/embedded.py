"""A local Kafka-protocol broker (noida-db) for `demo`, the CLI and the integration tests.

What this encodes comes from measurements of noida-db 0.2.3 (docs/design.md §8):

- The binary is started directly, not through noida-db's Python wrapper: the wrapper runs it
  as a child and does not forward signals, so SIGTERM would never reach the broker and it
  would not save its data.
- SIGTERM saves the data dir; SIGKILL loses whatever was acked in the last ~1 s.
- A stopping broker is not immediately replaceable: noida-db refuses to start on a data dir
  while the PID in its control file answers `kill -0` (a zombie does, until reaped; saving a
  large data dir takes a while), and the notes report "port already in use" after a stop.
  `restart` waits until the old process has exited, and `start` retries those two failures
  every 0.5 s.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import time
from importlib.resources import files
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from siyu_stream.core.errors import BrokerError
from siyu_stream.settings import KafkaConnection

LOG_NAME = "noida-db.log"
_RETRY_INTERVAL = 0.5
# noida-db refuses to start while the PID in the data dir's control file answers `kill -0`.
_ALREADY_RUNNING = re.compile(r"is already running for .* \(pid (\d+)\)")


def binary_path() -> Path:
    """The noida-db executable shipped in the `noida_db` wheel."""
    try:
        path = Path(str(files("noida_db") / "noida-db"))
    except ModuleNotFoundError as exc:
        msg = "noida-db is not installed; install the `local` extra: pip install -e '.[local]'"
        raise BrokerError(msg) from exc
    if not path.is_file():
        msg = f"noida-db binary not found at {path}; reinstall the `local` extra"
        raise BrokerError(msg)
    if not os.access(path, os.X_OK):
        # Some installers drop the executable bit; noida-db's own wrapper restores it the same way.
        path.chmod(0o755)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the caller may still race for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def metadata_probe(port: int, timeout: float = 1.0) -> list[tuple[int, str, int]]:
    """Send a Kafka Metadata v0 request and return the brokers it lists (id, host, port).

    A plain TCP connect is not enough: the listener can accept before the broker answers
    requests. Hand-encoded so that it works from synchronous code and inside an event loop.
    """
    correlation_id = 0x51F0
    client_id = b"siyu-stream-probe"
    # header: api_key=3 (Metadata), api_version=0, correlation_id, client_id; body: 0 topics
    # (in v0 an empty list means "all topics").
    payload = struct.pack(">hhih", 3, 0, correlation_id, len(client_id)) + client_id
    payload += struct.pack(">i", 0)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        with sock.makefile("rb") as stream:
            head = stream.read(4)
            body = stream.read(struct.unpack(">i", head)[0]) if len(head) == 4 else b""
    if len(body) < 8:
        msg = "broker closed the connection mid-response"
        raise BrokerError(msg)
    (got_id, count) = struct.unpack_from(">ii", body, 0)
    if got_id != correlation_id:
        msg = f"metadata response has correlation id {got_id}, expected {correlation_id}"
        raise BrokerError(msg)
    brokers: list[tuple[int, str, int]] = []
    pos = 8
    for _ in range(count):  # node_id int32, host string (int16 length), port int32
        node_id, host_len = struct.unpack_from(">ih", body, pos)
        host = body[pos + 6 : pos + 6 + host_len].decode()
        (broker_port,) = struct.unpack_from(">i", body, pos + 6 + host_len)
        pos += 10 + host_len
        brokers.append((node_id, host, broker_port))
    return brokers


def _is_zombie(pid: int) -> bool:
    """True if `pid` has exited but is not reaped yet (state Z), or does not exist at all."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    # The command name in field 2 is parenthesised and may contain spaces: split after it.
    return stat.rpartition(")")[2].split()[0] == "Z"


def _transient(output: str) -> bool:
    """Whether a failed start may succeed if retried shortly (output: the broker's log).

    Two failures go away by themselves after a stop: the old port not released yet, and the
    old PID still in the control file as a zombie. A live PID there is another broker on the
    same data dir: waiting would not help.
    """
    if "already in use" in output:
        return True
    match = _ALREADY_RUNNING.search(output)
    return match is not None and _is_zombie(int(match.group(1)))


class LocalBroker:
    """One noida-db process serving Kafka on 127.0.0.1:`port`, data kept in `data_dir`."""

    def __init__(self, data_dir: Path, port: int | None = None, *, timeout: float = 30.0) -> None:
        self.data_dir = Path(data_dir)
        self._auto_port = port is None
        self.port = free_port() if port is None else port
        self.timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._started_once = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def connection(self) -> KafkaConnection:
        """How a client reaches it: plaintext, no login."""
        return KafkaConnection(self.bootstrap)

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_NAME

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Spawn the broker and return once it answers a Metadata request.

        Retries every 0.5 s while the failure is transient (see module docstring); raises
        BrokerError with the tail of the broker log on any other failure or after `timeout`.
        """
        if self.running:
            msg = f"broker already running (pid {self.pid}) on {self.bootstrap}"
            raise BrokerError(msg)
        if self._proc is not None:  # it died on its own: collect it before replacing it
            self._reap(self._proc)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.timeout
        while True:
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            proc = self._spawn()
            failure = self._wait_ready(proc, deadline)
            if failure is None:
                self._started_once = True
                return
            self._reap(proc)
            output = self._log_since(log_offset)
            if not _transient(output) or time.monotonic() + _RETRY_INTERVAL > deadline:
                msg = f"noida-db did not start on {self.bootstrap}: {failure}\n{output}"
                raise BrokerError(msg)
            if self._auto_port and not self._started_once and "already in use" in output:
                # Someone else took the port we picked; nobody depends on it yet, pick another.
                self.port = free_port()
            time.sleep(_RETRY_INTERVAL)

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM (the broker saves its data dir) and wait until the process is gone.

        The timeout is generous because saving is the slow part of a stop (one JSON file,
        ~4x the payload) and running out of patience means SIGKILL, which loses data.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        if not self._wait_gone(proc, timeout):
            self.kill()
            msg = f"noida-db (pid {proc.pid}) ignored SIGTERM for {timeout} s; killed, data lost?"
            raise BrokerError(msg)
        self._reap(proc)

    def kill(self) -> None:
        """SIGKILL: simulates a crash; acks from the last ~1 s are lost."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        self._reap(proc)

    def restart(self) -> None:
        """Stop with SIGTERM and start again on the same data dir and port."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _spawn(self) -> subprocess.Popen[bytes]:
        if self._log is None:
            # Append: a restarted broker's log follows the previous one's.
            self._log = self.log_path.open("ab")
        argv = [str(binary_path()), "start", "--only", "kafka"]
        argv += ["--kafka-port", str(self.port), "--data-dir", str(self.data_dir)]
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        return self._proc

    def _wait_ready(self, proc: subprocess.Popen[bytes], deadline: float) -> str | None:
        """None once the broker answers; otherwise why it did not (exit or timeout)."""
        last_error = "no attempt made"
        while time.monotonic() < deadline:
            rc = proc.poll()
            if rc is not None:
                return f"exited with code {rc}"
            try:
                if metadata_probe(self.port):
                    return None
                last_error = "metadata lists no brokers"
            except (OSError, struct.error, BrokerError) as exc:
                # Not listening yet, or answering garbage while it comes up: try again.
                last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.05)
        proc.kill()
        return f"not ready after {self.timeout} s ({last_error})"

    @staticmethod
    def _wait_gone(proc: subprocess.Popen[bytes], timeout: float) -> bool:
        """Wait until the process has exited: reaped by us, or a zombie in /proc.

        `kill -0` is no test: it succeeds on a zombie, and noida-db's own "already running"
        check uses it, which is why `start` also retries on that message.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None or _is_zombie(proc.pid):
                return True
            time.sleep(0.02)
        return False

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        """Collect the exit status of a process that has exited or was just SIGKILLed."""
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired as exc:
            msg = f"noida-db (pid {proc.pid}) still not gone 5 s after it was told to exit"
            raise BrokerError(msg) from exc
        if self._proc is proc:
            self._proc = None
        if self._log is not None and self._proc is None:
            self._log.close()
            self._log = None

    def _log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read()[-4000:].decode(errors="replace")
