"""Where the middleware lives on its host, in one place: the control node's `hipgate exchange` builds its
ssh commands from these, and the Ansible roles that install the middleware must use the same values (a
unit test keeps them in step)."""

from __future__ import annotations

import shlex

SERVICE_USER = "hipgate-exchange"
VENV_PYTHON = "/opt/hipgate/venv/bin/python"
CONFIG = "/etc/hipgate/exchange/middleware.json"
# The node exporter's textfile directory on Debian (prometheus-node-exporter's default).
METRICS_TEXTFILE = "/var/lib/prometheus/node-exporter/hipgate-exchange.prom"


def host_command(subcommand: str, *args: str) -> str:
    """The shell command the control node runs over ssh on the middleware host: the run module as the
    service user, non-interactive sudo (a missing rule fails at once instead of asking), every word quoted."""
    words = ["sudo", "-n", "-u", SERVICE_USER, VENV_PYTHON, "-m", "hipgate.exchange.run", subcommand,
             "--config", CONFIG, *args]  # fmt: skip
    return shlex.join(words)
