"""One Kafka node's JVM process as the launcher (`apache.KafkaCluster`) runs it, and how a
set of them is waited for once told to stop: the quorum rule below."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import IO

from siyu_stream.core.errors import BrokerError
from siyu_stream.kafka import kraft

# Seconds a stopping node may outlive the quorum: its raft client's graceful resignation
# waits ~5 s for peers that are gone (measured: a node's log goes quiet that long), then it
# flushes and exits; a node still running after this waits for a controlled-shutdown
# approval that cannot come.
QUORUM_GRACE = 15.0
DUMP_WAIT = 10.0
"""Seconds a thread dump may take to print (~1,200 lines for a Kafka node) before the kill."""


class Node:
    def __init__(self, index: int, directory: Path, ports: kraft.Ports) -> None:
        self.index = index  # also its node.id
        self.directory = directory
        self.ports = ports
        self.proc: subprocess.Popen[bytes] | None = None
        self.output: IO[bytes] | None = None
        self.dump: Path | None = None  # where this run writes the class-data archive at exit

    @property
    def config(self) -> Path:
        return self.directory / "server.properties"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, limit: int = 4000) -> str:
        """The end of the JVM's own output (a crash before logging) and of the server log."""
        parts = []
        for name in ("stdout.log", "server.log"):
            path = self.directory / name
            if path.exists() and path.stat().st_size:
                with path.open("rb") as log:
                    log.seek(max(0, path.stat().st_size - limit))
                    parts.append(f"--- {path}\n" + log.read().decode(errors="replace"))
        return "\n".join(parts)

    def terminate(self) -> None:
        """SIGTERM: Kafka's controlled shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL, then collect the process: a crash."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.reap()

    def dump_and_kill(self) -> None:
        """SIGQUIT first: the JVM prints every thread's stack to its stdout (stdout.log),
        the record of where it waited. Killed once that list is written (its "JNI global
        refs" line closes it) or after DUMP_WAIT s."""
        if self.proc is not None and self.proc.poll() is None:
            out = self.directory / "stdout.log"
            start = out.stat().st_size if out.exists() else 0
            self.proc.send_signal(signal.SIGQUIT)  # the JVM prints, and goes on running
            deadline = time.monotonic() + DUMP_WAIT
            while self.proc.poll() is None and time.monotonic() < deadline:
                with out.open("rb") as printed:
                    printed.seek(start)
                    if b"JNI global refs" in printed.read():
                        break
                time.sleep(0.05)
        self.kill()

    def reap(self, archive: Path | None = None) -> None:
        """Collect the exited process; the class-data archive it wrote as it exited becomes
        `archive` (a killed one's partial archive is deleted)."""
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired as exc:
                msg = f"Kafka node {self.index} (pid {self.proc.pid}) not gone 10 s after exit"
                raise BrokerError(msg) from exc
        self.proc = None
        if self.dump is not None:
            if archive is not None and self.dump.exists():
                self.dump.replace(archive)
            self.dump.unlink(missing_ok=True)
            self.dump = None
        if self.output is not None:
            self.output.close()
            self.output = None


def wait_stopped(
    stopping: list[Node], nodes: list[Node], timeout: float, archive: Path | None
) -> list[int]:
    """Wait for the SIGTERMed `stopping` nodes (of the cluster's `nodes`) to exit. A broker's
    controlled shutdown waits for the active controller's approval, up to 5 minutes; once
    fewer than a majority of the nodes run, no controller can give it. Nodes still running
    QUORUM_GRACE s after that are killed, after a thread dump, and their indexes returned:
    what remains of their shutdown is a crash's recovery at their next start. A node still
    running after `timeout` while the quorum stands is a BrokerError."""
    deadline = time.monotonic() + timeout
    quorum_lost: float | None = None
    killed: list[int] = []
    stuck: list[Node] = []
    while waiting := [n for n in stopping if n.running]:
        now = time.monotonic()
        if quorum_lost is None and 2 * sum(n.running for n in nodes) <= len(nodes):
            quorum_lost = now
        if quorum_lost is not None and now >= quorum_lost + QUORUM_GRACE:
            for node in waiting:
                node.dump_and_kill()
                killed.append(node.index)
        elif now >= deadline:
            for node in waiting:
                node.dump_and_kill()
            stuck = waiting
        else:
            time.sleep(0.05)
    for node in stopping:  # before an error too: collect the nodes that did exit
        node.reap(archive)  # exited by itself: the archive it wrote is whole
    if stuck:
        names = ", ".join(str(n.index) for n in stuck)
        msg = (
            f"Kafka node(s) {names} ignored SIGTERM for {timeout} s; killed "
            f"(thread dump and log in {stuck[0].directory})"
        )
        raise BrokerError(msg)
    return killed
