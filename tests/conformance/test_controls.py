"""Every control of the policy, every check it names, on every managed host of the inventory."""

from __future__ import annotations

import pytest
import testinfra

from hipgate.conformance.checks import Context, run_check
from hipgate.conformance.results import FAIL, WAIVED, append, evaluate

_hosts: dict[str, object] = {}


def _host(name: str, ssh_config: str) -> object:
    if name not in _hosts:
        _hosts[name] = testinfra.get_host(f"ssh://{name}", ssh_config=ssh_config)
    return _hosts[name]


def test_control(case: tuple[str, str, str], hipgate_run: dict, record_property: pytest.RecordProperty) -> None:
    control_id, check, host_name = case
    control = hipgate_run["policy"].control(control_id)
    outcome = run_check(
        check,
        _host(host_name, str(hipgate_run["ssh_config"])),
        control.params(),
        Context(host_name, hipgate_run["inventory"]),
    )
    inv_name = hipgate_run["inventory"].path.name
    record = evaluate(control, check, host_name, outcome, inv_name, hipgate_run["today"])
    append(hipgate_run["results"], record)
    record_property("control", control_id)
    record_property("host", host_name)
    record_property("evidence", "\n".join(f"$ {e.command}\n{e.output}" for e in outcome.evidence))
    if record["status"] == WAIVED:
        w = record["waiver"]
        pytest.skip(f"waived until {w['expires']} by {w['approver']}: {w['justification_en']}")
    assert record["status"] != FAIL, f"{control_id} {check} on {host_name}: {outcome.en} / {outcome.zh}" + (
        " (waiver expired)" if record["waiver"] and record["waiver"]["expired"] else ""
    )
