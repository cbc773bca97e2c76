"""Input safety: which URLs may be fetched, sample key and member name checks.

Only http/https URLs are fetched. Hosts resolving to private, loopback, link-local, reserved,
multicast or unspecified addresses are refused unless ``allow_private=True`` (tests and the
demo use a loopback server). Known limit: the check happens before img2dataset fetches, so a
redirect or a DNS answer that changes between check and fetch is not re-checked.
"""
from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache
from urllib.parse import urlsplit

ALLOWED_SCHEMES = ("http", "https")


class UrlRefused(ValueError):
    def __init__(self, reason: str, detail: str):
        self.reason = reason
        super().__init__(detail)


@lru_cache(maxsize=65536)
def _resolve(host: str) -> tuple[str, ...]:
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return tuple(sorted({i[4][0] for i in infos}))


def _is_private(addr: str) -> bool:
    ip = ipaddress.ip_address(addr.split("%")[0])
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved
            or ip.is_multicast or ip.is_unspecified)


def check_url(url: str, allow_private: bool = False, resolve: bool = True) -> str:
    """Return the URL (stripped) or raise ``UrlRefused(reason, detail)``.

    Reasons: malformed_url, unsupported_scheme, private_address, unresolvable_host.
    """
    if not isinstance(url, str) or not url.strip():
        raise UrlRefused("malformed_url", f"empty or non-text URL: {url!r}")
    url = url.strip()
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise UrlRefused("malformed_url", "URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a bad port
    except ValueError as e:
        raise UrlRefused("malformed_url", str(e)) from e
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        if not parts.scheme:
            raise UrlRefused("malformed_url", f"not an absolute URL: {url[:200]!r}")
        raise UrlRefused("unsupported_scheme", f"scheme {parts.scheme!r} is not http/https")
    host = parts.hostname
    if not host:
        raise UrlRefused("malformed_url", f"no host in {url[:200]!r}")
    _ = port
    try:
        literal = ipaddress.ip_address(host)
        addrs: tuple[str, ...] = (str(literal),)
    except ValueError:
        if host.lower() == "localhost" or host.lower().endswith(".localhost"):
            addrs = ("127.0.0.1",)
        elif not resolve:
            return url
        else:
            try:
                addrs = _resolve(host)
            except (OSError, UnicodeError) as e:
                raise UrlRefused("unresolvable_host", f"{host}: {e}") from e
    if not allow_private and any(_is_private(a) for a in addrs):
        raise UrlRefused("private_address", f"{host} resolves to a private/loopback address "
                         "(set download.allow_private=true to allow)")
    return url

