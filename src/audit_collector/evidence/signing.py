"""Signatures over the manifest chain: a signer the collector holds, a checker an auditor holds.

What is signed is always the same 32 bytes: the SHA-256 of a signed head's canonical JSON
(``heads.py``), signed as a raw message. Two kinds of key:

- in AWS, a KMS asymmetric key (``ECC_NIST_P256``, ``ECDSA_SHA_256``): the collector may only
  ``kms:Sign``; the private key never leaves KMS; anyone with the public key (``aws kms
  get-public-key``) can check a signature offline;
- on a laptop, an Ed25519 key file (PEM, made by ``audit-collector keygen``), with the
  ``cryptography`` package (the ``local`` extra; the Lambda bundle does without it).

A checker is built from a public key file (PEM, either kind), or asks KMS itself (``kms:Verify``;
the scheduled verification in AWS, which then needs no crypto library).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any, Protocol

from audit_collector.errors import ConfigError

ED25519 = "ED25519"
ECDSA_SHA_256 = "ECDSA_SHA_256"


class Signer(Protocol):
    """Signs a head's digest. ``key_id`` names the key in the head, so a checker knows which."""

    key_id: str
    algorithm: str

    def sign(self, digest: bytes) -> bytes: ...


class Checker(Protocol):
    """True when ``signature`` over ``digest`` was made with the key this checker stands for."""

    def check(self, digest: bytes, signature: bytes, algorithm: str) -> bool: ...


class _Kms:
    """A KMS key by id or ARN; its client is made on first use (a bad payload touches no AWS)."""

    def __init__(self, key_id: str, *, client: Any = None) -> None:
        if not key_id:
            raise ConfigError("the signing key's id or ARN is empty")
        self.key_id = key_id
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("kms")
        return self._client


class KmsSigner(_Kms):
    """``kms:Sign`` with an ECC_NIST_P256 key."""

    algorithm = ECDSA_SHA_256

    def sign(self, digest: bytes) -> bytes:
        answer = self.client.sign(KeyId=self.key_id, Message=digest, MessageType="RAW", SigningAlgorithm=ECDSA_SHA_256)
        return answer["Signature"]


class KmsChecker(_Kms):
    """``kms:Verify`` with the key this checker was given."""

    def check(self, digest: bytes, signature: bytes, algorithm: str) -> bool:
        if algorithm != ECDSA_SHA_256:
            return False
        try:
            answer = self.client.verify(
                KeyId=self.key_id,
                Message=digest,
                MessageType="RAW",
                Signature=signature,
                SigningAlgorithm=ECDSA_SHA_256,
            )
        except Exception as exc:
            if "KMSInvalidSignature" in type(exc).__name__ or "InvalidSignature" in str(exc):
                return False
            raise
        return bool(answer.get("SignatureValid"))


class Ed25519Signer:
    """A local Ed25519 private key (PEM). Its ``key_id`` is the public key's fingerprint."""

    algorithm = ED25519

    def __init__(self, private_key: Any) -> None:
        self._key = private_key
        self.key_id = fingerprint(private_key.public_key())

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Ed25519Signer:
        serialization, ed25519 = _crypto("serialization", "ed25519")
        try:
            key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        except FileNotFoundError:
            raise ConfigError(f"no signing key at {path} (make one with: audit-collector keygen {path})") from None
        except ValueError as exc:
            raise ConfigError(f"{path} is not a PEM private key: {exc}") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ConfigError(f"{path} is not an Ed25519 private key")
        return cls(key)

    def sign(self, digest: bytes) -> bytes:
        return self._key.sign(digest)


class PublicKeyChecker:
    """Checks signatures offline with a public key: Ed25519, or the P-256 key of a KMS key."""

    def __init__(self, public_key: Any) -> None:
        self._key = public_key
        self.key_id = fingerprint(public_key)

    @classmethod
    def from_pem(cls, data: bytes, where: str = "the public key") -> PublicKeyChecker:
        (serialization,) = _crypto("serialization")
        try:
            if data.lstrip().startswith(b"-----"):
                key = serialization.load_pem_public_key(data)
            else:  # DER, as `aws kms get-public-key --output text --query PublicKey | base64 -d` gives
                key = serialization.load_der_public_key(data)
        except ValueError as exc:
            raise ConfigError(f"{where} is not a PEM or DER public key: {exc}") from None
        return cls(key)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> PublicKeyChecker:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"no public key at {path}") from None
        return cls.from_pem(data, str(path))

    @classmethod
    def from_kms(cls, key_id: str, *, client: Any = None) -> PublicKeyChecker:
        """The public half of a KMS key (``kms:GetPublicKey``), checked offline from then on."""
        if client is None:
            import boto3

            client = boto3.client("kms")
        return cls.from_pem(client.get_public_key(KeyId=key_id)["PublicKey"], f"the public key of {key_id}")

    def check(self, digest: bytes, signature: bytes, algorithm: str) -> bool:
        exceptions, ec, ed25519, hashes = _crypto("exceptions", "ec", "ed25519", "hashes")
        try:
            if algorithm == ED25519 and isinstance(self._key, ed25519.Ed25519PublicKey):
                self._key.verify(signature, digest)
            elif algorithm == ECDSA_SHA_256 and isinstance(self._key, ec.EllipticCurvePublicKey):
                self._key.verify(signature, digest, ec.ECDSA(hashes.SHA256()))
            else:
                return False
        except exceptions.InvalidSignature:
            return False
        return True


def generate_key(path: str | os.PathLike[str]) -> Path:
    """A new Ed25519 key: the private key at ``path`` (mode 0600), the public one beside it
    (``path`` + ``.pub``), which is what an auditor is given. Refuses to overwrite a key."""
    serialization, ed25519 = _crypto("serialization", "ed25519")
    private_path, public_path = Path(path), Path(f"{path}.pub")
    if private_path.exists():
        raise ConfigError(f"{private_path} exists already; refusing to overwrite a signing key")
    key = ed25519.Ed25519PrivateKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return public_path


def fingerprint(public_key: Any) -> str:
    """``sha256:`` and the first 16 hex digits of the SHA-256 of the key's DER form."""
    import hashlib

    (serialization,) = _crypto("serialization")
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()[:16]


def encode_signature(signature: bytes) -> str:
    return base64.b64encode(signature).decode()


def decode_signature(text: Any) -> bytes | None:
    try:
        return base64.b64decode(str(text), validate=True)
    except ValueError:
        return None


def _crypto(*names: str) -> tuple[Any, ...]:
    """Modules of ``cryptography``, with an error that says how to get it where it is missing."""
    try:
        from cryptography import exceptions
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    except ImportError:  # pragma: no cover - a dev install has it
        raise ConfigError(
            "local signing keys need the cryptography package: pip install 'audit-collector[local]'"
        ) from None
    found = {"exceptions": exceptions, "hashes": hashes, "serialization": serialization, "ec": ec, "ed25519": ed25519}
    return tuple(found[name] for name in names)
