"""Signatures and verifications per second, SM2 against ECDSA P-256 as the anchor, through
`hipgate.exchange.signing` (base64 and the canonical-DER check included, as the middleware pays them).

Each figure is the median of ROUNDS runs of SECONDS each, in one process on one core (signing is not
threaded). The middleware signs every message: a 500-record batch, or the header of a 4 MiB chunk; the
goal is at least 10 messages a second, which the 4 KiB row answers (the 4 MiB row shows what hashing a
whole chunk would add).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from importlib.metadata import version
from pathlib import Path

from benchlib import ROOT, measured_by, write_results
from cryptography.hazmat.backends.openssl.backend import backend as openssl_backend
from cryptography.hazmat.primitives.asymmetric import ec

from hipgate.exchange.signing import generate_sm2_keypair, sign, verify

GOAL = 10.0  # messages per second the middleware must sign
SIZES = {"4 KiB": 4 * 1024, "4 MiB": 4 * 1024 * 1024}


def rate(fn: Callable[[], object], seconds: float, rounds: int) -> float:
    """Calls per second: the median of `rounds` runs of `seconds` each."""
    results = []
    for _ in range(rounds):
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            fn()
            n += 1
        results.append(n / elapsed)
    return statistics.median(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results-signing.md"))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sm2 = generate_sm2_keypair()
    p256 = ec.generate_private_key(ec.SECP256R1())
    keys = {"SM2": (sm2, sm2.public_key), "ECDSA": (p256, p256.public_key())}
    rows: dict[tuple[str, str], tuple[float, float]] = {}
    load_before = f"{os.getloadavg()[0]:.1f}"
    for size_name, size in SIZES.items():
        data = os.urandom(size)
        seconds = args.seconds if size <= 65536 else args.seconds / 2
        for signtype, (key, public) in keys.items():
            signature = sign(data, key, signtype)
            assert verify(data, signature, public, signtype)
            rows[(size_name, signtype)] = (
                rate(partial(sign, data, key, signtype), seconds, args.rounds),
                rate(partial(verify, data, signature, public, signtype), seconds, args.rounds),
            )
    lines = [
        "# Signing benchmark / 报文签名基准",
        "",
        f"{measured_by('bench-signing')}: `hipgate.exchange.signing.sign` / `verify`, one process on one core, "
        f"each figure the median of {args.rounds} runs of {args.seconds:g} s ({args.seconds / 2:g} s for 4 MiB). "
        f"SM2: gmssl_pyx {version('gmssl_pyx')} (GmSSL); ECDSA P-256 + SHA-256: cryptography "
        f"{version('cryptography')} ({openssl_backend.openssl_version_text()}), the anchor. Load average "
        f"before / after: {load_before} / {os.getloadavg()[0]:.1f} (above 2 the machine was busy with other work: "
        "the rates are then lower than an idle front-end server's).",
        "",
        "| message | signtype | signatures/s | verifications/s | SM2/ECDSA sign | SM2/ECDSA verify |",
        "|---|---|---|---|---|---|",
    ]
    for size_name in SIZES:
        anchor_sign, anchor_verify = rows[(size_name, "ECDSA")]
        for signtype in keys:
            s, v = rows[(size_name, signtype)]
            ratio = f"{s / anchor_sign:.3f} | {v / anchor_verify:.3f}" if signtype == "SM2" else "1 | 1"
            lines.append(f"| {size_name} | {signtype} | {s:,.0f} | {v:,.0f} | {ratio} |")
    sm2_sign, sm2_verify = rows[("4 KiB", "SM2")]
    verdict = "enough" if min(sm2_sign, sm2_verify) >= GOAL else "NOT enough"
    lines += [
        "",
        f"Goal: the middleware signs at least {GOAL:g} messages/s. SM2 on a 4 KiB message: {sm2_sign:,.0f} "
        f"signatures/s and {sm2_verify:,.0f} verifications/s on one core, {verdict} "
        f"({min(sm2_sign, sm2_verify) / GOAL:,.0f}× the goal for the slower of the two); hashing a whole 4 MiB "
        f"chunk instead of its header still gives {rows[('4 MiB', 'SM2')][0]:,.1f} signatures/s.",
    ]
    write_results(Path(args.out), [*lines, ""])


if __name__ == "__main__":
    main()
