"""Message signatures for the data exchange with the national platform (issue 17).

Every message carries ``signtype`` and a signature over its bytes; ``sign`` makes one, ``verify`` checks
one. 每条报文携带 ``signtype`` 与签名值；``sign`` 生成签名，``verify`` 验证签名。

signtype ``SM2``: SM2 digital signature (GB/T 32918.2-2016) with SM3 (GB/T 32905-2016) on the
recommended curve sm2p256v1, as GB/T 35276-2017 / GM/T 0009-2012 specify for signing a message:
``e = SM3(Z_A || M)`` with ``Z_A = SM3(ENTL_A || ID_A || a || b || x_G || y_G || x_A || y_A)`` and the
default user id ``ID_A = "1234567812345678"`` (ENTL_A = 0x0080). The arithmetic, SM3 and Z_A are GmSSL's
(through ``gmssl_pyx``); this module only chooses the id, handles keys and encodes.

signtype ``ECDSA``: ECDSA on P-256 with SHA-256 (FIPS 186-5), through ``cryptography``; keys from PEM,
the verifier's key from a PEM public key or the signer's X.509 certificate.

Signature encoding, both signtypes: standard base64 with padding (RFC 4648 section 4, no line breaks)
of the DER ``SEQUENCE { r INTEGER, s INTEGER }`` -- for SM2 the ``SM2Signature`` of GM/T 0009-2012
section 7.3, for ECDSA the ``Ecdsa-Sig-Value`` of RFC 3279. Both are what GmSSL, OpenSSL, Tongsuo and
BouncyCastle produce, so the other side verifies with the public key or certificate alone, e.g.::

    base64 -d sig.b64 > sig.der
    openssl pkeyutl -verify -pubin -inkey sm2-public.pem -rawin -in message -sigfile sig.der \\
        -digest sm3 -pkeyopt distid:1234567812345678
    openssl dgst -sha256 -verify ecdsa-public.pem -signature sig.der message

(OpenSSL 3.0's command line uses an empty SM2 id unless ``distid`` is given: always pass it.)
``verify`` accepts only that canonical form: other base64 (whitespace, missing padding, the URL
alphabet), BER or trailing bytes are refused, so one signature has one text. Both algorithms draw a
fresh random k for every signature: signing the same message twice gives two different, valid
signatures (a signature is no message id).

Keys: ``SM2PrivateKey`` / ``SM2PublicKey`` load from hex (the 32-byte private value; the public point
as 04||x||y, x||y or compressed) and from PEM (PKCS#8 ``PRIVATE KEY``, SEC1 ``EC``/``SM2 PRIVATE KEY``,
``PUBLIC KEY``, an SM2 ``CERTIFICATE``), as OpenSSL 3 and GmSSL write them; ``generate_sm2_keypair``
makes one for the lab. GmSSL's Python binding does not derive a public key from a private one, so a
private key is always loaded with its public key (a PEM key written by OpenSSL or GmSSL contains it)
and the pair is checked by a test signature when loaded. A private key never appears in a repr, a
str or an error message, and is not pickled.

Not a certified cryptographic module (商用密码产品认证): like the VPN (see README, 国密), this meets
issue 17's signing with SM2, but a 密评 of the exchange would need a certified product (a signing
server or a certified SDK) behind the same functions. GmSSL prints a source location on stderr for
each signature it rejects (no key material).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any, Final, NoReturn

import gmssl_pyx
from asn1crypto import keys as asn1_keys
from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

SIGNTYPES: Final = ("SM2", "ECDSA")
SM2_USER_ID: Final = b"1234567812345678"  # GM/T 0009-2012 section 10 / GB/T 35276-2017 default ID_A
SM2_CURVE_OID: Final = "1.2.156.10197.1.301"  # sm2p256v1, GM/T 0006
SM2_CURVE_ORDER: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
# DER of two 256-bit INTEGERs is at most 72 bytes: 96 base64 characters. Anything longer is refused unread.
MAX_SIGNATURE_B64: Final = 96
_PAIR_CHECK: Final = b"hipgate: does this public key belong to this private key?"

# asn1crypto knows the curve by OID once told its key size (32 bytes); names it like OpenSSL does.
asn1_keys.NamedCurve.register("sm2p256v1", SM2_CURVE_OID, 32)


class SigningKeyError(ValueError):
    """A key that cannot be used: its text names what is wrong, never the key."""


def _key_error(zh: str, en: str) -> NoReturn:
    # `from None`: a parser's own exception, which may quote the bytes it choked on, stays out of it.
    raise SigningKeyError(f"{zh} / {en}") from None


class SM2PublicKey:
    """An SM2 public key (a point of sm2p256v1, checked to be on the curve)."""

    __slots__ = ("_point",)

    def __init__(self, point: bytes) -> None:
        try:
            self._point = gmssl_pyx.normalize_sm2_public_key(bytes(point))  # x || y, 64 bytes
        except (gmssl_pyx.InvalidValueError, TypeError, ValueError):
            _key_error(
                "不是 SM2 曲线上的公钥（应为 04||x||y、x||y 或压缩点）",
                "not a public key on the SM2 curve (expected 04||x||y, x||y or a compressed point)",
            )

    @classmethod
    def from_hex(cls, text: str) -> SM2PublicKey:
        try:
            raw = bytes.fromhex(text.strip())
        except (AttributeError, ValueError):
            _key_error("SM2 公钥不是十六进制", "the SM2 public key is not hexadecimal")
        return cls(raw)

    @classmethod
    def from_pem(cls, pem: bytes | str) -> SM2PublicKey:
        """A ``PUBLIC KEY`` (SubjectPublicKeyInfo) or an SM2 ``CERTIFICATE`` (its key; the certificate
        itself is not checked here: trusting it is the caller's decision)."""
        label, der = _unarmor(pem)
        try:
            if label == "CERTIFICATE":
                spki = asn1_x509.Certificate.load(der)["tbs_certificate"]["subject_public_key_info"]
            elif label == "PUBLIC KEY":
                spki = asn1_keys.PublicKeyInfo.load(der)
            else:
                _key_error(f"不支持的 PEM 类型 {label}", f"unsupported PEM type {label}")
            _require_sm2(spki["algorithm"]["algorithm"].native, spki["algorithm"]["parameters"])
            point = bytes(spki["public_key"].native)
        except SigningKeyError:
            raise
        except (ValueError, TypeError, KeyError):
            _key_error("PEM 内容不是 SM2 公钥", "the PEM does not hold an SM2 public key")
        return cls(point)

    def to_bytes(self) -> bytes:
        """The uncompressed point 04 || x || y (65 bytes)."""
        return b"\x04" + self._point

    def hex(self) -> str:
        return self.to_bytes().hex()

    def to_pem(self) -> bytes:
        """SubjectPublicKeyInfo, as ``openssl pkey -pubout`` writes an SM2 key."""
        spki = asn1_keys.PublicKeyInfo(
            {"algorithm": {"algorithm": "ec", "parameters": _sm2_parameters()}, "public_key": self.to_bytes()}
        )
        return asn1_pem.armor("PUBLIC KEY", spki.dump())

    def fingerprint(self) -> str:
        """First 16 hex digits of SHA-256 over the uncompressed point: names the key in logs."""
        return hashlib.sha256(self.to_bytes()).hexdigest()[:16]

    def _verify(self, data: bytes, der: bytes) -> bool:
        return bool(gmssl_pyx.sm2_verify(self._point, data, der, signer_id=SM2_USER_ID))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SM2PublicKey) and other._point == self._point

    def __hash__(self) -> int:
        return hash(self._point)

    def __repr__(self) -> str:
        return f"SM2PublicKey({self.fingerprint()})"


class SM2PrivateKey:
    """An SM2 private key with its public key. Its value never appears in repr, str or errors."""

    __slots__ = ("_secret", "public_key")

    def __init__(self, secret: bytes, public_key: SM2PublicKey) -> None:
        if not isinstance(public_key, SM2PublicKey):
            raise TypeError("an SM2PrivateKey needs its SM2PublicKey")
        secret = bytes(secret)
        if len(secret) != 32 or not 1 <= int.from_bytes(secret, "big") <= SM2_CURVE_ORDER - 2:
            _key_error("SM2 私钥须为 [1, n-2] 内的 32 字节整数", "an SM2 private key is a 32-byte integer in [1, n-2]")
        self._secret = secret
        self.public_key = public_key
        # GmSSL's sign derives the public key from the private one itself; a signature that the given
        # public key verifies proves the two belong together.
        try:
            signature = gmssl_pyx.sm2_sign(secret, public_key._point, _PAIR_CHECK, signer_id=SM2_USER_ID)
        except (gmssl_pyx.GmsslInnerError, ValueError):
            signature = b""
        if not signature or not public_key._verify(_PAIR_CHECK, signature):
            _key_error("公钥与该 SM2 私钥不配对", "the public key does not belong to this SM2 private key")

    @classmethod
    def generate(cls) -> SM2PrivateKey:
        public, secret = gmssl_pyx.sm2_key_generate()
        return cls(secret, SM2PublicKey(public))

    @classmethod
    def from_hex(cls, private_hex: str, public: str | SM2PublicKey) -> SM2PrivateKey:
        """The 64 hex digits of the private value, and its public key (hex or loaded)."""
        try:
            secret = bytes.fromhex(private_hex.strip())
        except (AttributeError, ValueError):
            _key_error("SM2 私钥不是十六进制", "the SM2 private key is not hexadecimal")
        return cls(secret, public if isinstance(public, SM2PublicKey) else SM2PublicKey.from_hex(public))

    @classmethod
    def from_pem(cls, pem: bytes | str, public: SM2PublicKey | None = None) -> SM2PrivateKey:
        """PKCS#8 ``PRIVATE KEY`` or SEC1 ``EC``/``SM2 PRIVATE KEY`` on sm2p256v1 (not encrypted). The public key
        is taken from the PEM; give it only for a PEM that lacks it."""
        label, der = _unarmor(pem)
        try:
            if label == "PRIVATE KEY":
                info = asn1_keys.PrivateKeyInfo.load(der)
                algorithm = info["private_key_algorithm"]
                _require_sm2(algorithm["algorithm"].native, algorithm["parameters"])
                ec_key = info["private_key"].parsed
            elif label in ("EC PRIVATE KEY", "SM2 PRIVATE KEY"):  # SEC1; OpenSSL 3 labels an SM2 one so
                ec_key = asn1_keys.ECPrivateKey.load(der)
                _require_sm2("ec", ec_key["parameters"])
            elif label == "ENCRYPTED PRIVATE KEY":
                _key_error(
                    "加密的私钥：请先用 openssl pkey 解密后再加载",
                    "an encrypted private key: decrypt it first (openssl pkey)",
                )
            else:
                _key_error(f"不支持的 PEM 类型 {label}", f"unsupported PEM type {label}")
            value = int.from_bytes(ec_key["private_key"].contents, "big")
            embedded = ec_key["public_key"].native
        except SigningKeyError:
            raise
        except (ValueError, TypeError, KeyError):
            _key_error("PEM 内容不是 SM2 私钥", "the PEM does not hold an SM2 private key")
        if embedded is not None:
            found = SM2PublicKey(bytes(embedded))
            if public is not None and public != found:
                _key_error("给出的公钥与 PEM 中的公钥不同", "the public key given differs from the one in the PEM")
            public = found
        if public is None:
            _key_error("PEM 中没有公钥：请同时给出公钥", "the PEM holds no public key: give it as well")
        if value >= 1 << 256:
            _key_error("SM2 私钥超过 32 字节", "the SM2 private key is longer than 32 bytes")
        return cls(value.to_bytes(32, "big"), public)

    def to_pem(self) -> bytes:
        """PKCS#8 with the public key, as ``openssl genpkey -algorithm SM2`` writes it (unencrypted:
        store it 0600, as the pki role does its keys)."""
        ec_key = asn1_keys.ECPrivateKey(
            {
                "version": "ecPrivkeyVer1",
                "private_key": int.from_bytes(self._secret, "big"),
                "public_key": self.public_key.to_bytes(),
            }
        )
        ec_key.set_key_size(32)
        info = asn1_keys.PrivateKeyInfo(
            {
                "version": 0,
                "private_key_algorithm": {"algorithm": "ec", "parameters": _sm2_parameters()},
                "private_key": ec_key,
            }
        )
        return asn1_pem.armor("PRIVATE KEY", info.dump(force=True))

    def _sign(self, data: bytes) -> bytes:
        return bytes(gmssl_pyx.sm2_sign(self._secret, self.public_key._point, data, signer_id=SM2_USER_ID))

    def __repr__(self) -> str:
        return f"SM2PrivateKey(public={self.public_key.fingerprint()})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("an SM2 private key is not pickled; write it with to_pem() where it belongs")

    def __copy__(self) -> SM2PrivateKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> SM2PrivateKey:
        return self


def generate_sm2_keypair() -> SM2PrivateKey:
    """A new SM2 key pair (the lab's and the simulator's); the public key is ``.public_key``."""
    return SM2PrivateKey.generate()


def load_sm2_private_key(text: bytes | str, public: str | SM2PublicKey | None = None) -> SM2PrivateKey:
    """PEM (public key inside, or ``public``) or the private value in hex (then ``public`` is needed)."""
    if _is_pem(text):
        return SM2PrivateKey.from_pem(text, SM2PublicKey.from_hex(public) if isinstance(public, str) else public)
    if public is None:
        _key_error("十六进制 SM2 私钥须同时给出公钥", "a hex SM2 private key needs its public key too")
    return SM2PrivateKey.from_hex(text.decode("ascii", "replace") if isinstance(text, bytes) else text, public)


def load_sm2_public_key(text: bytes | str) -> SM2PublicKey:
    """PEM (public key or certificate) or hex."""
    if _is_pem(text):
        return SM2PublicKey.from_pem(text)
    return SM2PublicKey.from_hex(text.decode("ascii", "replace") if isinstance(text, bytes) else text)


def load_ecdsa_private_key(pem: bytes, password: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from PEM (PKCS#8 or SEC1, optionally encrypted)."""
    try:
        key = serialization.load_pem_private_key(pem, password)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        _key_error("不是可读取的 PEM 私钥（或口令不对）", "not a readable PEM private key (or a wrong password)")
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        _not_p256(key)
    return key


def load_ecdsa_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from a PEM ``PUBLIC KEY`` or the signer's ``CERTIFICATE`` (its key only: the
    chain and validity are the caller's to check)."""
    try:
        if b"-----BEGIN CERTIFICATE-----" in pem:
            key = x509.load_pem_x509_certificate(pem).public_key()
        else:
            key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        _key_error("不是可读取的 PEM 公钥或证书", "not a readable PEM public key or certificate")
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        _not_p256(key)
    return key


SigningKey = SM2PrivateKey | ec.EllipticCurvePrivateKey
VerifyingKey = SM2PublicKey | ec.EllipticCurvePublicKey | x509.Certificate


def sign(data: bytes, key: SigningKey, signtype: str) -> str:
    """The base64 signature of ``data`` for ``signtype`` ``SM2`` (an SM2PrivateKey) or ``ECDSA`` (a
    P-256 private key). A key that does not fit the signtype is a TypeError; the message names the
    signtype and the key's type, never the key."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("sign() signs bytes; encode text first")
    if signtype == "SM2":
        if not isinstance(key, SM2PrivateKey):
            raise TypeError(f"signtype SM2 needs an SM2PrivateKey, not {type(key).__name__}")
        der = key._sign(bytes(data))
    elif signtype == "ECDSA":
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise TypeError(f"signtype ECDSA needs a P-256 private key, not {type(key).__name__}")
        der = key.sign(bytes(data), ec.ECDSA(hashes.SHA256()))
    else:
        raise ValueError(f"unknown signtype {signtype!r}: use one of {', '.join(SIGNTYPES)}")
    return base64.b64encode(der).decode("ascii")


def verify(data: bytes, signature_b64: str, public: VerifyingKey, signtype: str) -> bool:
    """True only for a valid signature of ``data`` by ``public`` under ``signtype``.

    False -- never an exception -- for anything else: a wrong or tampered signature or message, text
    that is not canonical base64 of DER, a signtype other than ``SM2``/``ECDSA`` (it comes with the
    message), a key that does not fit the signtype, or arguments of the wrong type.
    """
    try:
        der = _signature_der(signature_b64)
        if der is None or not isinstance(data, bytes | bytearray | memoryview):
            return False
        if signtype == "SM2":
            return isinstance(public, SM2PublicKey) and public._verify(bytes(data), der)
        if signtype == "ECDSA":
            key = public.public_key() if isinstance(public, x509.Certificate) else public
            if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
                return False
            key.verify(der, bytes(data), ec.ECDSA(hashes.SHA256()))
            return True
        return False
    except InvalidSignature:
        return False
    except Exception:  # fail closed: whatever else a hostile signature or key provokes is a False too
        return False


def _signature_der(signature_b64: object) -> bytes | None:
    """The DER of a canonical base64 signature, or None."""
    if isinstance(signature_b64, str):
        if not signature_b64.isascii():
            return None
        text = signature_b64.encode("ascii")
    elif isinstance(signature_b64, bytes | bytearray):
        text = bytes(signature_b64)
    else:
        return None
    if not text or len(text) > MAX_SIGNATURE_B64:
        return None
    try:
        der = base64.b64decode(text, validate=True)
        r, s = decode_dss_signature(der)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(der) != text or encode_dss_signature(r, s) != der:
        return None  # non-zero padding bits, BER, trailing bytes: not the one text of this signature
    return der


def _unarmor(pem: bytes | str) -> tuple[str, bytes]:
    raw = pem.encode("ascii", "replace") if isinstance(pem, str) else bytes(pem)
    try:
        label, _headers, der = asn1_pem.unarmor(raw.strip())
    except (ValueError, TypeError):
        _key_error("不是 PEM", "not PEM")
    return str(label), bytes(der)


def _is_pem(text: bytes | str) -> bool:
    return (b"-----BEGIN " if isinstance(text, bytes) else "-----BEGIN ") in text


def _sm2_parameters() -> asn1_keys.ECDomainParameters:
    return asn1_keys.ECDomainParameters(name="named", value="sm2p256v1")


def _require_sm2(algorithm: object, parameters: Any) -> None:
    if algorithm != "ec" or getattr(parameters, "name", None) != "named" or parameters.chosen.dotted != SM2_CURVE_OID:
        _key_error("不是 SM2 曲线（sm2p256v1）上的密钥", "not a key on the SM2 curve (sm2p256v1)")


def _not_p256(key: object) -> NoReturn:
    curve = getattr(getattr(key, "curve", None), "name", type(key).__name__)
    _key_error(
        f"ECDSA 签名须用 P-256 密钥，而这是 {curve}",
        f"ECDSA signing needs a P-256 key, this is {curve} (the pki role's host keys are secp384r1)",
    )
