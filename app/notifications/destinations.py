"""Where a webhook may go: public addresses, or private ones the administrator allowed.

The check runs when a rule is written and again before each send (DNS can
change between the two); the send then connects to the address it checked.
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


def _is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
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
    """The first address of the URL's host, once every address it has is acceptable.

    Every address must pass, not only the first: a resolver may answer in any
    order, and the client could otherwise be steered to a private one.

    Raises: DestinationRefused, DestinationUnresolved.
    """
    scheme, host, port = parse_url(url)
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
                "multicast or reserved address; list it in SIGNVAULT_WEBHOOK_ALLOWED_HOSTS to allow it"
            )
    if not addresses:
        raise DestinationUnresolved(f"the host {host} has no address")
    return Destination(
        url=url, scheme=scheme, host=host, port=port, address=addresses[0]
    )
