"""The sandbox's own certificate authority and serving certificate.

kubectl (client-go) does not send a bearer token over plain HTTP, so the API
server speaks TLS like k3s does: a private CA made once per ``LABKIT_HOME``,
written into the kubeconfig as ``certificate-authority-data``.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from labkit.sandbox.netmap import KUBERNETES_SERVICE_IP, SLOTS, plan

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

# cryptography (~15 MB of RSS) is imported only where certificates are made, once per LABKIT_HOME in the daemon:
# the kubelet processes and notebook kernels only need an ssl context trusting the CA.

_VALID_DAYS = 3650


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # an existing file keeps its mode through O_CREAT: narrow it too
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(
    subject: str,
    issuer: x509.Name | None,
    key: ec.EllipticCurvePrivateKey,
    signing_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> x509.Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes"),
                    x509.DNSName("kubernetes.default.svc"),
                    x509.DNSName("kubernetes.default.svc.cluster.local"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    # the kubernetes Service's IP in every address slot, so the certificate outlives a slot change
                    *(x509.IPAddress(ipaddress.ip_address(plan(k).kubernetes_service_ip)) for k in range(SLOTS)),
                ]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def ensure_certificates(directory: Path, service_ip: str = KUBERNETES_SERVICE_IP) -> tuple[Path, Path, Path]:
    """(ca.crt, server.crt, server.key) under *directory*, created on first use.

    The server certificate names the ``kubernetes`` Service's IP of every address slot
    (:mod:`labkit.sandbox.netmap`); one made before slots (``server.slots`` missing) named slot 0's only,
    and is made anew, with its CA, when the sandbox runs in another slot."""
    ca_crt, crt, key_path = directory / "ca.crt", directory / "server.crt", directory / "server.key"
    marker = directory / "server.slots"
    if ca_crt.exists() and crt.exists() and key_path.exists():
        if service_ip == KUBERNETES_SERVICE_IP or marker.exists():
            return ca_crt, crt, key_path
        key_path.unlink()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate("labkit-sandbox-ca", None, ca_key, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _certificate("labkit-sandbox-apiserver", ca_cert.subject, server_key, ca_key, ca=False)
    _write_private(key_path, _key_pem(server_key))
    crt.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    ca_crt.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    marker.write_text(f"{SLOTS}\n")
    return ca_crt, crt, key_path


def server_context(crt: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(crt, key)
    return context


def client_context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))
