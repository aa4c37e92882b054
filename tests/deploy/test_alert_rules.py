"""deploy/prometheus/spendstream-rules.yml: every spendstream metric a rule queries is one the services export
(names read from the live prometheus_client registry after importing every service's metrics module)."""

from __future__ import annotations

import importlib
import re
from typing import Any

import yaml
from prometheus_client import REGISTRY

from tests.deploy.deployables import ROOT, SERVICES

RULES = ROOT / "deploy" / "prometheus" / "spendstream-rules.yml"
# Metrics from outside spendstream the rules may use: a Kafka exporter's group lag, Prometheus' own `up`.
FOREIGN = {"kafka_consumergroup_lag", "up"}


def exported_names() -> set[str]:
    for service in SERVICES:
        try:
            importlib.import_module(f"spendstream.{service.name}.metrics")
        except ModuleNotFoundError as exc:
            assert exc.name == f"spendstream.{service.name}.metrics", exc
    # Names as Prometheus stores them, also for labelled metrics that have no sample yet.
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}
    return {metric.name + suffix for metric in REGISTRY.collect() for suffix in suffixes.get(metric.type, ("",))}


def rules() -> list[dict[str, Any]]:
    loaded: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def test_every_rule_has_an_expression_severity_and_runbook_that_exists() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", operations, re.MULTILINE)
    }
    for rule in rules():
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        page, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert page == "docs/operations.md" and anchor in anchors, (rule["alert"], anchor)


def test_rules_query_only_metrics_that_exist() -> None:
    exported = exported_names()
    assert "spendstream_rollup_consumer_lag_records" in exported
    for rule in rules():
        for name in set(re.findall(r"\b([a-z_]+(?:_total|_seconds|_records|_bucket|_lag))\b", rule["expr"])):
            assert name in exported or name in FOREIGN, (rule["alert"], name)
