"""Private keys for tests, made at run time: the repository holds no key, not even a placeholder's markers."""

from __future__ import annotations

from functools import cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def new_rsa_key() -> tuple[str, rsa.RSAPublicKey]:
    """A fresh 2048-bit RSA key: its private half as PKCS#8 PEM (what GitHub hands an App's owner), and its
    public half (what GitHub keeps to check the App's JWTs)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode("ascii")
    return pem, key.public_key()


@cache
def private_key_pem(name: str) -> str:
    """One key per `name` for the whole session (making one takes tens of milliseconds)."""
    return new_rsa_key()[0]


def pem_markers() -> tuple[str, str]:
    """A PEM private key's first and last lines, for tests that wrap a body of their own in them."""
    lines = private_key_pem("markers").strip().splitlines()
    return lines[0], lines[-1]
