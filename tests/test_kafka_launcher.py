"""The Kafka launcher's pieces that need no JVM: Java detection, engine choice, node
settings, data dir bookkeeping, the certificates, the stop rule (on stand-in processes).
The launcher itself runs in tests/integration/test_kafka_broker.py."""

from __future__ import annotations

import base64
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from siyu_stream.core.errors import BrokerError
from siyu_stream.kafka import datadir, jvm, kraft, node, serve, tls


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "25" 2025-09-16', 25),
        ('java version "1.8.0_392"', 8),
        ("no version here", None),
    ],
)
def test_java_major_version(text: str, expected: int | None) -> None:
    assert jvm.major(text) == expected


def test_engine_defaults_to_kafka_only_where_java_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve, "find_java", lambda: None)
    assert serve.pick_engine(None, nodes=1, sasl=False) == "embedded"
    monkeypatch.setattr(serve, "find_java", lambda: (Path("java"), 'version "17"'))
    assert serve.pick_engine(None, nodes=1, sasl=False) == "kafka"
    assert serve.pick_engine("embedded", nodes=1, sasl=False) == "embedded"
    with pytest.raises(BrokerError, match="need --engine kafka"):
        serve.pick_engine("embedded", nodes=3, sasl=False)


def test_replication_follows_the_node_count(tmp_path: Path) -> None:
    ports = kraft.Ports(9092, 9093, 9094)
    one = kraft.node_properties(0, ports, voters="0@x", nodes=1, log_dir=tmp_path, certs=None)
    three = kraft.node_properties(1, ports, voters="v", nodes=3, log_dir=tmp_path, certs=None)
    for props, replicas, min_isr in [(one, "1", "1"), (three, "3", "2")]:
        assert props["default.replication.factor"] == replicas
        assert props["offsets.topic.replication.factor"] == replicas
        assert props["transaction.state.log.replication.factor"] == replicas
        assert props["min.insync.replicas"] == min_isr
        assert props["transaction.state.log.min.isr"] == min_isr
    assert "SASL_SSL" not in one["listeners"]


def test_sasl_adds_a_listener_with_a_pem_keystore(tmp_path: Path) -> None:
    ports = kraft.Ports(9092, 9093, 9094, 9095)
    certs = tls.certificates(tmp_path)
    props = kraft.node_properties(
        0, ports, voters="v", nodes=1, log_dir=tmp_path, certs=certs, password="pw"
    )
    assert "SASL_SSL://127.0.0.1:9094" in props["advertised.listeners"]
    assert "SSL://127.0.0.1:9095" in props["advertised.listeners"]
    assert props["listener.name.ssl.ssl.client.auth"] == "required"
    assert props["listener.name.ssl.ssl.truststore.location"] == str(certs.ca)
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN"
    assert 'user_siyu="pw"' in props["listener.name.sasl_ssl.plain.sasl.jaas.config"]
    assert props["listener.name.sasl_ssl.ssl.keystore.location"] == str(certs.keystore)
    assert props["inter.broker.listener.name"] == "PLAINTEXT"


def test_a_data_dir_serves_one_cluster_shape(tmp_path: Path) -> None:
    assert datadir.read_state(tmp_path, 1, sasl=False) is None
    state = datadir.new_state(3, sasl=True)
    assert len(state["cluster_id"]) == 22 and state["password"]
    datadir.write_state(tmp_path, state)
    assert datadir.read_state(tmp_path, 3, sasl=True) == state
    with pytest.raises(BrokerError, match="holds a cluster of 3 node"):
        datadir.read_state(tmp_path, 1, sasl=True)


def test_a_second_launcher_on_a_data_dir_is_refused(tmp_path: Path) -> None:
    held = datadir.lock(tmp_path)
    try:
        with pytest.raises(BrokerError, match="in use by another Kafka launcher"):
            datadir.lock(tmp_path)
    finally:
        held.close()
    datadir.lock(tmp_path).close()  # free again once closed


def test_certificates_verify_for_127_0_0_1(tmp_path: Path) -> None:
    certs = tls.make_certificates(tmp_path)
    assert tls.make_certificates(tmp_path) == certs  # made once
    keystore = certs.keystore.read_text()
    assert keystore.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8, as Kafka reads it
    assert keystore.count("BEGIN CERTIFICATE") == 2  # the broker's, then the CA's
    leaf = tmp_path / "broker.pem"
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(certs.ca), "-verify_ip", "127.0.0.1", str(leaf)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    ssl.create_default_context(cafile=str(certs.ca))  # a client can load the CA


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # bytes 0xF8..0xFB encode to a leading "-", which the format command reads as an option
    drawn = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x10" + bytes(15))])
    monkeypatch.setattr(datadir.uuid, "uuid4", lambda: next(drawn))
    cluster_id = datadir.new_cluster_id()
    assert cluster_id == base64.urlsafe_b64encode(b"\x10" + bytes(15)).decode().rstrip("=")


def test_the_jars_are_found_where_named_else_beside_the_source_else_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$SIYU_KAFKA_LIB wins; without it, .kafka/lib of the package's source tree, then of
    the working directory (a checkout whose compiled wheel is installed elsewhere)."""
    named, here = tmp_path / "named", tmp_path / "checkout"
    for lib in (named, here / ".kafka" / "lib"):
        lib.mkdir(parents=True)
        (lib / "kafka_2.13-4.4.0.jar").touch()
    source = Path(jvm.__file__).resolve().parents[2] / ".kafka" / "lib"
    monkeypatch.chdir(here)
    monkeypatch.setenv(jvm.LIB_ENV, str(named))
    assert jvm.jars_dir() == named
    monkeypatch.delenv(jvm.LIB_ENV)
    expected = source if any(source.glob("kafka_2.13-*.jar")) else here / ".kafka" / "lib"
    assert jvm.jars_dir() == expected
    monkeypatch.setenv(jvm.LIB_ENV, str(tmp_path / "empty"))
    with pytest.raises(BrokerError, match=r"no Kafka jars in .*empty"):
        jvm.jars_dir()


# ---------------------------------------------------------------- the stop rule

READY = "print('ready', flush=True); import time; time.sleep(60)"
DEAF = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); " + READY
"""A stand-in for a node that waits in its shutdown: it ignores SIGTERM (SIGQUIT ends it)."""
OBEYS = READY


def stand_ins(tmp_path: Path, *codes: str) -> list[node.Node]:
    """Running processes in the launcher's `Node`s, their output in node-i/stdout.log."""
    nodes = []
    for i, code in enumerate(codes):
        one = node.Node(i, tmp_path / f"node-{i}", kraft.Ports(0, 0, 0, 0))
        one.directory.mkdir()
        one.output = (one.directory / "stdout.log").open("ab")
        one.proc = subprocess.Popen([sys.executable, "-c", code], stdout=one.output)
        nodes.append(one)
    deadline = time.monotonic() + 60  # a SIGTERM before DEAF's handler would end it
    for one in nodes:
        log = one.directory / "stdout.log"
        while b"ready" not in log.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert one.running
    return nodes


def test_a_node_outliving_the_quorum_is_killed_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node, "QUORUM_GRACE", 0.2)
    monkeypatch.setattr(node, "DUMP_WAIT", 0.5)
    nodes = stand_ins(tmp_path, DEAF, OBEYS, OBEYS)
    for one in nodes:
        one.terminate()
    assert node.wait_stopped(nodes, nodes, timeout=30.0, archive=None) == [0]
    assert all(one.proc is None and one.output is None for one in nodes)


def test_a_node_ignoring_sigterm_while_the_quorum_stands_is_an_error(tmp_path: Path) -> None:
    """The error names the stuck node only; a node that did exit meanwhile is collected
    all the same (its process reaped, its output closed)."""
    nodes = stand_ins(tmp_path, DEAF, OBEYS, OBEYS)
    stopping = nodes[:2]
    for one in stopping:
        one.terminate()
    with pytest.raises(BrokerError, match=r"node\(s\) 0 ignored SIGTERM for 2.0 s; killed"):
        node.wait_stopped(stopping, nodes, timeout=2.0, archive=None)
    assert all(one.proc is None and one.output is None for one in stopping)
    assert nodes[2].running  # never told to stop
    nodes[2].kill()
