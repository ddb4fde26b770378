"""A new SM2 exchange signing key, written once: `python -m hipgate.exchange.keygen --out DIR/NAME`.

Writes NAME.key (PKCS#8 PEM, 0600, never overwritten: an existing key is kept) and NAME.pub (the public
key to register with the other party), and prints the key's cainfo (the stand-in for the serial of the
certificate a CA would issue for it). For the lab and test set-ups; a province's real key and
certificate come from the national platform's CA.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hipgate.exchange import signing


def ensure_sm2_key(stem: Path) -> tuple[Path, Path, str]:
    """(key, public, cainfo) for `stem`.key / .pub, making the pair only where the key does not exist."""
    key, public = stem.with_name(stem.name + ".key"), stem.with_name(stem.name + ".pub")
    key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not key.exists():
        pair = signing.generate_sm2_keypair()
        try:
            # O_EXCL: of two writers at once one wins, and nothing replaces a key.
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pair.to_pem())
            public.write_bytes(pair.public_key.to_pem())
    if not public.exists():
        public.write_bytes(signing.load_sm2_private_key(key.read_bytes()).public_key.to_pem())
    cainfo = signing.load_sm2_public_key(public.read_bytes()).fingerprint().upper()
    return key, public, cainfo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hipgate.exchange.keygen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="DIR/NAME: writes NAME.key and NAME.pub")
    args = parser.parse_args(argv)
    _, _, cainfo = ensure_sm2_key(args.out)
    print(cainfo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
