"""Input safety: which URLs may be fetched, sample key and member name checks.

Only http/https URLs are fetched. Hosts resolving to private, loopback, link-local, reserved,
multicast or unspecified addresses are refused unless ``allow_private=True`` (tests and the
demo use a loopback server) or the address lies in one of ``allow_networks`` (CIDRs).
``check_url`` runs when the table is planned; ``ingest.fetch`` applies the same policy again
to every hop at fetch time (redirects, a changed DNS answer) and connects to the address it
checked.
"""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from functools import lru_cache
from urllib.parse import urlsplit

ALLOWED_SCHEMES = ("http", "https")


class UrlRefused(ValueError):
    def __init__(self, reason: str, detail: str):
        self.reason = reason
        super().__init__(detail)


def system_resolve(host: str) -> tuple[str, ...]:
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return tuple(sorted({i[4][0] for i in infos}))


# tests replace this to simulate DNS answers (rebinding); ``ingest.fetch`` calls it per hop
RESOLVER: Callable[[str], tuple[str, ...]] = system_resolve


def resolve_host(host: str) -> tuple[str, ...]:
    """The addresses of ``host`` (an IP literal or localhost without a DNS query)."""
    try:
        return (str(ipaddress.ip_address(host)),)
    except ValueError:
        pass
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return ("127.0.0.1",)
    return RESOLVER(host)


@lru_cache(maxsize=65536)
def _resolve(host: str) -> tuple[str, ...]:
    return resolve_host(host)


def _is_private(addr: str) -> bool:
    ip = ipaddress.ip_address(addr.split("%")[0])
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved
            or ip.is_multicast or ip.is_unspecified)


def parse_networks(cidrs: Sequence[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network,
                                                   ...]:
    """CIDRs as networks (``ValueError`` naming a bad one)."""
    out = []
    for c in cidrs:
        try:
            out.append(ipaddress.ip_network(c, strict=False))
        except ValueError as e:
            raise ValueError(f"not a network: {c!r} ({e})") from e
    return tuple(out)


def address_allowed(addr: str, allow_private: bool = False,
                    networks: Sequence[str] = ()) -> bool:
    """Public addresses always; private ones with ``allow_private`` or inside ``networks``."""
    if allow_private or not _is_private(addr):
        return True
    ip = ipaddress.ip_address(addr.split("%")[0])
    return any(ip.version == n.version and ip in n for n in _networks(tuple(networks)))


@lru_cache(maxsize=64)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network,
                                               ...]:
    return parse_networks(cidrs)


def check_url(url: str, allow_private: bool = False, resolve: bool = True,
              allow_networks: Sequence[str] = ()) -> str:
    """Return the URL (stripped) or raise ``UrlRefused(reason, detail)``.

    Reasons: malformed_url, unsupported_scheme, private_address, unresolvable_host.
    """
    url, host = check_syntax(url)
    if not resolve and not _is_literal(host):
        return url
    try:
        addrs = _resolve(host)
    except (OSError, UnicodeError) as e:
        raise UrlRefused("unresolvable_host", f"{host}: {e}") from e
    bad = [a for a in addrs if not address_allowed(a, allow_private, allow_networks)]
    if bad:
        raise UrlRefused("private_address", f"{host} resolves to a private/loopback address "
                         f"{bad[0]} (set download.allow_networks or download.allow_private)")
    return url


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return host.lower() == "localhost" or host.lower().endswith(".localhost")


def check_syntax(url: str) -> tuple[str, str]:
    """(stripped URL, host) of an absolute http(s) URL, or ``UrlRefused``."""
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
    return url, host
