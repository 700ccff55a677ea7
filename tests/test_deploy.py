"""Deploy files: docker-compose.yml, Prometheus rules, the Grafana dashboard, Kubernetes manifests.

Offline checks with the real tools: `docker-compose config` (Debian `docker-compose`),
`promtool` (Debian `prometheus`) and the Kubernetes JSON schemas bundled by
kubernetes-validate. `make tools` (part of `make test`, which `.ci/run` is) installs the
Debian packages; a missing tool fails the test with the package to install. The module is
marked `deploy` so that `make unit` runs without them. Every metric the dashboard and the
alerts query must be one the exporter (`siyu_stream.observe.metrics`) actually shows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from siyu_stream.kafka import kraft
from siyu_stream.notify.metrics import metric_names as notify_metric_names
from siyu_stream.observe.metrics import metric_names

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "siyu-stream.json"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"
MANIFESTS = sorted(K8S.glob("*.yml"))
KUBERNETES_VERSION = "1.37"
JOB = "siyu-stream"

WORKER_ENV = {
    "SIYU_BROKER": "kafka:9092",
    "SIYU_GUARANTEE": "exactly_once",
    "SIYU_STORE": "rocksdb://",
    "SIYU_DATA_DIR": "/data",
    "SIYU_REPLICATION": "1",
    "SIYU_WEB_HOST": "0.0.0.0",
    "SIYU_WEB_PORT": "6066",
    "SIYU_API_TOKEN": "change-me",
    "SIYU_RULES": "/etc/siyu/rules.toml",
}


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` not found: install the Debian package `{package}` "
            f"(apt-get install {package}; .ci/run installs it)"
        )
    return path


def _run(*argv: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


# ---------------------------------------------------------------- docker-compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """`docker-compose config` of the file with every profile, as the tool resolved it."""
    binary = _tool("docker-compose", "docker-compose")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "SIYU_"))}
    env.pop("GRAFANA_ADMIN_PASSWORD", None)
    _run(binary, "-f", str(COMPOSE), "config", "--quiet", env=env)
    out = _run(binary, "-f", str(COMPOSE), "--profile", "sim", "config", env=env)
    config: dict[str, Any] = yaml.safe_load(out)
    return config


# Server settings the tests' Kafka (siyu_stream/kafka/kraft.py) and docker-compose share;
# the rest (listeners, ids, paths) name the machine they run on.
SHARED_SERVER_SETTINGS = [
    "process.roles",
    "default.replication.factor",
    "min.insync.replicas",
    "offsets.topic.replication.factor",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "share.coordinator.state.topic.replication.factor",
    "share.coordinator.state.topic.min.isr",
    "offsets.topic.num.partitions",
    "transaction.state.log.num.partitions",
    "group.initial.rebalance.delay.ms",
    "group.min.session.timeout.ms",
]


def test_compose_runs_the_kafka_the_tests_run(compose: dict[str, Any]) -> None:
    pom = (ROOT / "deploy" / "kafka" / "pom.xml").read_text()
    version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert version is not None
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{version.group(1)}"
    ports = kraft.Ports(9092, 9093, 9094)
    tests = kraft.node_properties(0, ports, voters="0@x", nodes=1, log_dir=ROOT, certs=None)
    env = kafka["environment"]
    for key in SHARED_SERVER_SETTINGS:
        assert env["KAFKA_" + key.upper().replace(".", "_")] == tests[key], key


def test_compose_has_every_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {
        "kafka",
        "topics",
        "worker-1",
        "worker-2",
        "simulator",
        "prometheus",
        "grafana",
    }
    assert services["kafka"]["image"].startswith("apache/kafka:")
    kafka_env = services["kafka"]["environment"]
    assert kafka_env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    assert kafka_env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert services["topics"]["command"] == ["topics", "create"]
    assert services["simulator"]["profiles"] == ["sim"]
    assert services["simulator"]["command"] == [
        "simulate",
        *("--customers", "5000", "--rate", "200"),
    ]
    for name in ("topics", "simulator", "worker-1", "worker-2"):
        assert services[name]["build"]["context"] == str(ROOT)
        assert services[name]["environment"]["SIYU_BROKER"] == "kafka:9092"
    assert (ROOT / "Dockerfile").is_file()


def test_compose_workers(compose: dict[str, Any]) -> None:
    volumes = set()
    for name in ("worker-1", "worker-2"):
        worker = compose["services"][name]
        assert worker["command"] == ["worker"]
        env = worker["environment"]
        assert {k: env.get(k) for k in WORKER_ENV} == WORKER_ENV
        assert env["SIYU_WEB_URL"] == f"http://{name}:6066"  # API routing between workers
        assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        mounts = {m.split(":")[1]: m.split(":")[0] for m in worker["volumes"]}
        assert mounts["/etc/siyu/rules.toml"] == str(ROOT / "rules.example.toml")
        volumes.add(mounts["/data"])
    assert len(volumes) == 2
    assert volumes <= set(compose["volumes"])  # a named volume each


def test_compose_bind_mounts_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("/"):
                assert Path(source).exists(), f"{name}: {source} is not in the repository"


def test_compose_prometheus_scrapes_both_workers(compose: dict[str, Any]) -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == JOB
    (static,) = job["static_configs"]
    assert sorted(static["targets"]) == ["worker-1:6066", "worker-2:6066"]
    mounts = dict(m.split(":")[:2] for m in compose["services"]["prometheus"]["volumes"])
    assert mounts[str(PROMETHEUS)] == "/etc/prometheus/prometheus.yml"
    # rule_files are relative to the config file: alerts.yml must sit beside it
    assert config["rule_files"] == ["alerts.yml"]
    assert mounts[str(ALERTS)] == "/etc/prometheus/alerts.yml"


def test_compose_grafana_provisions_the_dashboard(compose: dict[str, Any]) -> None:
    mounts = dict(m.split(":")[:2] for m in compose["services"]["grafana"]["volumes"])
    assert mounts[str(PROVISIONING)] == "/etc/grafana/provisioning"
    dashboard_path = Path(mounts[str(DASHBOARD)])
    (provider,) = yaml.safe_load((PROVISIONING / "dashboards" / "siyu-stream.yml").read_text())[
        "providers"
    ]
    assert dashboard_path.parent == Path(provider["options"]["path"])
    (datasource,) = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    variables = {v["name"]: v for v in json.loads(DASHBOARD.read_text())["templating"]["list"]}
    assert variables["datasource"]["current"]["value"] == datasource["uid"]


# ---------------------------------------------------------------- Prometheus


def test_alert_rules_pass_promtool() -> None:
    promtool = _tool("promtool", "prometheus")
    out = _run(promtool, "check", "rules", str(ALERTS))
    assert "SUCCESS" in out


def test_compose_prometheus_config_passes_promtool() -> None:
    promtool = _tool("promtool", "prometheus")
    out = _run(promtool, "check", "config", str(PROMETHEUS))
    assert "1 rule files found" in out


# Synthetic series for `promtool test rules`: each alert fires on its symptom, and a healthy
# pair of workers raises nothing. Annotations are stripped from the copy under test (their
# templates are checked by `promtool check rules`), so the cases list labels only.
_LAG_0 = 'siyu_consumer_lag_records{instance="w1", topic="siyu.orders", partition="0"}'
_STREAM_TIME_LAG_0 = 'siyu_stream_time_lag_seconds{job="siyu-stream", instance="w1", partition="0"}'
_HEALTHY = [
    {"series": 'up{job="siyu-stream", instance="w1"}', "values": "1x60"},
    {"series": 'up{job="siyu-stream", instance="w2"}', "values": "1x60"},
    {"series": 'siyu_partitions_owned{job="siyu-stream", instance="w1"}', "values": "2x60"},
    {"series": 'siyu_partitions_owned{job="siyu-stream", instance="w2"}', "values": "2x60"},
    {"series": _LAG_0, "values": "50x60"},
    # partition 0 is live (records waiting, stream time seconds behind); partition 1 is idle:
    # caught up, no traffic, so its stream time falls a minute further behind every minute
    {"series": _STREAM_TIME_LAG_0, "values": "5x60"},
    {
        "series": 'siyu_stream_time_lag_seconds{job="siyu-stream", instance="w1", partition="1"}',
        "values": "600+60x60",
    },
    {
        "series": 'siyu_consumer_lag_records{instance="w1", topic="siyu.orders", partition="1"}',
        "values": "0x60",
    },
    {
        "series": 'siyu_events_total{instance="w1", type="order", outcome="ok"}',
        "values": "0+600x60",
    },
    {"series": 'siyu_deadletters_total{instance="w1", topic="siyu.orders"}', "values": "0+1x60"},
    {
        "series": 'siyu_actions_total{instance="w1", kind="reminder", rule="reply_sla"}',
        "values": "0+1x60",
    },
    {
        "series": 'siyu_processing_latency_seconds_bucket{instance="w1", le="0.1"}',
        "values": "0+60x60",
    },
    {
        "series": 'siyu_processing_latency_seconds_bucket{instance="w1", le="10"}',
        "values": "0+60x60",
    },
    {
        "series": 'siyu_processing_latency_seconds_bucket{instance="w1", le="+Inf"}',
        "values": "0+60x60",
    },
    # a notifier whose sink fails now and then but delivers
    {
        "series": 'siyu_notify_attempts_total{instance="n1", sink="crm", result="2xx"}',
        "values": "0+30x60",
    },
    {
        "series": 'siyu_notify_attempts_total{instance="n1", sink="crm", result="5xx"}',
        "values": "0+2x60",
    },
]
_ALERTS = [
    "SiyuWorkerDown",
    "SiyuAllWorkersDown",
    "SiyuNoPartitionsOwned",
    "SiyuWorkerIdle",
    "SiyuConsumerLagGrowing",
    "SiyuConsumerLagHigh",
    "SiyuStreamTimeBehind",
    "SiyuDeadLettersHigh",
    "SiyuReplySlaRemindersPilingUp",
    "SiyuProcessingLatencyHigh",
    "SiyuNotifySinkFailing",
]


def _replace(series: list[dict[str, str]], prefix: str, values: str) -> list[dict[str, str]]:
    """`series` with new values for those whose selector starts with `prefix`."""
    return [{**s, "values": values} if s["series"].startswith(prefix) else s for s in series]


def _case(
    series: list[dict[str, str]], at: str, firing: dict[str, list[dict[str, str]]]
) -> dict[str, Any]:
    return {
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [
            {"eval_time": at, "alertname": name, "exp_alerts": firing.get(name, [])}
            for name in _ALERTS
        ],
    }


def _alert_cases() -> list[dict[str, Any]]:
    # the live partition falls behind in records (its stream time stays current)
    growing = _replace(_HEALTHY, _LAG_0, "2000+100x60")
    latency = "siyu_processing_latency_seconds_bucket{"
    slow = _replace(_HEALTHY, latency + 'instance="w1", le="0.1"', "0x60")
    slow = _replace(slow, latency + 'instance="w1", le="10"', "0x60")  # all above 10 s
    return [
        _case(_HEALTHY, "40m", {}),
        _case(
            _replace(_HEALTHY, 'up{job="siyu-stream", instance="w2"', "1 1 0x58"),
            "20m",
            {
                "SiyuWorkerDown": [
                    {"exp_labels": {"severity": "critical", "job": JOB, "instance": "w2"}}
                ]
            },
        ),
        _case(
            _replace(_replace(_HEALTHY, "up{", "0x60"), "siyu_partitions_owned{", "_x60"),
            "20m",
            {
                "SiyuWorkerDown": [
                    {"exp_labels": {"severity": "critical", "job": JOB, "instance": i}}
                    for i in ("w1", "w2")
                ],
                "SiyuAllWorkersDown": [{"exp_labels": {"severity": "critical"}}],
            },
        ),
        _case(
            _replace(_HEALTHY, "siyu_partitions_owned{", "0x60"),
            "20m",
            {
                "SiyuNoPartitionsOwned": [{"exp_labels": {"severity": "critical"}}],
                "SiyuWorkerIdle": [
                    {"exp_labels": {"severity": "warning", "job": JOB, "instance": i}}
                    for i in ("w1", "w2")
                ],
            },
        ),
        _case(
            growing, "30m", {"SiyuConsumerLagGrowing": [{"exp_labels": {"severity": "warning"}}]}
        ),
        _case(
            _replace(growing, _LAG_0, "60000+100x60"),
            "30m",
            {
                "SiyuConsumerLagGrowing": [{"exp_labels": {"severity": "warning"}}],
                "SiyuConsumerLagHigh": [{"exp_labels": {"severity": "critical"}}],
            },
        ),
        _case(
            # the live partition stops advancing in event time with records waiting (its
            # stream-time lag passes 900 s at 16m); the idle partition, further behind but
            # with nothing waiting, still raises nothing
            _replace(_HEALTHY, _STREAM_TIME_LAG_0, "0+60x60"),
            "30m",
            {
                "SiyuStreamTimeBehind": [
                    {
                        "exp_labels": {
                            "severity": "warning",
                            "job": JOB,
                            "instance": "w1",
                            "partition": "0",
                        }
                    }
                ]
            },
        ),
        _case(
            _replace(_HEALTHY, "siyu_deadletters_total{", "0+60x60"),  # 10% of the input
            "30m",
            {"SiyuDeadLettersHigh": [{"exp_labels": {"severity": "warning"}}]},
        ),
        _case(
            _replace(_HEALTHY, "siyu_actions_total{", "0+5x60"),  # 300 an hour
            "50m",
            {"SiyuReplySlaRemindersPilingUp": [{"exp_labels": {"severity": "warning"}}]},
        ),
        _case(
            slow, "30m", {"SiyuProcessingLatencyHigh": [{"exp_labels": {"severity": "warning"}}]}
        ),
        _case(
            # the sink stops succeeding at minute 0: only failures from then on
            _replace(
                _HEALTHY,
                'siyu_notify_attempts_total{instance="n1", sink="crm", result="2xx"',
                "100x60",
            ),
            "30m",
            {"SiyuNotifySinkFailing": [{"exp_labels": {"severity": "critical", "sink": "crm"}}]},
        ),
    ]


def test_alerts_fire_on_their_symptoms_and_not_on_health(tmp_path: Path) -> None:
    promtool = _tool("promtool", "prometheus")
    rules = yaml.safe_load(ALERTS.read_text())
    names = [r["alert"] for g in rules["groups"] for r in g["rules"]]
    assert sorted(names) == sorted(_ALERTS)
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
    tests = {
        "rule_files": ["alerts.yml"],
        "evaluation_interval": "1m",
        "tests": _alert_cases(),
    }
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump(tests))
    done = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_alert_rules_select_the_scrape_job() -> None:
    text = ALERTS.read_text()
    assert f'up{{job="{JOB}"}}' in text
    assert 'siyu_actions_total{rule="reply_sla"}' in text
    assert "deriv(sum(siyu_consumer_lag_records)[10m:])" in text


# ---------------------------------------------------------------- Grafana


def _dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def _panels() -> Iterator[dict[str, Any]]:
    for panel in _dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _dashboard_exprs() -> list[str]:
    return [t["expr"] for p in _panels() for t in p.get("targets", [])]


def test_dashboard_layout() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "siyu-stream"
    panels = list(_panels())
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        area = {
            (x, y)
            for x in range(box["x"], box["x"] + box["w"])
            for y in range(box["y"], box["y"] + box["h"])
        }
        assert not cells & area, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip()
            assert target["datasource"]["uid"] == "${datasource}"


def test_dashboard_has_every_panel_the_design_names() -> None:
    exprs = "\n".join(_dashboard_exprs())
    titles = "\n".join(p["title"] for p in _panels())
    for metric in (
        "siyu_events_total",
        "siyu_consumer_lag_records",
        "siyu_actions_total",
        "siyu_suppressed_total",
        "siyu_deadletters_total",
        "siyu_customers",
        "siyu_buyers_joined_within_7d_total",
        "siyu_buyers_outside_pool_total",
        "siyu_repurchase_gap_days_sum",
        "siyu_repurchase_gap_days_count",
        "siyu_paid_orders_total",
        "siyu_order_value_fen_total",
        "siyu_gift_value_fen_total",
    ):
        assert metric in exprs, metric
    # per partition: one stuck partition would hide in a sum over the others
    for metric in ("siyu_stream_time_lag_seconds", "siyu_timers_pending"):
        assert f'max by (partition) ({metric}{{instance=~"$instance"}})' in exprs, metric
    assert "Stream-time lag by partition" in titles
    for latency in ("siyu_processing_latency_seconds", "siyu_event_time_latency_seconds"):
        for q in ("0.5", "0.99"):
            assert f"histogram_quantile({q}, sum by (le) (rate({latency}_bucket" in exprs
    for dimension in ("layer", "tier", "health"):
        assert f'dimension="{dimension}"' in exprs
    assert 'siyu_buyers{orders="2+"' in exprs and 'siyu_buyers{orders="1+"' in exprs
    assert "sum by (group)" in exprs  # holdout vs treated
    assert "/ 2" in exprs  # campaign cadence: half the cycle
    assert "sum by (member)" in exprs
    assert "加粉率" in titles


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    """Every dashboard query is valid PromQL: promtool parses them as recording rules."""
    promtool = _tool("promtool", "prometheus")
    grafana = {"$__rate_interval": "1m", "$__range": "1h", "$instance": ".*"}
    rules = []
    for n, query in enumerate(_dashboard_exprs()):
        expr = query
        for variable, value in grafana.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, query
        rules.append({"record": f"dashboard:query_{n}", "expr": expr})
    path = tmp_path / "dashboard.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    _run(promtool, "check", "rules", str(path))


# ---------------------------------------------------------------- metric names


_SIYU_METRIC = re.compile(r"\bsiyu_[a-z0-9_]+")
# a name right before a label matcher or a range selector is a metric name
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]")


def _alert_exprs() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_queried_metric_is_exported(source: str) -> None:
    exprs = _dashboard_exprs() if source == "dashboard" else _alert_exprs()
    assert exprs
    exported = metric_names() | notify_metric_names()
    used = {m for e in exprs for m in _SIYU_METRIC.findall(e)}
    used |= {m for e in exprs for m in _SELECTOR.findall(e)}
    unknown = used - exported - {"up"}
    assert not unknown, f"{source} queries metrics /metrics does not show: {sorted(unknown)}"


# ---------------------------------------------------------------- Kubernetes


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _resources() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in MANIFESTS:
        for doc in _documents(path):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_k8s_manifest_validates(path: Path) -> None:
    docs = _documents(path)
    assert docs
    for doc in docs:
        # strict: unknown fields fail too; a kind with no bundled schema raises
        # SchemaNotFoundError (the CLI only warns about it), so nothing passes unchecked
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            location = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{path.name}: {doc['kind']}: {location}: {exc.message}")
        assert doc["metadata"].get("namespace", "siyu") == "siyu"


def test_k8s_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]


def test_k8s_config_maps_are_the_repository_files() -> None:
    resources = _resources()
    rules = resources[("ConfigMap", "siyu-stream-rules")]["data"]["rules.toml"]
    assert rules == (ROOT / "rules.example.toml").read_text()
    alerts = resources[("ConfigMap", "siyu-stream-prometheus-alerts")]["data"]
    assert alerts["siyu-stream-alerts.yml"] == ALERTS.read_text()


def test_k8s_statefulset() -> None:
    resources = _resources()
    sts = resources[("StatefulSet", "siyu-stream")]
    spec = sts["spec"]
    assert spec["replicas"] == 2
    headless = resources[("Service", spec["serviceName"])]
    assert headless["spec"]["clusterIP"] == "None"
    pod = spec["template"]
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "6066"
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    for name in WORKER_ENV:
        assert name in env, name
    for name in ("SIYU_GUARANTEE", "SIYU_STORE", "SIYU_DATA_DIR", "SIYU_WEB_HOST", "SIYU_RULES"):
        assert env[name]["value"] == WORKER_ENV[name]
    secret_ref = env["SIYU_API_TOKEN"]["valueFrom"]["secretKeyRef"]
    secret = resources[("Secret", secret_ref["name"])]
    assert secret_ref["key"] in secret["stringData"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {p["containerPort"] for p in container["ports"]} == {6066}
    assert container["resources"]["requests"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    (claim,) = spec["volumeClaimTemplates"]
    assert mounts["/data"] == claim["metadata"]["name"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    rules_volume = volumes[mounts[str(Path(WORKER_ENV["SIYU_RULES"]).parent)]]
    rules_map = resources[("ConfigMap", rules_volume["configMap"]["name"])]
    assert Path(WORKER_ENV["SIYU_RULES"]).name in rules_map["data"]
    # the pods the API Service selects are the workers
    api = resources[("Service", "siyu-stream")]
    assert api["spec"]["selector"].items() <= pod["metadata"]["labels"].items()


def test_k8s_prometheus_scrape_snippet_passes_promtool(tmp_path: Path) -> None:
    """The scrape job in the ConfigMap, with the alert rules, is a valid Prometheus config."""
    promtool = _tool("promtool", "prometheus")
    resources = _resources()
    snippet = resources[("ConfigMap", "siyu-stream-prometheus-scrape")]["data"]
    scrape = yaml.safe_load(snippet["siyu-stream-scrape.yml"])
    (job,) = scrape["scrape_configs"]
    assert job["job_name"] == JOB
    # Debian's promtool is built without Kubernetes service discovery: check that part here
    # and let promtool check the rest (relabelling, paths, rule files) on static targets
    (discovery,) = job.pop("kubernetes_sd_configs")
    assert discovery == {"role": "pod", "namespaces": {"names": ["siyu"]}}
    job["static_configs"] = [{"targets": ["siyu-stream-0:6066"]}]
    annotations = _resources()[("StatefulSet", "siyu-stream")]["spec"]["template"]["metadata"][
        "annotations"
    ]
    for key in annotations:
        meta = "__meta_kubernetes_pod_annotation_" + re.sub(r"[^a-z0-9]", "_", key)
        assert any(meta in r.get("source_labels", []) for r in job["relabel_configs"]), key
    alerts = resources[("ConfigMap", "siyu-stream-prometheus-alerts")]["data"]
    (tmp_path / "alerts.yml").write_text(alerts["siyu-stream-alerts.yml"])
    config = {"rule_files": ["alerts.yml"], **scrape}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    out = _run(promtool, "check", "config", str(tmp_path / "prometheus.yml"))
    assert "1 rule files found" in out


def test_the_image_copies_what_the_wheel_build_reads() -> None:
    """Docker does not run here: the Dockerfile is checked against what the wheel build
    reads (pyproject.toml names hatch_build.py as its hook), and the wheel is built in a
    stage with a C compiler, so that the image runs the compiled build."""
    text = (ROOT / "Dockerfile").read_text()
    copied = {
        source
        for line in text.splitlines()
        if line.startswith("COPY ") and "--from=" not in line
        for source in line.split()[1:-1]
    }
    hook = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    assert "custom" in hook["targets"]["wheel"]["hooks"]
    assert {"pyproject.toml", "README.md", "hatch_build.py", "siyu_stream", "topics"} <= copied
    stages = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    assert stages == ["python:3.11", "python:3.11-slim"]  # the full image carries gcc
    assert "COPY --from=wheel /wheels /wheels" in text
