"""The auditor report from verify results: matrix, waivers, digest, escaping, offline, bad input."""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape as html_escape

from helpers import ROOT, browser_render, copy_example
from hipgate.conformance.checks import Evidence, Outcome, run_check
from hipgate.conformance.results import evaluate
from hipgate.conformance.targets import plan
from hipgate.errors import UserError
from hipgate.inventory.load import load_inventory
from hipgate.policy.load import load_policy
from hipgate.report.model import build
from hipgate.report.write import write_report
from hipgate.verify import results_document

HOSTS = ["fe01", "db01"]  # the example inventory's front-end server and database
HOSTILE = "<script>alert('x')</script> & <img src=http://example.invalid/x.png>"
NOW = datetime.datetime(2026, 11, 22, 8, 0, tzinfo=datetime.UTC)


def results_file(
    tmp_path: Path, outcomes: dict[tuple[str, str], Outcome], skip: set[tuple[str, str]] = frozenset()
) -> Path:
    """results.json as verify writes it, from the real policy and evaluate(); every check passes
    unless `outcomes` says otherwise for a (check, host); `skip` leaves a (check, host) unreported."""
    policy = load_policy()
    inv = load_inventory(copy_example(tmp_path))
    today = datetime.date(2026, 11, 22)
    records = [
        evaluate(
            policy.control(cid),
            check,
            host,
            outcomes.get((check, host), Outcome(True, "符合", "ok", [Evidence("echo ok", 0, "ok")])),
            inv.path.name,
            today,
        )
        for cid, check, host in plan(policy, inv, HOSTS)
        if (check, host) not in skip
    ]
    doc = results_document(policy, inv, HOSTS, records, NOW, NOW, today)
    path = tmp_path / "verify" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def control_of(check: str) -> str:
    return next(c.id for c in load_policy().controls if check in c.checks)


def test_all_pass_report_has_every_cell_and_the_digest_of_the_data(tmp_path: Path) -> None:
    src = results_file(tmp_path, {})
    rep = write_report(src, tmp_path / "out", NOW)
    assert rep.status == "pass"
    # Controls whose every check is a database check do not apply to the front-end server, nor VPN
    # controls to the database: "n/a", counted nowhere; every other cell passes.
    na = sorted(k for k, cell in rep.cells.items() if cell.status == "na")
    assert na == [
        ("GBT22239-8.1.2.2-a", "db01"),
        ("GBT22239-8.1.2.2-b", "db01"),
        ("GBT22239-8.1.3.1-a", "db01"),
        ("GBT22239-8.1.4.2-e", "fe01"),
        ("GBT22239-8.1.4.7-b", "fe01"),
        ("GBT22239-8.1.4.9-a", "fe01"),
        ("GBT22239-8.1.4.9-b", "fe01"),
        ("HIPGATE-DB-2", "fe01"),
        ("HIPGATE-EX-1", "db01"),
        ("HIPGATE-NET-1", "db01"),
    ]
    assert rep.counts["pass"] == len(load_policy().controls) * len(HOSTS) - len(na)
    copied = tmp_path / "out" / "results.json"
    assert copied.read_bytes() == src.read_bytes()
    assert rep.sha256 == hashlib.sha256(copied.read_bytes()).hexdigest()
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert rep.sha256 in html and "hipgate-gbt22239-level3" in html and "2026-11-22T08:00:00+00:00" in html
    summary = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert summary["results_sha256"] == rep.sha256 and summary["status"] == "pass"
    assert {s["section"] for s in summary["sections"]} == {c.section for c in load_policy().controls}


def test_failing_check_makes_its_cell_section_and_verdict_fail(tmp_path: Path) -> None:
    bad = Outcome(False, "允许 root 登录", "root may log in", [Evidence("sshd -T", 0, "permitrootlogin yes")])
    rep = write_report(results_file(tmp_path, {("root_ssh_login_disabled", "db01"): bad}), tmp_path / "o", NOW)
    cid = control_of("root_ssh_login_disabled")
    assert rep.cells[(cid, "db01")].status == "fail"
    assert rep.cells[(cid, "fe01")].status == "pass"
    assert rep.status == "fail" and rep.counts["fail"] == 1
    assert f'id="verdict">{rep.verdict}<' in (tmp_path / "o" / "report.html").read_text(encoding="utf-8")
    section = next(s for s in rep.sections if any(c["id"] == cid for c in s.controls))
    assert section.status == "fail"
    junit = ET.parse(tmp_path / "o" / "junit.xml").getroot()
    cases = junit.findall(".//testcase")
    # One case per applicable (control, host): n/a cells are not test cases.
    assert len(cases) == sum(1 for cell in rep.cells.values() if cell.status != "na")
    failed = [c for c in cases if c.find("failure") is not None]
    assert [(c.get("classname"), c.get("name")) for c in failed] == [(cid, "db01")]
    assert "permitrootlogin yes" in failed[0].findtext("system-out")


def test_waived_and_unreported_checks_are_shown_as_such(tmp_path: Path) -> None:
    # The lab waiver of 8.1.4.3-d is scoped to inventories named `lab`: use a policy-less path by
    # failing a check whose control has no waiver, and leave another check unreported.
    missing = ("unique_uids", "fe01")
    rep = write_report(results_file(tmp_path, {}, skip={missing}), tmp_path / "o", NOW)
    cell = rep.cells[(control_of("unique_uids"), "fe01")]
    assert cell.status == "missing" and rep.status == "missing"
    junit = ET.parse(tmp_path / "o" / "junit.xml").getroot()
    assert junit.find(f".//testcase[@classname='{cell.control}'][@name='fe01']/failure") is not None
    html = (tmp_path / "o" / "report.html").read_text(encoding="utf-8")
    waiver = next(c for c in load_policy().controls if c.waivers).waivers[0]
    assert str(html_escape(waiver.justification_en)) in html and waiver.expires.isoformat() in html


def test_waiver_in_results_is_reported_as_waived(tmp_path: Path) -> None:
    src = results_file(tmp_path, {})
    doc = json.loads(src.read_text(encoding="utf-8"))
    rec = next(r for r in doc["results"] if r["host"] == "fe01" and r["check"] == "auditd_running")
    rec["status"] = "waived"
    rec["waiver"] = {
        "approver": "安全负责人",
        "expires": "2027-01-31",
        "expired": False,
        "justification_zh": "待更换硬件",
        "justification_en": "hardware pending replacement",
    }
    src.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    rep = write_report(src, tmp_path / "o", NOW)
    assert rep.cells[(rec["control"], "fe01")].status == "waived" and rep.status == "waived"
    skipped = ET.parse(tmp_path / "o" / "junit.xml").getroot().find(".//skipped")
    assert skipped is not None and "2027-01-31" in skipped.get("message", "")


def test_evidence_is_escaped_and_the_page_loads_nothing_from_outside(tmp_path: Path) -> None:
    bad = Outcome(False, HOSTILE, HOSTILE, [Evidence(f"echo {HOSTILE}", 1, HOSTILE)])
    write_report(results_file(tmp_path, {("unique_uids", "fe01"): bad}), tmp_path / "o", NOW)
    html = (tmp_path / "o" / "report.html").read_text(encoding="utf-8")
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(" in html
    # No external asset of any kind: scripts, styles, images, fonts, imports.
    assert not re.search(r"<(script|link|img|iframe|object|embed)\b", html)
    assert not re.search(r"@import|url\(", html)
    tags = re.findall(r"<[a-zA-Z][^>]*>", html)
    assert not [t for t in tags if re.search(r"\ssrc=", t)]
    assert {h[0] for t in tags for h in re.findall(r'\shref="([^"]*)"', t)} == {"#"}


def test_report_renders_in_a_browser_with_the_matrix(tmp_path: Path) -> None:
    bad = Outcome(False, "空口令", "empty password", [Evidence("awk", 0, "hgempty")])
    rep = write_report(results_file(tmp_path, {("no_empty_passwords", "db01"): bad}), tmp_path / "o", NOW)
    dom = browser_render(tmp_path / "o" / "report.html", tmp_path / "shot.png")
    cells = re.findall(r'<td class="cell (\w+)" data-control="([^"]+)" data-host="([^"]+)"', dom)
    assert len(cells) == len(rep.controls) * len(HOSTS)
    assert [(c, h) for s, c, h in cells if s == "fail"] == [(control_of("no_empty_passwords"), "db01")]
    assert rep.sha256 in dom
    png = (tmp_path / "shot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000  # a blank page is a few kB


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda d: d["results"][0].update(status="maybe"), "results.[0].status"),
        (lambda d: d.pop("hosts"), "hosts"),
        (lambda d: d["results"][3].update(control="GBT22239-9.9.9-z"), "results.[3]"),
        (lambda d: d["controls"][0].update(severity="urgent"), "controls.[0].severity"),
    ],
)
def test_bad_results_name_the_field(tmp_path: Path, change: Any, where: str) -> None:
    src = results_file(tmp_path, {})
    doc = json.loads(src.read_text(encoding="utf-8"))
    change(doc)
    src.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(UserError) as exc:
        build(src)
    assert where in str(exc.value) and "Fix:" in str(exc.value)
    assert not (tmp_path / "o").exists()


def test_missing_and_malformed_results(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="run hipgate verify"):
        build(tmp_path / "nope.json")
    (tmp_path / "r.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match="not valid JSON"):
        build(tmp_path / "r.json")


def test_template_is_packaged() -> None:
    assert (ROOT / "src" / "hipgate" / "report" / "templates" / "report.html.j2").is_file()


def test_a_check_that_cannot_complete_counts_as_failing() -> None:
    class Unreachable:
        def run(self, command: str) -> object:
            raise ConnectionError("ssh: connect to host db port 22: No route to host")

    outcome = run_check("unique_uids", Unreachable(), {})
    assert not outcome.ok and "ConnectionError" in outcome.en
    assert "No route to host" in outcome.evidence[0].output


def test_reachability_and_database_attempts_are_shown_with_their_evidence(tmp_path: Path) -> None:
    probes = [
        {"to": "db01", "port": 5432, "expected": "deny", "flow": "", "observed": "refused", "ok": False},
        {"to": "db01", "port": 22, "expected": "allow", "flow": "bastion-ssh", "observed": "open", "ok": True},
    ]
    reach = Outcome(
        False,
        "不符",
        "differs",
        [Evidence("probe", 0, "x")],
        {"reachability": {"from": "fe01", "address": "10.86.1.10", "probes": probes}},
    )
    attempt = {"to": "db01", "database": "exchange", "role": "exchange_app", "tls": True}
    attempt |= {"answer": 'refused: no pg_hba.conf entry for host "10.86.1.10"', "expected": "dropped by firewall"}
    db = Outcome(
        False,
        "不符",
        "differs",
        [Evidence("pg probe", 0, "x")],
        {"database_access": {"from": "fe01", "address": "10.86.1.10", "attempts": [dict(attempt, ok=False)]}},
    )
    outcomes = {("flow_matrix_enforced", "fe01"): reach, ("database_access_enforced", "fe01"): db}
    rep = write_report(results_file(tmp_path, outcomes), tmp_path / "o", NOW)
    assert rep.status == "fail"
    dom = browser_render(tmp_path / "o" / "report.html", tmp_path / "shot.png")
    cells = {to: status for status, to in re.findall(r'<td class="cell (\w+)" data-from="fe01" data-to="([^"]+)"', dom)}
    assert cells == {"db01:5432": "fail", "db01:22": "pass"}
    assert "no pg_hba.conf entry" in dom and 'id="flows"' in dom and "app-to-db" in dom
    summary = json.loads((tmp_path / "o" / "report.json").read_text(encoding="utf-8"))
    assert summary["reachability"][0]["from"] == "fe01" and len(summary["reachability"][0]["probes"]) == 2
    assert {f["name"] for f in summary["flows"]} >= {"management-ssh", "app-to-db", "vpn-ike"}


def test_vpn_suite_and_preflight_sections(tmp_path: Path) -> None:
    sa = {
        "ike": "AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384",
        "esp": "ESP:AES_GCM_16-256",
        "local_ts": ["10.86.200.0/28"],
        "remote_ts": ["10.123.0.0/16"],
    }
    vpn = Outcome(True, "隧道已建立", "tunnel up", [Evidence("swanctl --list-sas", 0, "x")], {"vpn": [sa]})
    row = {
        "host": "fe01",
        "check": "tcp",
        "target": "10.123.0.80:443",
        "ok": False,
        "warning": False,
        "observed_zh": "超时",
        "observed_en": "timed out: dropped on the way by a firewall",
        "fix_zh": "请放通",
        "fix_en": "ask the network operator to open TCP 443",
    }
    pf = Outcome(False, "未通过", "failed", [Evidence("probe", 0, "{}")], {"preflight": [row]})
    outcomes = {("vpn_tunnel_strong", "fe01"): vpn, ("platform_network_preflight", "fe01"): pf}
    rep = write_report(results_file(tmp_path, outcomes), tmp_path / "o", NOW)
    html = (tmp_path / "o" / "report.html").read_text(encoding="utf-8")
    # One row per SA although two controls (8.1.2.2-a and -b) name the check.
    assert html.count('<tr data-host="fe01"><td>') == 1 and "PRF_HMAC_SHA2_384/ECP_384" in html
    assert 'data-check="tcp"' in html and "ask the network operator to open TCP 443" in html
    assert "TCP 端口可达" in html and rep.status == "fail"


def test_acknowledged_wide_settings_are_shown_in_the_report(tmp_path: Path) -> None:
    """A wide-open setting accepted in hipgate.acknowledge reaches results.json and the report, reason and all."""
    policy = load_policy()
    inv_dir = copy_example(tmp_path)
    settings = inv_dir / "group_vars" / "all" / "hipgate.yml"
    text = settings.read_text(encoding="utf-8").replace(
        "management_networks: [10.86.0.0/28]", "management_networks: [172.16.0.0/12]"
    )
    reason = "运维网整段 / the whole operations network <b>"
    text += f'  acknowledge:\n    - {{risk: wide_management_network, reason: "{reason}"}}\n'
    settings.write_text(text, encoding="utf-8")
    inv = load_inventory(inv_dir)
    today = datetime.date(2026, 11, 22)
    ok = Outcome(True, "符合", "ok", [Evidence("echo ok", 0, "ok")])
    records = [evaluate(policy.control(c), ch, h, ok, inv.path.name, today) for c, ch, h in plan(policy, inv, HOSTS)]
    doc = results_document(policy, inv, HOSTS, records, NOW, NOW, today)
    assert doc["acknowledged"] == [
        {"risk": "wide_management_network", "reason": "运维网整段 / the whole operations network <b>"}
    ]
    src = tmp_path / "results.json"
    src.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    write_report(src, tmp_path / "o", NOW)
    page = (tmp_path / "o" / "report.html").read_text(encoding="utf-8")
    assert "wide_management_network" in page and "运维网整段" in page and "&lt;b&gt;" in page
