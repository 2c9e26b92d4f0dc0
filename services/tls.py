"""TLS for the services and their clients: certificates from PEM files, read again when they
change (a rotated certificate is served from the next connection on), mutual TLS when a
client CA is configured, and plaintext only where it is safe or asked for."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Any

import grpc

from services.config import ClientTlsConfig, Endpoint, TlsConfig
from services.errors import ConfigError
from services.watched_files import WatchedFiles, check_regular_file

log = logging.getLogger("bgm")


def _read(path: Path, what: str) -> bytes:
    check_regular_file(path, f"the {what}")
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read the {what} {path}: {error.strerror}") from None


def _certificates(data: bytes, what: str, path: Path) -> list[Any]:
    """The PEM certificates in `data` (the file at `path`), at least one."""
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(f"the {what} {path} holds no PEM certificate") from None


def _checked_pair(key: bytes, chain: bytes, key_file: Path, cert_file: Path, whose: str) -> None:
    """The key and certificate chain are PEM that gRPC can use, the key the certificate's
    (a server's had each been reported as "cannot listen on ...: Failed to bind to address",
    gRPC's word for any server credentials it cannot use; a client's as UNAVAILABLE,
    "Failed to create security handshaker")."""
    from cryptography.hazmat.primitives import serialization

    certificate = _certificates(chain, f"{whose} certificate", cert_file)[0]
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"the {whose} key {key_file} holds no unencrypted PEM key") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if private.public_key().public_bytes(serialization.Encoding.DER, public) != (
        certificate.public_key().public_bytes(serialization.Encoding.DER, public)
    ):
        raise ConfigError(f"the {whose} key {key_file} is not the key of {cert_file}")


def _server_certificate(tls: TlsConfig) -> grpc.ServerCertificateConfiguration:
    pair = (_read(tls.key_file, "TLS key"), _read(tls.cert_file, "TLS certificate"))
    _checked_pair(*pair, tls.key_file, tls.cert_file, "TLS")
    root = _read(tls.client_ca_file, "client CA") if tls.client_ca_file else None
    if root is not None:
        assert tls.client_ca_file is not None
        _certificates(root, "client CA", tls.client_ca_file)
    return grpc.ssl_server_certificate_configuration([pair], root_certificates=root)


def server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    """gRPC asks for the certificate at every handshake: a rotated one is served from the
    next connection on."""
    files = [p for p in (tls.cert_file, tls.key_file, tls.client_ca_file) if p]
    certificate = WatchedFiles(files, lambda: _server_certificate(tls), "the TLS certificate")
    return grpc.dynamic_ssl_server_credentials(
        certificate.value, certificate.reloaded,
        require_client_authentication=tls.client_ca_file is not None,
    )  # fmt: skip


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_plaintext(name: str, endpoint: Endpoint) -> None:
    """Plaintext on a non-loopback address only when the config says so (and then a
    warning): anyone who can reach the port could otherwise read the traffic."""
    if endpoint.tls is not None or is_loopback(endpoint.host):
        return
    if not endpoint.allow_plaintext:
        raise ConfigError(
            f"the {name} would listen on {endpoint.host} without TLS: give serving.{name}.tls "
            f"(cert_file, key_file), or set serving.{name}.allow_plaintext: true where a mesh "
            "or proxy in front encrypts the traffic"
        )
    log.warning("%s listens on %s without TLS (allow_plaintext)", name, endpoint.host)


def channel_tls_files(tls: ClientTlsConfig) -> list[Path]:
    return [p for p in (tls.ca_file, tls.cert_file, tls.key_file) if p]


def channel_credentials(tls: ClientTlsConfig) -> grpc.ChannelCredentials:
    """Checked as a server's are (a CA or client certificate gRPC could not use had been
    UNAVAILABLE at the first call, "Failed to create security handshaker")."""
    root = _read(tls.ca_file, "CA") if tls.ca_file else None
    if root is not None:
        assert tls.ca_file is not None
        _certificates(root, "CA", tls.ca_file)
    key = _read(tls.key_file, "client key") if tls.key_file else None
    chain = _read(tls.cert_file, "client certificate") if tls.cert_file else None
    if key is not None and chain is not None:
        assert tls.key_file is not None and tls.cert_file is not None
        _checked_pair(key, chain, tls.key_file, tls.cert_file, "client")
    return grpc.ssl_channel_credentials(
        root_certificates=root, private_key=key, certificate_chain=chain
    )


def channel_tls_options(tls: ClientTlsConfig | None) -> list[tuple[str, str]]:
    if tls is not None and tls.server_name:
        return [("grpc.ssl_target_name_override", tls.server_name)]
    return []
