"""Document-signer keys (own) and the trust list (foreign signers), both kept in DATA_DIR.

Own keys live in `DATA_DIR/certificates/signers/` as `<created>-<kid>.key.pem` (PKCS#8, 0600)
and `<created>-<kid>.crt.pem` (a self-signed X.509 document-signer certificate); the newest
one signs, every one whose certificate has not expired still verifies and is published.
Trusted foreign signers live in `DATA_DIR/certificates/trust/<kid>.pem`.

`kid` = the first 8 bytes of SHA-256 over the DER certificate (HCERT spec, section 3.3.1).
Several processes may share DATA_DIR: generation takes a file lock, and each store re-reads
its directory when the directory changes (checked at most once a second).
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier

from db.clock import Clock, as_utc, utc_now

Algorithm = Literal["ES256", "PS256"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

# Extended key usage OIDs of DCC document signers (HCERT spec, section 5.1.1), with the
# variant some member states issued (an extra ".0" arc): test, vaccination, recovery.
EKU_VACCINATION = ObjectIdentifier("1.3.6.1.4.1.1847.2021.1.2")
_EKU_TYPES = {
    f"1.3.6.1.4.1.{arc}1847.2021.1.{n}": kind
    for arc in ("", "0.")
    for n, kind in ((1, "t"), (2, "v"), (3, "r"))
}
RSA_SIGNER_BITS = 2048  # HCERT §3.3.2 (older 3072-bit signers keep verifying)
SIGNER_VALIDITY = timedelta(days=2 * 365)  # how long a key may sign (plus certificate validity)


class KeyFileError(Exception):
    """A key file that cannot be used (wrong type, unreadable, not a certificate)."""


def kid_of(certificate: x509.Certificate) -> bytes:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()[:8]


def key_type(key: PublicKey) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    return f"RSA {key.key_size}"


@dataclass(frozen=True)
class SignerKey:
    kid: bytes
    certificate: x509.Certificate
    private_key: PrivateKey | None = None  # None for a trusted foreign signer
    source: Literal["own", "trusted"] = "own"

    @property
    def public_key(self) -> PublicKey:
        key = self.certificate.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise KeyFileError("unsupported key type")
        return key

    @property
    def alg(self) -> Algorithm:
        return "ES256" if isinstance(self.public_key, ec.EllipticCurvePublicKey) else "PS256"

    @property
    def kid_b64(self) -> str:
        return base64.b64encode(self.kid).decode()

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @cached_property
    def allowed_types(self) -> frozenset[str]:
        """The DCC entry types ("v", "t", "r") this signer may sign; all when it does not say."""
        try:
            eku = self.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except (x509.ExtensionNotFound, ValueError):  # ValueError: a non-DER-canonical extension
            return frozenset("vtr")
        kinds = frozenset(_EKU_TYPES[o.dotted_string] for o in eku if o.dotted_string in _EKU_TYPES)
        return kinds or frozenset("vtr")

    @property
    def not_after(self) -> datetime:
        return as_utc(self.certificate.not_valid_after_utc)

    def describe(self) -> str:
        subject = self.certificate.subject.rfc4514_string()
        return f"{self.kid_b64}  {key_type(self.public_key):<16} until {self.not_after:%Y-%m-%d}  {subject}"


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)


def _self_signed(key: PrivateKey, alg: Algorithm, now: datetime, validity_days: int) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "VaxChannel"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"VaxChannel DSC {alg} {now:%Y%m%d%H%M%S}"),
        ]
    )
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + SIGNER_VALIDITY + timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([EKU_VACCINATION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


def generate_private_key(alg: Algorithm) -> PrivateKey:
    if alg == "PS256":
        # HCERT §3.3.2: RSASSA-PSS with a 2048-bit modulus; verifiers size buffers for it
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_SIGNER_BITS)
    return ec.generate_private_key(ec.SECP256R1())


class _Directory:
    """Re-reads a directory's files when its modification time changes (at most once a second)."""

    def __init__(
        self, path: Path, every: float = 1.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self.every = every
        self._monotonic = monotonic
        self._checked = -1.0
        self._mtime: int | None = None

    def changed(self, force: bool = False) -> bool:
        now = self._monotonic()
        if not force and now - self._checked < self.every:
            return False
        self._checked = now
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime and not force:
            return False
        self._mtime = mtime
        return True


class DocumentSignerStore:
    """Own document-signer keys: the newest signs; all unexpired ones verify and are published."""

    def __init__(
        self,
        data_dir: Path,
        alg: Algorithm,
        validity_days: int,
        clock: Clock = utc_now,
        refresh_seconds: float = 1.0,
    ) -> None:
        self.directory = Path(data_dir) / "certificates" / "signers"
        self.alg: Algorithm = alg
        self.validity_days = validity_days
        self._clock = clock
        self._dir = _Directory(self.directory, refresh_seconds)
        self._keys: list[SignerKey] = []  # oldest first

    def _load(self, force: bool = False) -> None:
        if not self._dir.changed(force):
            return
        keys = []
        for cert_path in sorted(self.directory.glob("*.crt.pem")):
            key_path = cert_path.with_name(cert_path.name.replace(".crt.pem", ".key.pem"))
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            private = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(private, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
                raise KeyFileError(f"{key_path}: unsupported key type")
            keys.append(SignerKey(kid_of(cert), cert, private, "own"))
        self._keys = keys

    def _generate(self, alg: Algorithm) -> SignerKey:
        now = self._clock()
        private = generate_private_key(alg)
        cert = _self_signed(private, alg, now, self.validity_days)
        kid = kid_of(cert)
        stem = f"{now:%Y%m%dT%H%M%S%f}-{kid.hex()}"
        self.directory.mkdir(parents=True, exist_ok=True)
        key_pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write_atomic(self.directory / f"{stem}.key.pem", key_pem, 0o600)
        _write_atomic(self.directory / f"{stem}.crt.pem", cert.public_bytes(serialization.Encoding.PEM))
        return SignerKey(kid, cert, private, "own")

    def current(self) -> SignerKey:
        """The key that signs new certificates; generated on first use."""
        self._load()
        if not self._keys:
            with _file_lock(self.directory.parent / ".signers.lock"):
                self._load(force=True)
                if not self._keys:
                    self._generate(self.alg)
                    self._load(force=True)
        return self._keys[-1]

    def rotate(self, alg: Algorithm | None = None) -> SignerKey:
        """A new key signs from now on; the old ones keep verifying until their certificates end."""
        with _file_lock(self.directory.parent / ".signers.lock"):
            key = self._generate(alg or self.alg)
            self._load(force=True)
        return key

    def live(self) -> list[SignerKey]:
        """Every own key whose certificate may still cover a live HCERT (newest first)."""
        self.current()
        now = self._clock()
        return [k for k in reversed(self._keys) if k.not_after > now]

    def by_kid(self, kid: bytes) -> list[SignerKey]:
        self._load()
        return [k for k in self._keys if k.kid == kid]


def load_certificate(data: bytes) -> x509.Certificate:
    """An X.509 certificate from PEM or DER bytes; KeyFileError when it is none."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise KeyFileError(f"not an X.509 certificate ({exc})") from exc


def check_signer_key(cert: x509.Certificate) -> None:
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise KeyFileError(f"EC key on {key.curve.name}; only P-256 (ES256) is supported")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise KeyFileError(f"RSA key of {key.key_size} bits; at least 2048 are required")
    else:
        raise KeyFileError("only EC P-256 and RSA document-signer certificates are supported")


class TrustStore:
    """Foreign document-signer certificates that /api/verify accepts."""

    def __init__(self, data_dir: Path, refresh_seconds: float = 1.0) -> None:
        self.directory = Path(data_dir) / "certificates" / "trust"
        self._dir = _Directory(self.directory, refresh_seconds)
        self._by_kid: dict[bytes, list[SignerKey]] = {}

    def _load(self, force: bool = False) -> None:
        if not self._dir.changed(force):
            return
        by_kid: dict[bytes, list[SignerKey]] = {}
        for path in sorted(self.directory.glob("*.pem")):
            try:
                cert = load_certificate(path.read_bytes())
            except (KeyFileError, OSError):
                continue
            signer = SignerKey(kid_of(cert), cert, None, "trusted")
            by_kid.setdefault(signer.kid, []).append(signer)
        self._by_kid = by_kid

    def add(self, data: bytes) -> SignerKey:
        """Adds a PEM or DER certificate (EC P-256 or RSA); KeyFileError when it cannot verify HCERTs."""
        cert = load_certificate(data)
        check_signer_key(cert)
        kid = kid_of(cert)
        digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()[:16]
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{digest}.pem"
        if not path.exists():
            _write_atomic(path, cert.public_bytes(serialization.Encoding.PEM))
        self._load(force=True)
        return SignerKey(kid, cert, None, "trusted")

    def all(self) -> list[SignerKey]:
        self._load()
        return [k for keys in self._by_kid.values() for k in keys]

    def by_kid(self, kid: bytes) -> list[SignerKey]:
        self._load()
        return list(self._by_kid.get(kid, ()))


class KeyRing:
    """Every key that may verify: own signers first, then the trust list."""

    def __init__(self, signers: DocumentSignerStore, trust: TrustStore) -> None:
        self.signers = signers
        self.trust = trust

    def by_kid(self, kid: bytes) -> list[SignerKey]:
        return [*self.signers.by_kid(kid), *self.trust.by_kid(kid)]
