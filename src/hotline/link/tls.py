"""TLS 1.3 between nodes, with each side pinning the other's certificate from its signed card.

A node makes its own TLS key (ECDSA P-256) and a self-signed certificate at ``init``; its contact
card, signed by the node's composite identity key, carries that certificate (``tls``, DER). The
binding between the TLS server and the identity is therefore the card's signature, checked once
by the fingerprint read over the telephone: no public certificate authority takes part.

A client trusts exactly one certificate per peer: the one in the peer's card is the only trust
anchor of its TLS context. The host name is not checked (by design: a node is known by its card,
not by a DNS name, and endpoints may be IP addresses), the certificate chain is (so a server
showing any other certificate, another node's or a proxy's own, fails the handshake before a
byte of HTTP is sent). TLS 1.3 only, both ways.

ECDSA P-256, not Ed25519: OpenSSL's TLS 1.3 accepts both, but the console is served on the
same port and browsers do not accept Ed25519 certificates. The certificate's validity period
carries no meaning (the card is the trust, key rotation replaces it); it is wide so that clocks
that are off do not break the link.
"""

from __future__ import annotations

import hashlib
import ssl
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hotline.errors import ErrorCode, TransportError

#: Not before / not after of every node certificate: validity is not what is checked (the pin is).
CERT_NOT_BEFORE = datetime(2000, 1, 1, tzinfo=UTC)
CERT_NOT_AFTER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def make_tls_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_certificate(name: str, key: ec.EllipticCurvePrivateKey) -> bytes:
    """A self-signed certificate (DER) for node ``name``; the subject is only a label."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"hotline node {name}")])
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(CERT_NOT_BEFORE)
        .not_valid_after(CERT_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def key_pem(key: ec.EllipticCurvePrivateKey, passphrase: str | None) -> bytes:
    """The TLS key as PKCS#8 PEM, encrypted under the node's passphrase when it has one."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode("utf-8"))
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def cert_pem(cert_der: bytes) -> bytes:
    return ssl.DER_cert_to_PEM_cert(cert_der).encode("ascii")


def spki_sha256(cert_der: bytes) -> str:
    """SHA-256 over the certificate's SubjectPublicKeyInfo (hex): the pin as people read it."""
    cert = x509.load_der_x509_certificate(cert_der)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def server_context(cert_file: str, key_file: str, passphrase: str | None) -> ssl.SSLContext:
    """TLS 1.3 only; no client certificate (envelopes authenticate themselves)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(cert_file, key_file, password=passphrase or None)
    return context


def pinned_client_context(cert_der: bytes) -> ssl.SSLContext:
    """A client context that trusts exactly ``cert_der`` and nothing else, over TLS 1.3."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    # The peer is named by its card, not by DNS: the host name is not checked, the pin is.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=cert_der)
    return context


def pin_failure(error: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind a connection error, if that was the cause."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def pin_mismatch(endpoint: str, cause: BaseException) -> TransportError:
    return TransportError(
        f"{endpoint}: the server's TLS certificate is not the one pinned in the peer's card "
        f"({cause}); refused",
        code=ErrorCode.TLS_PIN_MISMATCH,
    )


__all__ = [
    "cert_pem",
    "key_pem",
    "make_certificate",
    "make_tls_key",
    "pin_failure",
    "pin_mismatch",
    "pinned_client_context",
    "server_context",
    "spki_sha256",
]
