"""The SSRF guard: resolve the host, refuse internal addresses, connect to the one checked.

Refused unless inside ``webhooks.allow_networks``: loopback, private (RFC 1918), link-local
(incl. 169.254.169.254 metadata), CGNAT 100.64.0.0/10, multicast, reserved/unspecified,
IPv6 unique-local fc00::/7, and every IPv6 form that carries one of these IPv4 addresses:
IPv4-mapped (``::ffff:a.b.c.d``), IPv4-compatible (``::a.b.c.d``), SIIT
(``::ffff:0:a.b.c.d``), 6to4 (``2002:AABB:CCDD::/48``), NAT64 (``64:ff9b::/96`` and the
local-use ``64:ff9b:1::/48``) and Teredo (the client's address, XOR-ed in the last 32
bits).

The allow list comes from ``MNO_WEBHOOKS_ALLOW_NETWORKS`` (comma-separated CIDRs), then
the profile's ``webhooks.allow_networks``, then the platform YAML. The delivery adapter
connects to the address returned here (Host header and TLS SNI keep the name), so a DNS
answer cannot change between the check and the connection.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from mno import platform, settings
from mno.errors import BadInput

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

CGNAT = ipaddress.ip_network("100.64.0.0/10")
ULA = ipaddress.ip_network("fc00::/7")
# IPv6 prefixes whose last 32 bits are an IPv4 address
V4_IN_LOW_BITS = [
    ipaddress.ip_network("::/96"),  # IPv4-compatible (deprecated)
    ipaddress.ip_network("::ffff:0:0:0/96"),  # SIIT, IPv4-translated
    ipaddress.ip_network("64:ff9b::/96"),  # NAT64, well-known prefix
    ipaddress.ip_network("64:ff9b:1::/48"),  # NAT64, local use
]


class Refused(Exception):
    """The destination address is not allowed."""


def parse_networks(values: list[str] | str) -> list[IPNetwork]:
    items = values.split(",") if isinstance(values, str) else values
    out: list[IPNetwork] = []
    for item in items:
        item = str(item).strip()
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise BadInput(f"webhooks.allow_networks: {item!r} is not a CIDR") from exc
    return out


def allow_networks() -> list[IPNetwork]:
    env = os.environ.get(settings.ENV_WEBHOOKS_ALLOW_NETWORKS)
    if env is not None:
        return parse_networks(env)
    prof: Any = settings.profile_value("webhooks.allow_networks")
    if prof:
        return parse_networks(prof)
    return parse_networks(platform.load().webhooks.allow_networks)


def embedded_ipv4(addr: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries in a transition form (see the module
    doc), so that the guard judges the address a packet would really reach."""
    out: list[ipaddress.IPv4Address] = []
    if addr.ipv4_mapped is not None:
        out.append(addr.ipv4_mapped)
    if addr.sixtofour is not None:
        out.append(addr.sixtofour)
    if addr.teredo is not None:
        out.append(addr.teredo[1])
    if any(addr in net for net in V4_IN_LOW_BITS) and int(addr) & 0xFFFFFFFF:
        out.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    return out


def is_internal(addr: IPAddress) -> bool:
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return is_internal(addr.ipv4_mapped)
        if any(is_internal(v4) for v4 in embedded_ipv4(addr)):
            return True
    return bool(
        addr.is_loopback
        or addr.is_private
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
        or (isinstance(addr, ipaddress.IPv4Address) and addr in CGNAT)
        or (isinstance(addr, ipaddress.IPv6Address) and addr in ULA)
    )


def check_address(addr: IPAddress, allowed: list[IPNetwork]) -> None:
    if any(addr.version == net.version and addr in net for net in allowed):
        return
    if is_internal(addr):
        raise Refused(f"address {addr} is internal (not in webhooks.allow_networks)")


@dataclass
class Resolver:
    """getaddrinfo with a short cache; returns the first allowed address."""

    allowed: list[IPNetwork]
    ttl_s: float = 30.0

    def __post_init__(self) -> None:
        self._cache: dict[tuple[str, int], tuple[float, list[IPAddress]]] = {}

    def addresses(self, host: str, port: int) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            pass
        key = (host, port)
        hit = self._cache.get(key)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise Refused(f"cannot resolve {host}: {exc}") from exc
        addrs: list[IPAddress] = []
        for info in infos:
            ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if ip not in addrs:
                addrs.append(ip)
        self._cache[key] = (time.monotonic() + self.ttl_s, addrs)
        return addrs

    def resolve(self, host: str, port: int) -> IPAddress:
        """The address to connect to; Refused when every address is internal."""
        addrs = self.addresses(host, port)
        if not addrs:
            raise Refused(f"{host} has no address")
        errors = []
        for addr in addrs:
            try:
                check_address(addr, self.allowed)
                return addr
            except Refused as exc:
                errors.append(str(exc))
        raise Refused(f"{host}: " + "; ".join(errors))
