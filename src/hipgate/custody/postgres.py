"""Set a PostgreSQL role's password without the password ever reaching the server in clear.

The SCRAM-SHA-256 verifier is computed here (scramp, the SCRAM implementation pg8000 uses) and sent
as `ALTER ROLE ... PASSWORD 'SCRAM-SHA-256$...'`: even with statement logging on, the server's log
holds only the verifier. SQL goes to psql on stdin, never on a command line.
"""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass

import scramp

from hipgate.errors import fail

ITERATIONS = 4096  # PostgreSQL's own default for scram_iterations


def scram_verifier(password: str) -> str:
    salt, stored_key, server_key, iterations = scramp.ScramMechanism("SCRAM-SHA-256").make_auth_info(
        password, iteration_count=ITERATIONS
    )
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored_key).decode()}:{b64(server_key).decode()}"


@dataclass(frozen=True)
class Superuser:
    """How to run SQL as the cluster's superuser: a command that reads SQL on stdin (psql -f -),
    e.g. locally through `runuser -u postgres`, or on the database host through ssh + sudo."""

    command: tuple[str, ...]
    where: str

    def run(self, sql: str) -> str:
        res = subprocess.run(self.command, input=sql, capture_output=True, text=True, timeout=60, check=False)
        if res.returncode != 0:
            raise fail(
                self.where,
                f"数据库拒绝执行：{res.stderr.strip()[:300]}",
                f"the database refused: {res.stderr.strip()[:300]}",
                "确认数据库在运行、本机可以以 postgres 身份执行 psql。",
                "make sure PostgreSQL runs and psql can be run as postgres.",
                exit_code=4,
            )
        return res.stdout


def set_password(su: Superuser, role: str, password: str) -> None:
    verifier = scram_verifier(password)
    quoted_role = '"' + role.replace('"', '""') + '"'
    su.run(f"ALTER ROLE {quoted_role} PASSWORD '{verifier}';\n")
