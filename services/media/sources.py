"""Fetching the media a request names, confined to what the configuration allows.

file:// only under configured roots; http(s):// only to allowed hosts and never to private,
loopback or link-local addresses unless configured; s3:// and gs:// through fsspec when the
matching extra is installed. Downloads are bounded in size.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
import urllib.request
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from services.errors import (
    InvalidInputError,
    MediaNotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
)


class SourcePolicy(BaseModel):
    """Which URIs a service may read."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Folders whose files file:// URIs may name (the gateway's staging folder is added).
    file_roots: list[Path] = Field(default_factory=list)
    # Host names http(s):// URIs may name; empty = none.
    http_hosts: list[str] = Field(default_factory=list)
    # Let http(s) reach private, loopback and link-local addresses (tests, private clusters).
    allow_private_addresses: bool = False
    # URI prefixes read through fsspec ("s3://bucket/videos/", "gs://...", or any fsspec
    # protocol, e.g. a gateway's staging store); s3:// and gs:// URIs must start with one.
    object_prefixes: list[str] = Field(default_factory=list)
    max_bytes: int = Field(4 * 1024**3, gt=0)
    timeout_s: float = Field(60.0, gt=0)


def _inside(path: Path, roots: list[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved.is_relative_to(root.resolve()) for root in roots)


def file_uri_path(uri: str, roots: list[Path], access: str) -> Path:
    """The path a file:// URI names, if it is on this host and inside `roots` (for `access`,
    "read" or "write")."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.netloc not in ("", "localhost"):
        raise PermissionDeniedError(f"file URI {uri} names another host")
    path = Path(urllib.parse.unquote(parsed.path))
    if not _inside(path, roots):
        raise PermissionDeniedError(f"{uri} is outside the folders this server may {access}")
    return path


def local_path(uri: str, policy: SourcePolicy) -> Path | None:
    """The local file a file:// URI names (checked against the roots); None for other schemes."""
    if urllib.parse.urlparse(uri).scheme != "file":
        return None
    path = file_uri_path(uri, policy.file_roots, "read")
    if not path.is_file():
        raise MediaNotFoundError(f"{uri} does not exist")
    return path


def _check_host(host: str, policy: SourcePolicy) -> None:
    if host not in policy.http_hosts:
        raise PermissionDeniedError(f"host {host} is not on this server's allow-list")
    if policy.allow_private_addresses:
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise MediaNotFoundError(f"host {host} cannot be resolved") from None
    for address in addresses:
        ip = ipaddress.ip_address(str(address).split("%")[0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved:
            raise PermissionDeniedError(f"host {host} resolves to a private address")


def fetch(uri: str, policy: SourcePolicy, destination: Path) -> Path:
    """Make the media `uri` names available as a local file: the file itself for file://,
    else a download to `destination` (which the caller removes)."""
    if any(uri.startswith(prefix) for prefix in policy.object_prefixes):
        return _copy_object(uri, policy, destination)
    path = local_path(uri, policy)
    if path is not None:
        return path
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("http", "https"):
        _check_host(parsed.hostname or "", policy)
        return _download(uri, policy, destination)
    if parsed.scheme in ("s3", "gs"):
        raise PermissionDeniedError(f"{uri} is outside the allowed object-store prefixes")
    raise InvalidInputError(f"unsupported URI scheme in {uri!r}; use file, http(s), s3 or gs")


def _download(uri: str, policy: SourcePolicy, destination: Path) -> Path:
    request = urllib.request.Request(uri, headers={"User-Agent": "bgm"})
    try:
        with urllib.request.urlopen(request, timeout=policy.timeout_s) as response:
            length = int(response.headers.get("Content-Length") or 0)
            if length > policy.max_bytes:
                raise ResourceExhaustedError(
                    f"{uri} is {length} bytes; the limit is {policy.max_bytes}"
                )
            _copy_bounded(response, destination, policy.max_bytes, uri)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise MediaNotFoundError(f"{uri} was not found (HTTP 404)") from None
        raise InvalidInputError(f"{uri} could not be fetched (HTTP {error.code})") from None
    except urllib.error.URLError as error:
        raise MediaNotFoundError(f"{uri} could not be fetched ({error.reason})") from None
    return destination


def _copy_bounded(source, destination: Path, limit: int, uri: str) -> None:
    copied = 0
    with destination.open("wb") as target:
        while chunk := source.read(1 << 20):
            copied += len(chunk)
            if copied > limit:
                raise ResourceExhaustedError(f"{uri} is larger than the limit of {limit} bytes")
            target.write(chunk)


def _copy_object(uri: str, policy: SourcePolicy, destination: Path) -> Path:
    try:
        import fsspec
    except ImportError:
        raise InvalidInputError(
            f"{uri}: object-store URIs need the s3 or gs extra (pip install 'bgm[s3]')"
        ) from None
    try:
        with fsspec.open(uri, "rb") as source:
            _copy_bounded(source, destination, policy.max_bytes, uri)
    except FileNotFoundError:
        raise MediaNotFoundError(f"{uri} does not exist") from None
    except ImportError as error:
        raise InvalidInputError(f"{uri}: the object-store extra is missing ({error})") from None
    return destination
