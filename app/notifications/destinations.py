"""Where a webhook or the SMTP client may go: public addresses, or private ones allowed.

The check runs when a rule or the SMTP settings are written and again before
each connection (DNS can change between the two); the connection then goes to
the address it checked.
"""

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class DestinationRefused(Exception):
    """The URL is not a webhook target we may call; the message says why."""


class DestinationUnresolved(DestinationRefused):
    """The host name does not resolve (now)."""


@dataclass(frozen=True)
class AllowList:
    hosts: frozenset[str]
    networks: tuple[IPNetwork, ...]

    @classmethod
    def parse(cls, entries: Sequence[str]) -> "AllowList":
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows(self, host: str, address: IPAddress) -> bool:
        return host in self.hosts or any(address in net for net in self.networks)


@dataclass(frozen=True)
class Destination:
    """A checked webhook URL and the address to connect to."""

    url: str
    scheme: str
    host: str
    port: int
    address: IPAddress


# IPv6 prefixes whose packets are carried to an IPv4 address, or through a
# relay or translator, chosen by whoever runs that relay: the address alone
# says nothing of where they end up (a NAT64 gateway, a 6to4 relay on the
# local network, 64:ff9b:1::/48 with its site-defined encoding). They are
# refused outright rather than decoded; a network that needs them (IPv6-only
# with DNS64) lists the prefix in the allow-list. IPv4-mapped addresses are
# the exception: the kernel connects to the embedded IPv4 address itself, so
# that address is what is checked.
_TRANSITION_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(prefix)
    for prefix in (
        "2002::/16",  # 6to4
        "2001::/32",  # Teredo
        "64:ff9b::/96",  # NAT64, well-known prefix
        "64:ff9b:1::/48",  # NAT64, local use
        "::/96",  # IPv4-compatible (deprecated), with :: and ::1
        "fec0::/10",  # site-local (deprecated, still routed by some networks)
        "192.88.99.0/24",  # the 6to4 relays' anycast (deprecated)
    )
)


def _is_public(address: IPAddress) -> bool:
    """Whether the address is one anyone on the internet can reach, and only that."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if any(address in network for network in _TRANSITION_NETWORKS):
        return False
    return address.is_global and not (
        address.is_multicast or address.is_unspecified or address.is_reserved
    )


def parse_url(url: str) -> tuple[str, str, int]:
    """Scheme, host (lower case, IPv6 without brackets) and port of an http(s) URL.

    Raises: DestinationRefused.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DestinationRefused(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise DestinationRefused("the URL must start with https:// or http://")
    if not parts.hostname:
        raise DestinationRefused("the URL has no host")
    if parts.username or parts.password:
        raise DestinationRefused("the URL must not carry credentials")
    default_port = 443 if parts.scheme == "https" else 80
    return parts.scheme, parts.hostname.rstrip("."), port or default_port


def resolve(url: str, allowed: AllowList) -> Destination:
    """The URL's host, checked, and the address to connect to.

    Raises: DestinationRefused, DestinationUnresolved.
    """
    scheme, host, port = parse_url(url)
    address = resolve_host(
        host, port, allowed, setting="SIGNVAULT_WEBHOOK_ALLOWED_HOSTS"
    )
    return Destination(url=url, scheme=scheme, host=host, port=port, address=address)


def resolve_host(
    host: str, port: int, allowed: AllowList, *, setting: str
) -> IPAddress:
    """The first address of the host, once every address it has is acceptable.

    Every address must pass, not only the first: a resolver may answer in any
    order, and the client could otherwise be steered to a private one.
    `setting` names the allow-list in the refusal.

    Raises: DestinationRefused, DestinationUnresolved.
    """
    host = host.lower().rstrip(".")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DestinationUnresolved(
            f"the host {host} does not resolve: {exc}"
        ) from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    for address in addresses:
        if not _is_public(address) and not allowed.allows(host, address):
            raise DestinationRefused(
                f"the host {host} resolves to {address}, a private, loopback, link-local, "
                f"multicast, reserved or IPv6 transition address; list it in {setting} to allow it"
            )
    if not addresses:
        raise DestinationUnresolved(f"the host {host} has no address")
    return addresses[0]
