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
- Three nodes stop slower: the last node's raft client spends ~5 s of its graceful
  resignation waiting for peers that are already gone.
- Stopping three nodes at once is a race Kafka does not guard: each broker's controlled
  shutdown needs the active controller's approval, and a broker that asks after the other
  nodes' controllers exited waits for one up to 5 minutes (twice in the last six full
  test runs; one at a time, the last node always does). `stop` kills such a node once the
  quorum has been gone QUORUM_GRACE s, after a thread dump, and names it (`node`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
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
from siyu_stream.kafka.node import Node, wait_stopped
from siyu_stream.settings import KafkaConnection


def _free_ports(count: int) -> list[int]:
    """`count` TCP ports on 127.0.0.1 that were free a moment ago, all different: each is
    held while the next is picked (the caller may still race others for them)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


class KafkaCluster:
    """`nodes` Kafka processes on 127.0.0.1, node i (its node.id) keeping its data in
    `data_dir`/node-i; with `sasl`, a SASL_SSL listener (SCRAM and PLAIN) and a mutual-TLS
    one beside PLAINTEXT."""

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
        free = iter(_free_ports(4 * nodes))
        self.nodes = [
            Node(
                i,
                self.data_dir / f"node-{i}",
                kraft.Ports(
                    port if i == 0 and port else next(free), next(free), next(free), next(free)
                ),
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
    def ssl_bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{node.ports.ssl}" for node in self.nodes)

    @property
    def connection(self) -> KafkaConnection:
        """How a client reaches the PLAINTEXT listener: no login."""
        return KafkaConnection(self.bootstrap)

    @property
    def sasl_connection(self) -> KafkaConnection:
        """How a client reaches the SASL_SSL listener (with `sasl`), from client.json."""
        return kraft.sasl_connection(self.client_file)

    @property
    def ssl_connection(self) -> KafkaConnection:
        """How a client reaches the mutual-TLS listener (with `sasl`), from client.json."""
        return kraft.ssl_connection(self.client_file)

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
            (self.sasl_bootstrap, self.ssl_bootstrap) if self.sasl else None,
            state.get("password", ""),
            tls.certificates(self.data_dir / "tls"),
        )
        for node in self.nodes:
            if not node.running:
                # No archive yet for this java and these jars: one node dumps it at its stop.
                dump = not jvm.archive.exists() and not any(n.dump for n in self.nodes)
                self._spawn(node, jvm, dump=dump)
        self._wait_ready(deadline)
        self.started_in = time.monotonic() - started

    def stop(self, timeout: float = 60.0) -> list[int]:
        """SIGTERM to every node at once (controlled shutdown), then wait for all; the
        indexes of the nodes that had to be killed because they outlived the quorum."""
        for node in self.nodes:
            node.terminate()
        killed = wait_stopped(self.nodes, self.nodes, timeout, self._archive)
        self._unlock()
        return killed

    def kill(self) -> None:
        """SIGKILL every node: a crash of the whole cluster."""
        for node in self.nodes:
            node.kill()
        self._unlock()

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop_node(self, index: int, timeout: float = 60.0) -> list[int]:
        """SIGTERM to one node, then wait for it; `[index]` if it had to be killed because
        the quorum was gone (see `stop`), else `[]`."""
        node = self.nodes[index]
        node.terminate()
        return wait_stopped([node], self.nodes, timeout, self._archive)

    def kill_node(self, index: int) -> None:
        self.nodes[index].kill()

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

    @property
    def _archive(self) -> Path | None:
        """Where a node's class-data archive goes; none before a node was ever spawned."""
        return self._located.archive if self._located is not None else None

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
        self._write_configs(state.get("password", ""))
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

    def _properties(self, node: Node, log: str) -> dict[str, str]:
        """System properties of a node's JVMs: where log4j2 writes (node dir, `log`)."""
        return {
            "log4j2.configurationFile": str(self.data_dir / "log4j2.properties"),
            "kafka.logs.dir": str(node.directory),
            "siyu.kafka.log": log,
        }

    def _write_configs(self, password: str) -> None:
        certs = tls.make_certificates(self.data_dir / "tls") if self.sasl else None
        voters = ",".join(f"{n.index}@127.0.0.1:{n.ports.controller}" for n in self.nodes)
        for node in self.nodes:
            props = kraft.node_properties(
                node.index,
                node.ports,
                voters=voters,
                nodes=len(self.nodes),
                log_dir=node.directory / "data",
                certs=certs,
                password=password,
            )
            kraft.write_properties(node.config, props)

    def _spawn(self, node: Node, jvm: Jvm, *, dump: bool) -> None:
        if node.proc is not None:  # it died on its own: collect it before replacing it
            node.reap()
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

    def _fail(self, node: Node, why: str) -> None:
        self.kill()  # a half-started cluster is of no use, and would hold its ports
        msg = f"Kafka node {node.index} did not start on 127.0.0.1:{node.ports.client}: {why}\n"
        raise BrokerError(msg + node.log_tail())
