"""The network preflight (hipgate preflight network) as a conformance check: the national platform is
reachable the way the deployment declares, from every host that must reach it."""

from __future__ import annotations

import json
from typing import Any

from hipgate.conformance.checks import MAX_EVIDENCE_CHARS, Context, Evidence, Outcome, scoped
from hipgate.flows import VPN_GROUP
from hipgate.preflight import network as pf


@scoped(VPN_GROUP, context=True)
def platform_network_preflight(host: Any, params: dict[str, Any], ctx: Context) -> Outcome:
    spec = pf.spec_for(ctx.inventory, ctx.host)
    res = host.run(pf.probe_command(spec))
    label = f"(hipgate preflight network probe) {json.dumps(spec, ensure_ascii=False)}"
    evidence = [Evidence(label, res.rc, (res.stdout.strip() or res.stderr.strip())[:MAX_EVIDENCE_CHARS])]
    try:
        raw = json.loads(res.stdout)
    except ValueError:
        return Outcome(False, "无法运行网络预检", "the network preflight could not run", evidence)
    rows = pf.judge(ctx.inventory, ctx.host, spec, raw)
    bad = [r for r in rows if not r.ok]
    return Outcome(
        not bad,
        f"{len(rows)} 项网络预检，未通过："
        + ("；".join(f"{r.check} {r.target}：{r.observed_zh}" for r in bad) or "无"),
        f"{len(rows)} network preflight checks, failed: "
        + ("; ".join(f"{r.check} {r.target}: {r.observed_en}" for r in bad) or "none"),
        evidence,
        {"preflight": pf.as_json(rows)},
    )
