"""The shipped alert rules and Grafana dashboard (``config/prometheus``, ``config/grafana``):
promtool checks the rules and runs their unit tests, every alert has a firing and a quiet
case and an operator section in docs/metrics.md, and neither file names a metric the
daemon does not export (so they cannot drift from the code)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from nextcall.core.engine import Engine
from nextcall.core.model import Campaign, Interval, ResultCode
from nextcall.metrics import EngineCollector, EngineSampler, Metrics
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "prometheus" / "nextcall-rules.yml"
RULE_TESTS = ROOT / "config" / "prometheus" / "nextcall-rules.test.yml"
DASHBOARD = ROOT / "config" / "grafana" / "nextcall-dashboard.json"
DOCS = ROOT / "docs" / "metrics.md"
METRIC = re.compile(r"\b(?:nextcall|process|python)_[a-z_]+\b")


def alerts() -> list[str]:
    return re.findall(r"^\s*- alert: (\w+)$", RULES.read_text(), re.MULTILINE)


def exported() -> set[str]:
    """Every sample name a daemon exports (histograms with their _bucket/_sum/_count)."""
    camp = Campaign(name="c", codes={"NA": ResultCode("NA", "", "retry")},
                    window=tuple((Interval(0, 1440),) for _ in range(7)))
    engine = Engine({"c": camp})
    reg = CollectorRegistry()
    m = Metrics(reg, campaigns=lambda: engine.campaigns)
    m.ensure_campaigns(["c"])
    m.request_done("next", "ok", 0.001)
    m.disposed("c", "NA")
    m.amended("c", "NA", "NA")
    collector = EngineCollector()
    reg.register(collector)
    collector.snapshot = EngineSampler(60).sample(engine, 0.0, {})
    text = generate_latest(reg).decode()
    names = {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}
    return names | {"up"}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panel_exprs(dash: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def test_promtool_check_rules() -> None:
    promtool = require_tool("promtool", "prometheus")
    done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                          timeout=60, check=False)
    out = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, out
    assert f"SUCCESS: {len(alerts())} rules found" in out


def test_promtool_rule_unit_tests_pass() -> None:
    promtool = require_tool("promtool", "prometheus")
    done = subprocess.run([promtool, "test", "rules", str(RULE_TESTS)], capture_output=True,
                          timeout=120, cwd=RULE_TESTS.parent, check=False)
    out = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, out
    assert "SUCCESS" in out and "FAILED" not in out


def test_every_alert_is_tested_firing_and_quiet() -> None:
    text = RULE_TESTS.read_text()
    quiet = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts: \[\]", text))
    firing = set(re.findall(r"alertname: (\w+)\n\s+exp_alerts:\n\s+- exp_labels:", text))
    expected = {"NextcallDown", "NextcallQueueStarving", "NextcallCallbacksOverdue",
                "NextcallLeaseExpiriesSpiking", "NextcallCommitLatencyHigh"}
    assert expected <= set(alerts())
    for alert in alerts():
        assert alert in firing, f"{alert} has no firing case"
        assert alert in quiet, f"{alert} has no quiet case"


def test_every_alert_has_severity_annotations_and_a_doc_section() -> None:
    text = RULES.read_text()
    docs = DOCS.read_text()
    blocks = re.split(r"^\s*- alert: ", text, flags=re.MULTILINE)[1:]
    assert len(blocks) == len(alerts())
    for block in blocks:
        name = block.split("\n", 1)[0].strip()
        assert re.search(r"severity: (critical|warning)", block), name
        for key in ("summary:", "description:", "runbook:"):
            assert key in block, (name, key)
        assert f"docs/metrics.md#{name.lower()}" in block, name
        assert re.search(rf"^#+ `?{name}`?$", docs, re.MULTILINE), f"docs/metrics.md lacks {name}"


def test_rules_and_dashboard_name_only_exported_metrics() -> None:
    names = exported()
    dash_text = DASHBOARD.read_text()
    for where, text in (("rules", RULES.read_text()), ("dashboard", dash_text),
                        ("docs", DOCS.read_text())):
        unknown = set(METRIC.findall(text)) - names
        if where == "docs":
            # the docs name families (a histogram's base name) and label-less mentions
            unknown = {n for n in unknown if not any(e.startswith(n) for e in names)}
        assert not unknown, f"{where} names metrics the daemon does not export: {unknown}"


def test_dashboard_shows_every_nextcall_metric() -> None:
    dash_text = DASHBOARD.read_text()
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in exported()
                if n.startswith("nextcall_")}
    missing = {f for f in families if f not in dash_text}
    assert not missing, f"metrics without a dashboard panel: {missing}"


def test_dashboard_is_well_formed() -> None:
    dash = dashboard()
    assert dash["uid"] == "nextcall-overview" and dash["title"] == "nextcall"
    assert [v["name"] for v in dash["templating"]["list"]] == \
        ["datasource", "instance", "campaign"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for p in dash["panels"]:
        assert p["title"] and p["gridPos"]["w"] <= 24
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${datasource}", p["title"]
            assert p["targets"] and p["description"], p["title"]


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    promtool = require_tool("promtool", "prometheus")
    exprs = panel_exprs(dashboard())
    assert len(exprs) > 20
    # each query as a recording rule, with Grafana's variables filled in
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(exprs):
        concrete = (expr.replace("$__rate_interval", "5m").replace("$instance", ".*")
                    .replace("$campaign", ".*"))
        assert "$" not in concrete, expr
        lines += [f"      - record: dashboard:query_{i}", f"        expr: {json.dumps(concrete)}"]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text("\n".join(lines) + "\n")
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          timeout=60, check=False)
    out = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, out
    assert f"SUCCESS: {len(exprs)} rules found" in out
