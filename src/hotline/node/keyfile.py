"""Private key files encrypted at rest under a passphrase.

Format of an encrypted key file (a plain one is the raw key bytes, as written with
``--no-passphrase`` for tests and demos)::

    "HLK1" | salt[16] | nonce[12] | ChaCha20-Poly1305(key, nonce, key bytes, aad="HLK1")

The key is scrypt(passphrase, salt, n=2^15, r=8, p=1, 32 bytes): about 0.1 s and 32 MiB per
attempt, so a stolen file resists guessing. Both primitives come from pyca/cryptography.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from hotline.errors import ConfigError

MAGIC = b"HLK1"
SALT_BYTES = 16
NONCE_BYTES = 12
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1


def _key(passphrase: str, salt: bytes) -> bytes:
    kdf = Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return kdf.derive(passphrase.encode("utf-8"))


def is_encrypted(data: bytes) -> bool:
    return data.startswith(MAGIC)


def seal_key(data: bytes, passphrase: str) -> bytes:
    if not passphrase:
        raise ConfigError("an empty passphrase protects nothing")
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    return (
        MAGIC + salt + nonce + ChaCha20Poly1305(_key(passphrase, salt)).encrypt(nonce, data, MAGIC)
    )


def open_key(data: bytes, passphrase: str) -> bytes:
    """The key bytes of an encrypted key file; ConfigError on a wrong passphrase or damage."""
    head = len(MAGIC) + SALT_BYTES + NONCE_BYTES
    if not is_encrypted(data) or len(data) < head + 16:
        raise ConfigError("not an encrypted hotline key file")
    salt = data[len(MAGIC) : len(MAGIC) + SALT_BYTES]
    nonce = data[len(MAGIC) + SALT_BYTES : head]
    try:
        return ChaCha20Poly1305(_key(passphrase, salt)).decrypt(nonce, data[head:], MAGIC)
    except InvalidTag as e:
        raise ConfigError("wrong passphrase for the node's key files (or a damaged file)") from e


__all__ = ["is_encrypted", "open_key", "seal_key"]
