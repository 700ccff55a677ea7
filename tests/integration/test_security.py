"""Kafka security end to end, on Apache Kafka's SASL_SSL listener (SCRAM-SHA-512, its CA
made at start): with the right password `siyu-stream topics create` and a worker process
events as on a plaintext broker; with a wrong password or a CA that did not sign the
broker's certificate, each command exits non-zero within seconds saying why, where an
aiokafka client alone would log the reason and raise "Unable to bootstrap". No output
shows the password.

Commands run as child processes, configured by SIYU_* variables as in production.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import live
import pytest
from live import Traffic, WorkerProcess, actions_until, difference, quiesce, replay_ids

from siyu_stream.kafka import tls
from siyu_stream.kafka.apache import KafkaCluster
from siyu_stream.settings import Settings
from siyu_stream.topology import Topology

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent.parent
ALL = {0, 1, 2, 3}
REFUSED_WITHIN = 30.0
"""A refused login must end the command, not leave it retrying: a command still running
after this long is killed and the test fails (a bound against a hang, not a speed claim;
the measured times are in docs/operations.md)."""
COMMANDS = {
    "worker": ["worker"],
    "topics": ["topics", "create"],
    "simulate": ["simulate", "--events", "5"],
    "backtest": ["backtest", "--from-kafka", "--rules", str(ROOT / "rules.example.toml")],
}


def secured(cluster: KafkaCluster, **overrides: Any) -> Settings:
    """A test worker group's settings on the SASL_SSL listener, with its login."""
    c = cluster.sasl_connection
    login = {
        "security_protocol": c.security_protocol,
        "sasl_mechanism": c.sasl_mechanism,
        "sasl_username": c.sasl_username,
        "sasl_password": c.sasl_password,
        "ssl_cafile": c.ssl_cafile,
    }
    return live.settings_for(c.bootstrap, **(login | overrides))


def run(
    settings: Settings, tmp: Path, args: list[str], timeout: float = live.GIVE_UP_AFTER
) -> tuple[int, str, float]:
    """`siyu-stream ARGS` with the settings in its environment: exit code, output, seconds."""
    env = WorkerProcess(settings, tmp / "unused.log").env()
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "siyu_stream.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,  # a hang fails the test instead of blocking it
        check=False,
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


def events(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Joins, and orders after them: per customer, orders crossing the spend tiers (gifts)
    and a third order."""
    joins: list[dict[str, Any]] = []
    orders: list[dict[str, Any]] = []
    for i in range(n):
        c = f"secure{i}"
        join = {"type": "join", "action": "join", "carrier": "wecom", "source": "package_card"}
        joins.append({"event_id": f"{c}-j", "customer_id": c, "staff_id": "s1", **join})
        for k, amount in enumerate(["4800.00", "6000", "10"]):
            order = {"type": "order", "order_id": f"{c}-o{k}", "status": "paid"}
            order |= {"amount": amount, "channel": "tmall"}
            orders.append({"event_id": f"{c}-o{k}", "customer_id": c, **order})
    return joins, orders


async def test_the_right_password_creates_topics_and_runs_a_worker_end_to_end(
    kafka_sasl: KafkaCluster, tmp_path: Path
) -> None:
    settings = secured(kafka_sasl)
    password = settings.sasl_password
    assert password
    code, out, _ = run(settings, tmp_path, COMMANDS["topics"])
    specs = Topology(settings).specs()
    assert code == 0, out
    assert f"created {len(specs)} of {len(specs)} topics" in out
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    worker.wait_owns(ALL)
    joins, orders = events(8)
    async with Traffic(settings) as traffic:  # the test's own clients log in too
        await traffic.send(joins)
        # Kafka orders records per topic partition, not across topics: the joins first
        await quiesce(settings)
        await traffic.send(orders)
    expected = replay_ids(traffic.sent)
    records = await actions_until(settings, set(expected))
    assert worker.terminate() == 0
    got = {r["action_id"]: r for r in records}
    assert set(got) == set(expected), difference(got, expected)
    assert any(a["kind"] == "gift" for a in expected.values())  # spend tiers crossed
    log = worker.log.read_text()
    assert f"on {settings.broker} (SASL_SSL SCRAM-SHA-512 as siyu)" in log  # the start line
    assert password not in log and password not in out


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_the_other_mechanisms_managed_services_offer_log_in_or_refuse_clearly(
    kafka_sasl: KafkaCluster, tmp_path: Path, mechanism: str
) -> None:
    """Alibaba Cloud and CKafka offer PLAIN, MSK and Confluent SCRAM or PLAIN: each
    mechanism's settings reach the broker (the listener accepts all three)."""
    settings = secured(kafka_sasl, sasl_mechanism=mechanism)
    code, out, _ = run(settings, tmp_path, COMMANDS["topics"])
    assert code == 0, out
    specs = Topology(settings).specs()
    assert f"created {len(specs)} of {len(specs)} topics" in out
    right = settings.sasl_password
    assert right
    wrong = dataclasses.replace(settings, sasl_password="not-" + right[::-1])
    code, out, _ = run(wrong, tmp_path, COMMANDS["topics"], REFUSED_WITHIN)
    assert code == 2, out
    assert f"authentication failed for user siyu on {settings.broker} (SASL {mechanism}): " in out
    assert right not in out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_wrong_password_ends_each_command_within_seconds(
    kafka_sasl: KafkaCluster, tmp_path: Path, command: str
) -> None:
    right = kafka_sasl.sasl_connection.sasl_password
    assert right
    wrong = "not-" + right[::-1]
    settings = secured(kafka_sasl, sasl_password=wrong)
    code, out, seconds = run(settings, tmp_path, COMMANDS[command], REFUSED_WITHIN)
    print(f"{command}, wrong password: exit {code} after {seconds:.2f} s")
    assert code == 2, out
    address = settings.broker
    assert (
        f"siyu-stream {COMMANDS[command][0]}: authentication failed for user siyu on "
        f"{address} (SASL SCRAM-SHA-512): "
    ) in out
    assert "Traceback" not in out
    assert wrong not in out and right not in out


@pytest.mark.parametrize("command", ["worker", "topics"])
def test_an_untrusted_ca_ends_the_command_within_seconds(
    kafka_sasl: KafkaCluster, tmp_path: Path, command: str
) -> None:
    other = tls.make_certificates(tmp_path / "other-ca").ca  # a CA of its own
    settings = secured(kafka_sasl, ssl_cafile=other)
    code, out, seconds = run(settings, tmp_path, COMMANDS[command], REFUSED_WITHIN)
    print(f"{command}, untrusted CA: exit {code} after {seconds:.2f} s")
    assert code == 2, out
    assert f"the TLS certificate of {settings.broker} is not trusted" in out
    assert f"check SIYU_SSL_CAFILE ({other})" in out
    assert settings.sasl_password and settings.sasl_password not in out


def test_a_plaintext_client_on_the_sasl_ssl_listener_is_told_so(
    kafka_sasl: KafkaCluster, tmp_path: Path
) -> None:
    settings = dataclasses.replace(
        secured(kafka_sasl),
        security_protocol="PLAINTEXT",
        sasl_username=None,
        sasl_password=None,
        ssl_cafile=None,
    )
    code, out, _ = run(settings, tmp_path, COMMANDS["worker"], REFUSED_WITHIN)
    assert code == 2, out
    assert "SIYU_SECURITY_PROTOCOL=PLAINTEXT" in out


async def test_a_backlog_over_sasl_ssl_is_processed_as_replay_processes_it(
    kafka_sasl: KafkaCluster, tmp_path: Path
) -> None:
    """The backlog test of the live = replay suite, every client logged in over SASL_SSL."""
    settings = dataclasses.replace(secured(kafka_sasl), max_task_idle_ms=60_000)
    traffic = await live.backlog(settings, events=2_000, hours=3)
    expected = live.replayed(traffic.sent, tmp_path)
    records = await live.run_to_the_end(settings, expected, tmp_path / "worker.log")
    live.assert_live_equals_replay(records, expected, once=True)
    log = (tmp_path / "worker.log").read_text()
    assert "SASL_SSL SCRAM-SHA-512 as siyu" in log  # it did log in, not fall back
    assert settings.sasl_password and settings.sasl_password not in log
