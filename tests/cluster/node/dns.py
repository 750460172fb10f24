"""The test node's cluster DNS: the names of Services, nothing else.

    python3 dns.py ADDRESS CLUSTER_DIR APISERVER

Answers A queries for `<service>.<namespace>.svc.cluster.local` with the Service's ClusterIP, read from
the apiserver (CLUSTER_DIR/pki's admin certificate) at most once a second per name; an empty answer (NODATA) for
other types of a Service's name, NXDOMAIN for other names under cluster.local, REFUSED for every name
outside it. It never forwards a query: no pod's lookup leaves the machine. Stands in for CoreDNS, which
the tests do not build; UDP only (what the pods' resolvers send first).
"""

import json
import socket
import ssl
import struct
import sys
import time
import urllib.error
import urllib.request

DOMAIN = "cluster.local"
TTL = 5


def service_ip(ctx, api, namespace, name, cache={}):
    key = (namespace, name)
    hit = cache.get(key)
    if hit and time.monotonic() - hit[0] < 1.0:
        return hit[1]
    ip = None
    try:
        with urllib.request.urlopen(f"{api}/api/v1/namespaces/{namespace}/services/{name}", context=ctx, timeout=2) as r:
            ip = json.loads(r.read())["spec"].get("clusterIP")
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        ip = None
    if ip in ("None", ""):
        ip = None
    cache[key] = (time.monotonic(), ip)
    return ip


def parse_question(packet):
    labels, i = [], 12
    while True:
        n = packet[i]
        if n == 0 or n & 0xC0:
            break
        labels.append(packet[i + 1:i + 1 + n].decode("ascii", "replace").lower())
        i += 1 + n
    qtype, _ = struct.unpack("!HH", packet[i + 1:i + 5])
    return labels, qtype, packet[12:i + 5]


def answer(packet, lookup):
    ident, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if qdcount != 1:
        return None
    labels, qtype, question = parse_question(packet)
    rcode, records = 5, b""  # REFUSED
    if labels[-2:] == DOMAIN.split("."):
        rcode = 3  # NXDOMAIN
        if len(labels) == 5 and labels[2] == "svc":
            ip = lookup(labels[1], labels[0])
            if ip:
                rcode = 0
                if qtype == 1:
                    records = struct.pack("!HHHIH", 0xC00C, 1, 1, TTL, 4) + socket.inet_aton(ip)
    header = struct.pack("!HHHHHH", ident, 0x8400 | (flags & 0x0100) | rcode, 1, 1 if records else 0, 0, 0)
    return header + question + records


def main():
    address, cluster_dir, api = sys.argv[1:4]
    ctx = ssl.create_default_context(cafile=f"{cluster_dir}/pki/ca.crt")
    ctx.load_cert_chain(f"{cluster_dir}/pki/admin.crt", f"{cluster_dir}/pki/admin.key")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 53))
    while True:
        packet, peer = sock.recvfrom(512)
        try:
            reply = answer(packet, lambda ns, name: service_ip(ctx, api, ns, name))
        except (IndexError, struct.error):
            reply = None
        if reply:
            sock.sendto(reply, peer)


if __name__ == "__main__":
    main()
