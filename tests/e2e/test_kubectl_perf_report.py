"""``kubectl perf report`` on a seeded workload, through the real kubectl: the application's
metrics scraped by the stack's Prometheus, a database with ``pg_stat_statements`` and hypopg,
a planted unused index, a planted duplicate and a planted missing index, all named by the
report; its ``--html`` file rendered by a real headless Chromium without console errors, with
the charts drawn (their line and bar colours found in the screenshot)."""
from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
import yaml

from tests.e2e.optimizer_support import exporter  # noqa: F401 - the fixture
from tests.e2e.test_kubectl_perf import perf, plugin_path  # noqa: F401 - fixtures
from tests.support.kube import eventually
from tests.support.png import pixels

pytestmark = pytest.mark.e2e

WORKLOAD = """
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE EXTENSION IF NOT EXISTS hypopg;
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL,
                     status text NOT NULL, note text, reference text NOT NULL);
INSERT INTO orders (customer_id, status, note, reference)
SELECT g % 1000, (ARRAY['open','paid','shipped','lost'])[1 + g % 4], 'n' || g, 'r' || g
FROM generate_series(1, 60000) g;
CREATE INDEX orders_note_idx ON orders (note);
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE INDEX orders_customer_idx_copy ON orders (customer_id);
ANALYZE orders;
SELECT pg_stat_statements_reset();
"""
#: The query the missing index would serve, run often enough to top pg_stat_statements.
SLOW = "SELECT id, note FROM orders WHERE reference = 'r4242'"
#: Series colours of the report's charts (report._chart, report._bars).
LINE, UNUSED_BAR = (0x1f, 0x6f, 0xeb), (0xdd, 0x00, 0x00)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is not installed (tools/setup.sh installs it)"
    return found


def test_report_names_planted_problems_and_renders(crds, kubectl, namespace, stack,
                                                   pg_database, credentials, psql, exporter,
                                                   perf, tmp_path):
    db = pg_database["database"]
    psql(db, WORKLOAD)
    for _ in range(30):
        psql(db, SLOW)
    exporter.traffic(namespace, "platform", (40.0, 0.3, "200"), (4.0, 0.05, "500"))
    kubectl.apply(yaml.safe_dump({
        "apiVersion": "perf.idp.io/v1alpha1", "kind": "PerformanceProfile",
        "metadata": {"name": "platform"},
        "spec": {"prometheus": {"url": stack.prometheus.url, "timeoutSeconds": 5},
                 "database": {"connection": {
                     "host": pg_database["host"], "port": pg_database["port"],
                     "database": db, "sslMode": "disable",
                     "secretRef": {"name": credentials["postgres"]}},
                     "settings": {"scope": "Database", "parameters": {}},
                     # the advisor plans only the application's queries, as the application
                     "applicationRole": stack.postgres.app_user}}}), namespace)

    def report():
        out = json.loads(perf("report", "platform", "-n", namespace, "--period", "hour",
                              "--unused-after-days", "0", "-o", "json").stdout)
        p95 = next(s for s in out["signals"] if s["name"] == "apiResponseTimeP95Ms")
        return out if p95["last"] is not None and p95["secondsOver"] > 0 else None

    started = time.monotonic()
    data = eventually(report, timeout=120, interval=5, what="signals with two points")
    assert time.monotonic() - started < 120
    findings = {(f["kind"], f["index"]) for f in data["indexHealth"]}
    assert ("unused", "public.orders_note_idx") in findings
    assert ("duplicate", "public.orders_customer_idx_copy") in findings
    assert ("duplicate", "public.orders_customer_idx") not in findings  # the one to keep
    assert any(r["table"] == "orders" and r["columns"] == ["reference"]
               for r in data["recommendations"]), (data["recommendations"], data["problems"])
    assert any("FROM orders WHERE reference = $1" in q["query"] for q in data["slowQueries"])
    error = next(s for s in data["signals"] if s["name"] == "errorRate")
    assert 0.05 < error["last"] < 0.15 and error["target"] == 0.05
    assert {"apiResponseTimeP50Ms", "apiResponseTimeP99Ms"} <= {s["name"]
                                                                for s in data["signals"]}
    text = perf("report", "platform", "-n", namespace, "--period", "hour",
                "--unused-after-days", "0", "--html", str(tmp_path / "report.html")).stdout
    assert "orders_note_idx" in text and "orders_customer_idx_copy" in text
    assert "perfop_orders_reference_idx" in text

    # a real browser draws it, with no console error
    page = tmp_path / "report.html"
    shot = tmp_path / "report.png"
    result = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--enable-logging=stderr", "--v=0", f"--screenshot={shot}", "--window-size=1000,3200",
         page.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.exists(), result.stderr
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console
    width, height, colours = pixels(shot.read_bytes())
    assert (width, height) == (1000, 3200)
    counts = {LINE: 0, UNUSED_BAR: 0}
    for colour in colours:
        if colour in counts:
            counts[colour] += 1
    assert counts[LINE] > 200 and counts[UNUSED_BAR] > 50, counts
    assert len(set(colours)) > 50  # not a blank page
