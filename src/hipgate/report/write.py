"""Write the report in its three forms: HTML for auditors, JSON for tools, JUnit for CI dashboards."""

from __future__ import annotations

import datetime
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import jinja2

from hipgate.report.model import FAIL, MISSING, NA, STATUS_TEXT, WAIVED, Report, build


def template(name: str) -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("hipgate.report", "templates"),
        # Evidence is whatever the hosts printed: escape all of it.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(name)


def render_html(report: Report, generated_at: str) -> str:
    tpl = template("report.html.j2")
    return tpl.render(report=report, doc=report.doc, generated_at=generated_at, STATUS_TEXT=STATUS_TEXT)


def report_json(report: Report, generated_at: str) -> dict[str, object]:
    doc = report.doc
    return {
        "generated_at": generated_at,
        "results_sha256": report.sha256,
        "hipgate_version": doc["hipgate_version"],
        "policy": doc["policy"],
        "province": doc["province"],
        "inventory": doc["inventory"],
        "checked": {"started_at": doc["started_at"], "finished_at": doc["finished_at"]},
        "waivers_evaluated_on": doc["waivers_evaluated_on"],
        "status": report.status,
        "counts": {s: report.counts[s] for s in STATUS_TEXT if s != NA},
        "hosts": report.hosts,
        "sections": [
            {
                "section": s.section,
                "name_zh": s.name_zh,
                "name_en": s.name_en,
                "status": s.status,
                "controls": [c["id"] for c in s.controls],
                "counts": {k: s.counts[k] for k in STATUS_TEXT},
            }
            for s in report.sections
        ],
        "matrix": {c["id"]: {cell.host: cell.status for cell in report.row(c["id"])} for c in report.controls},
        "waivers": report.waivers(),
        "flows": report.doc.get("flows", []),
        "reachability": [
            {"from": row["from"], "address": row["address"], "probes": list(row["cells"].values())}
            for row in report.reachability()[1]
        ],
    }


def report_junit(report: Report) -> ET.ElementTree[ET.Element]:
    """One test case per (control, host): a dashboard shows exactly the auditor's matrix."""
    root = ET.Element("testsuites", name=report.doc["policy"]["id"])
    for sec in report.sections:
        suite = ET.SubElement(root, "testsuite", name=f"GB/T 22239-2019 {sec.section} {sec.name_en}")
        n = {"tests": 0, "failures": 0, "skipped": 0}
        for c in sec.controls:
            for cell in report.row(c["id"]):
                if cell.status == NA:
                    continue
                n["tests"] += 1
                case = ET.SubElement(suite, "testcase", classname=c["id"], name=cell.host)
                lines = [f"[{r['status']}] {r['check']}: {r['summary_en']} / {r['summary_zh']}" for r in cell.results]
                if cell.status in (FAIL, MISSING):
                    n["failures"] += 1
                    msg = "not checked" if cell.status == MISSING and not lines else "; ".join(lines)
                    ET.SubElement(case, "failure", message=msg[:1000]).text = "\n".join(lines)
                elif cell.status == WAIVED:
                    n["skipped"] += 1
                    w = next(r["waiver"] for r in cell.results if r["status"] == WAIVED)
                    why = f"waived until {w['expires']} by {w['approver']}: {w['justification_en']}"
                    ET.SubElement(case, "skipped", message=why)
                evidence = [e for r in cell.results for e in r["evidence"]]
                out = [f"$ {e['command']}  (exit {e['rc']})\n{e['output']}" for e in evidence]
                ET.SubElement(case, "system-out").text = "\n".join(out)
        suite.attrib.update({k: str(v) for k, v in n.items()})
    ET.indent(root)
    return ET.ElementTree(root)


def write_report(results: Path, out_dir: Path, now: datetime.datetime | None = None) -> Report:
    """Write report.html, report.json, junit.xml and a copy of results.json (the hashed data) into out_dir."""
    report = build(results)
    generated_at = (now or datetime.datetime.now(datetime.UTC)).isoformat(timespec="seconds")
    out_dir.mkdir(parents=True, exist_ok=True)
    if results.resolve() != (out_dir / "results.json").resolve():
        shutil.copyfile(results, out_dir / "results.json")
    (out_dir / "report.html").write_text(render_html(report, generated_at), encoding="utf-8")
    (out_dir / "report.json").write_text(
        json.dumps(report_json(report, generated_at), ensure_ascii=False, indent=1), encoding="utf-8"
    )
    report_junit(report).write(out_dir / "junit.xml", encoding="utf-8", xml_declaration=True)
    return report
