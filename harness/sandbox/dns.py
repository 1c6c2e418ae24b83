"""The sandbox's cluster DNS: A records for ``<service>.<namespace>.svc.cluster.local``, nothing else.

Real clusters run CoreDNS; no registry here ships it, and the harness needs one thing from cluster DNS:
pods (the distributed load's workers) reach the Service under test by its DNS name. This answers A
queries for Service names from the API (each answer looked up afresh, 2 s TTL), AAAA with no records and
everything else with NXDOMAIN. It never forwards a query: nothing leaves the sandbox.

Run inside the sandbox's network namespace: ``python -m harness.sandbox.dns ADDRESS API CA TOKEN``.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import sys
import urllib.error
import urllib.request

__all__ = ["answer", "main"]

_DOMAIN = ("svc", "cluster", "local")


def _name(packet: bytes, offset: int) -> tuple[list[str], int]:
    labels = []
    while packet[offset]:
        length = packet[offset]
        labels.append(packet[offset + 1 : offset + 1 + length].decode("ascii", "replace").lower())
        offset += 1 + length
    return labels, offset + 1


def answer(packet: bytes, lookup: object) -> bytes:
    """The response to one query; ``lookup(service, namespace)`` returns an IPv4 address or None."""
    ident, flags, qdcount = struct.unpack("!HHH", packet[:6])
    labels, end = _name(packet, 12)
    qtype, _qclass = struct.unpack("!HH", packet[end : end + 4])
    question = packet[12 : end + 4]
    rd = flags & 0x0100
    address = None
    if len(labels) == 5 and tuple(labels[2:]) == _DOMAIN:
        address = lookup(labels[0], labels[1])  # type: ignore[operator]
    rcode = 0 if address else 3
    records = b""
    if address and qtype == 1:
        records = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 2, 4) + socket.inet_aton(address)
    header = struct.pack("!HHHHHH", ident, 0x8400 | rd | rcode, qdcount, 1 if records else 0, 0, 0)
    return header + question + records


def main(argv: list[str] | None = None) -> int:
    listen, api, ca, token = (argv or sys.argv[1:])[:4]
    context = ssl.create_default_context(cafile=ca)

    def lookup(service: str, namespace: str) -> str | None:
        request = urllib.request.Request(
            f"{api}/api/v1/namespaces/{namespace}/services/{service}", headers={"Authorization": f"Bearer {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
                ip = json.load(response).get("spec", {}).get("clusterIP")
        except (urllib.error.URLError, OSError, ValueError):
            return None
        return str(ip) if ip and ip != "None" else None

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((listen, 53))
    while True:
        packet, peer = sock.recvfrom(512)
        try:
            sock.sendto(answer(packet, lookup), peer)
        except (IndexError, struct.error):
            continue


if __name__ == "__main__":
    raise SystemExit(main())
