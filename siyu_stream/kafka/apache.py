"""Apache Kafka 4.x in KRaft combined mode (every node is broker and controller), run from the
jars that `make kafka-jars` fetches into .kafka/lib; for `siyu-stream broker --engine kafka`
and the integration tests. Same surface as the embedded `LocalBroker`, plus per-node control.

Measured on 2 cores shared with other work (load 3-4), Java 17, Kafka 4.4.0, the JVM class
archive in place (`jvm`), medians of 3-5 runs:

| cluster        | first start (format + start) | start on a formatted dir | stop (SIGTERM) |
| -------------- | ---------------------------- | ------------------------ | -------------- |
| 1 node         | 3.9 s                        | 2.6 s                    | 0.4 s          |
| 1 node, SASL   | 4.0 s                        | 2.6 s                    | 0.5 s          |
| 3 nodes        | 7.2 s                        | 4.8 s                    | 5.6 s          |

- Formatting is one JVM per node (`kafka.tools.StorageTool format`), run side by side; a
  data dir holding cluster.json was formatted already and is only started.
- "Ready" is every running node answering a Metadata request that lists every running
  node. A broker is listed only once the active controller has unfenced it, so the KRaft
  quorum has a leader then and a CreateTopics sent next succeeds.
- Three nodes stop slower: one node's log goes quiet for ~5 s between its broker's shutdown
  (done, logs flushed) and its controller's, which seems to be the quorum waiting for peers
  that are already gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from siyu_stream.core.errors import BrokerError
from siyu_stream.kafka import datadir, kraft, tls
from siyu_stream.kafka.jvm import Jvm, locate
from siyu_stream.kafka.metadata import Metadata, Partition, metadata
from siyu_stream.settings import KafkaConnection


def _free_ports(count: int) -> list[int]:
    """`count` TCP ports on 127.0.0.1 that were free a moment ago, all different: each is
    held while the next is picked (the caller may still race others for them)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


class _Node:
    def __init__(self, index: int, directory: Path, ports: kraft.Ports) -> None:
        self.index = index
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


class KafkaCluster:
    """`nodes` Kafka processes on 127.0.0.1, node i (its node.id) keeping its data in
    `data_dir`/node-i; with `sasl`, a SASL_SSL listener (SCRAM and PLAIN) beside PLAINTEXT."""

    def __init__(
        self,
        data_dir: Path,
        nodes: int = 1,
        *,
        sasl: bool = False,
        port: int | None = None,
        timeout: float = 120.0,
        heap: str | None = None,
        java: Path | None = None,
        lib: Path | None = None,
    ) -> None:
        if nodes < 1:
            msg = f"nodes: expected >= 1, got {nodes}"
            raise BrokerError(msg)
        self.data_dir = Path(data_dir).resolve()
        self.sasl = sasl
        self.timeout = timeout
        # Three JVMs share 2 cores and a test machine's memory: less heap each.
        self.heap = heap or ("512m" if nodes == 1 else "320m")
        self._java = java
        self._lib = lib
        self._located: Jvm | None = None
        self._lock_file: IO[str] | None = None
        free = iter(_free_ports(3 * nodes))
        self.nodes = [
            _Node(
                i,
                self.data_dir / f"node-{i}",
                kraft.Ports(port if i == 0 and port else next(free), next(free), next(free)),
            )
            for i in range(nodes)
        ]
        self.started_in: float | None = None  # seconds the last start() took

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{node.ports.client}" for node in self.nodes)

    @property
    def sasl_bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{node.ports.sasl}" for node in self.nodes)

    @property
    def connection(self) -> KafkaConnection:
        """How a client reaches the PLAINTEXT listener: no login."""
        return KafkaConnection(self.bootstrap)

    @property
    def sasl_connection(self) -> KafkaConnection:
        """How a client reaches the SASL_SSL listener (with `sasl`), from client.json."""
        return kraft.sasl_connection(self.client_file)

    @property
    def client_file(self) -> Path:
        """JSON with the bootstrap addresses and, with `sasl`, credentials and CA file."""
        return self.data_dir / datadir.CLIENT_FILE

    @property
    def node_pids(self) -> list[int | None]:
        return [node.proc.pid if node.running and node.proc else None for node in self.nodes]

    @property
    def running(self) -> bool:
        return any(node.running for node in self.nodes)

    def start(self) -> None:
        """Format the data dir on first use, start every node that is not running and return
        once all of them serve clients (see module docstring); BrokerError with the failing
        node's log tail otherwise."""
        started = time.monotonic()
        deadline = started + self.timeout
        jvm = self._jvm()
        if self._lock_file is None:
            self._lock_file = datadir.lock(self.data_dir)
        state = self._prepare(jvm)
        kraft.write_client_file(
            self.client_file,
            self.bootstrap,
            self.sasl_bootstrap if self.sasl else None,
            state.get("password", ""),
            self.data_dir / "tls" / "ca.pem",
        )
        for node in self.nodes:
            if not node.running:
                # No archive yet for this java and these jars: one node dumps it at its stop.
                dump = not jvm.archive.exists() and not any(n.dump for n in self.nodes)
                self._spawn(node, jvm, dump=dump)
        self._wait_ready(deadline)
        self.started_in = time.monotonic() - started

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM to every node at once (controlled shutdown), then wait for all."""
        for node in self.nodes:
            if node.running and node.proc is not None:
                node.proc.send_signal(signal.SIGTERM)
        for node in self.nodes:
            self._wait_stopped(node, timeout)
        self._unlock()

    def kill(self) -> None:
        """SIGKILL every node: a crash of the whole cluster."""
        for node in self.nodes:
            self.kill_node(node.index)
        self._unlock()

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop_node(self, index: int, timeout: float = 60.0) -> None:
        node = self.nodes[index]
        if node.running and node.proc is not None:
            node.proc.send_signal(signal.SIGTERM)
        self._wait_stopped(node, timeout)

    def kill_node(self, index: int) -> None:
        node = self.nodes[index]
        if node.proc is None:
            return
        if node.proc.poll() is None:
            node.proc.kill()
        self._reap(node)

    def start_node(self, index: int) -> None:
        """Start one stopped node and wait until the running nodes all list it again."""
        node = self.nodes[index]
        if node.running:
            msg = f"Kafka node {index} already running (pid {node.proc and node.proc.pid})"
            raise BrokerError(msg)
        self._spawn(node, self._jvm(), dump=False)
        self._wait_ready(time.monotonic() + self.timeout)

    def metadata(self, topics: list[str] | None = None) -> Metadata:
        """Cluster metadata as the first running node that answers sees it."""
        errors = []
        for node in self.nodes:
            if node.running:
                try:
                    return metadata(node.ports.client, topics)
                except (OSError, BrokerError) as exc:
                    errors.append(f"node {node.index}: {exc}")
        msg = "no running Kafka node answered: " + ("; ".join(errors) or "none is running")
        raise BrokerError(msg)

    def partition(self, topic: str, partition: int = 0, timeout: float = 30.0) -> Partition:
        """Leader, replicas and ISR of a partition, once it has a leader (e.g. after a kill,
        once the controller has fenced the dead node and elected another)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.metadata([topic]).topics.get(topic, {}).get(partition)
            if found is not None and found.leader >= 0:
                return found
            if time.monotonic() > deadline:
                msg = f"{topic}-{partition} has no leader after {timeout} s: {found}"
                raise BrokerError(msg)
            time.sleep(0.1)

    def leader(self, topic: str, partition: int = 0) -> int:
        """Index of the node leading `topic`-`partition` (node index == Kafka node.id)."""
        return self.partition(topic, partition).leader

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

    # ------------------------------------------------------------------ internals

    def _jvm(self) -> Jvm:
        if self._located is None:  # once: finding java runs `java -version` (~0.1 s)
            self._located = locate(self._java, self._lib)
        return self._located

    def _unlock(self) -> None:
        if self._lock_file is not None and not self.running:
            self._lock_file.close()  # closing releases the flock
            self._lock_file = None

    def _prepare(self, jvm: Jvm) -> dict[str, Any]:
        """Configs written for this start's ports; the log dirs formatted if not yet."""
        (self.data_dir / "log4j2.properties").write_text(kraft.LOG4J)
        state = datadir.read_state(self.data_dir, len(self.nodes), self.sasl)
        fresh = state is None
        if state is None:
            state = datadir.new_state(len(self.nodes), self.sasl)
        self._write_configs(state.get("password"))
        if fresh:
            self._format(jvm, state)
            datadir.write_state(self.data_dir, state)
        return state

    def _format(self, jvm: Jvm, state: dict[str, Any]) -> None:
        scram = []
        if self.sasl:  # stored in the bootstrap metadata, so the user exists from the start
            user = f"name={kraft.SASL_USER},password={state['password']}"
            for mechanism in kraft.SCRAM_MECHANISMS:
                scram += ["--add-scram", f"{mechanism}=[{user}]"]
        procs = []
        for node in self.nodes:
            shutil.rmtree(node.directory / "data", ignore_errors=True)
            props = self._properties(node, "format.log")
            argv = [*jvm.command("128m", props, None), "kafka.tools.StorageTool"]
            argv += ["format", "-t", state["cluster_id"], "-c", str(node.config), *scram]
            procs.append(
                (node, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
            )
        failures = []
        for node, proc in procs:  # side by side: each is a JVM start of ~1.5 s
            try:
                output, _ = proc.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired as exc:
                for _, other in procs:
                    other.kill()
                    other.communicate()
                msg = f"formatting node {node.index}'s log dir took over {self.timeout} s"
                raise BrokerError(msg) from exc
            if proc.returncode != 0:
                text = output.decode(errors="replace")[-2000:]
                failures.append(f"node {node.index}: exit {proc.returncode}\n{text}")
        if failures:
            msg = "formatting the Kafka log dirs failed: " + "\n".join(failures)
            raise BrokerError(msg)

    def _properties(self, node: _Node, log: str) -> dict[str, str]:
        """System properties of a node's JVMs: where log4j2 writes (node dir, `log`)."""
        return {
            "log4j2.configurationFile": str(self.data_dir / "log4j2.properties"),
            "kafka.logs.dir": str(node.directory),
            "siyu.kafka.log": log,
        }

    def _write_configs(self, password: str | None) -> None:
        keystore = tls.make_certificates(self.data_dir / "tls").keystore if self.sasl else None
        voters = ",".join(f"{n.index}@127.0.0.1:{n.ports.controller}" for n in self.nodes)
        for node in self.nodes:
            props = kraft.node_properties(
                node.index,
                node.ports,
                voters=voters,
                nodes=len(self.nodes),
                log_dir=node.directory / "data",
                keystore=keystore,
                password=password,
            )
            kraft.write_properties(node.config, props)

    def _spawn(self, node: _Node, jvm: Jvm, *, dump: bool) -> None:
        if node.proc is not None:  # it died on its own: collect it before replacing it
            self._reap(node)
        if node.output is None:  # append: a restarted node's output follows the last one's
            node.output = (node.directory / "stdout.log").open("ab")
        if dump:  # a name of its own: another launcher may be dumping one right now
            node.dump = jvm.archive.with_suffix(f".{os.getpid()}-{node.index}.tmp")
            node.dump.parent.mkdir(parents=True, exist_ok=True)
        props = self._properties(node, "server.log")
        argv = [*jvm.command(self.heap, props, node.dump), "kafka.Kafka"]
        # Own session: Ctrl-C in a terminal reaches only us, and we stop the nodes in order.
        node.proc = subprocess.Popen(
            [*argv, str(node.config)],
            stdin=subprocess.DEVNULL,
            stdout=node.output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _wait_ready(self, deadline: float) -> None:
        """Until every running node lists every running node, or raise with a log tail."""
        last = "no attempt made"
        while time.monotonic() < deadline:
            expected = {node.index for node in self.nodes if node.running}
            for node in self.nodes:
                if node.proc is not None and node.proc.poll() is not None:
                    self._fail(node, f"exited with code {node.proc.returncode}")
            pending = []
            for node in self.nodes:
                if not node.running:
                    continue
                try:
                    seen = metadata(node.ports.client, [])
                except (OSError, BrokerError) as exc:  # not listening or not answering yet
                    pending.append(f"node {node.index}: {type(exc).__name__}: {exc}")
                    continue
                missing = expected - set(seen.brokers)
                if missing or seen.controller_id < 0:
                    pending.append(f"node {node.index} lists {sorted(seen.brokers)}")
            if not pending:
                return
            last = "; ".join(pending)
            time.sleep(0.1)
        stuck = next((n for n in self.nodes if n.running), self.nodes[0])
        self._fail(stuck, f"not ready after {self.timeout} s ({last})")

    def _fail(self, node: _Node, why: str) -> None:
        self.kill()  # a half-started cluster is of no use, and would hold its ports
        msg = f"Kafka node {node.index} did not start on 127.0.0.1:{node.ports.client}: {why}\n"
        raise BrokerError(msg + node.log_tail())

    def _wait_stopped(self, node: _Node, timeout: float) -> None:
        if node.proc is None:
            return
        try:
            node.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            self.kill_node(node.index)
            msg = f"Kafka node {node.index} ignored SIGTERM for {timeout} s; killed"
            raise BrokerError(msg) from exc
        if node.dump is not None and node.dump.exists():
            # The JVM writes the archive as it exits: a finished process left a whole one.
            node.dump.replace(self._jvm().archive)
            node.dump = None
        self._reap(node)

    @staticmethod
    def _reap(node: _Node) -> None:
        if node.proc is not None:
            try:
                node.proc.wait(timeout=10)
            except subprocess.TimeoutExpired as exc:
                msg = f"Kafka node {node.index} (pid {node.proc.pid}) not gone 10 s after exit"
                raise BrokerError(msg) from exc
        node.proc = None
        if node.dump is not None:  # killed: no archive, or a partial one
            node.dump.unlink(missing_ok=True)
            node.dump = None
        if node.output is not None:
            node.output.close()
            node.output = None
