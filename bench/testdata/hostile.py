#!/usr/bin/python3
"""Hostile packets for wanflow's lab test bench/hostile_linux_test.go.

Run with Debian's /usr/bin/python3 (python3-scapy) inside a lab namespace.
Each crafted case is reported on stdout as one JSON line
{"case", "tag", "payload" (hex), "sport", "sent"}; what the script saw
come back is reported as {"icmp": {...}} (lan mode: ICMP to the LAN host)
or {"reply": {...}} (inet mode: anything the router's uplink address sent
to the servers). The Go test holds the expectations; this script only
crafts, sends and reports.

  hostile.py lan  --iface eth0 --router-mac MAC --src HOST --dst SERVER
                  --dport PORT --router-lan ADDR --uplink ADDR --nonce N
  hostile.py inet --iface IF --uplink ADDR --servers S0,S1,S2,S3
                  --live P --ctrl Q --port-lo LO --count N --nonce N
"""

import argparse
import json
import struct
import sys
import threading
import time

from scapy.all import (ICMP, IP, TCP, UDP, AsyncSniffer, Ether, IPOption_EOL,
                       IPOption_NOP, IPOption_RR, L3RawSocket, Raw, conf,
                       get_if_hwaddr, raw)
from scapy.layers.inet import IPerror, TCPerror, UDPerror
from scapy.utils import checksum

conf.verb = 0


def emit(obj):
    print(json.dumps(obj), flush=True)


def payload(nonce, case, size):
    """The tag "wfh:<nonce>:<case>", a space, then a fixed byte pattern up
    to size bytes: the listener compares what arrives byte for byte."""
    head = ("wfh:%s:%s " % (nonce, case)).encode()
    pad = bytes((i * 37 + 11) & 0xFF for i in range(max(size - len(head), 0)))
    return head + pad


def ip_csum(b):
    """Recompute the IPv4 header checksum of bytearray b in place."""
    ihl = (b[0] & 0x0F) * 4
    b[10:12] = b"\x00\x00"
    b[10:12] = struct.pack("!H", checksum(bytes(b[:ihl])))
    return b


def sniffer(iface, lfilter, prn):
    ready = threading.Event()
    s = AsyncSniffer(iface=iface, store=False, lfilter=lfilter, prn=prn,
                     started_callback=ready.set)
    s.start()
    if not ready.wait(5):
        sys.exit("sniffer on %s did not start" % iface)
    time.sleep(0.1)
    return s


def lan(a):
    hmac = get_if_hwaddr(a.iface)
    eth = Ether(src=hmac, dst=a.router_mac, type=0x0800)
    cases = []  # (name, sport, payload, [frames])
    state = {"id": 0x4100, "sport": 41000}

    def new(name, size=48):
        state["id"] += 1
        state["sport"] += 1
        return state["id"], state["sport"], payload(a.nonce, name, size)

    def udp(name, src=None, dst=None, ttl=64, options=None, size=48, l2=None):
        ipid, sport, pl = new(name, size)
        p = IP(src=src or a.src, dst=dst or a.dst, ttl=ttl, id=ipid,
               options=options or [])/UDP(sport=sport, dport=a.dport)/pl
        e = eth if l2 is None else Ether(src=hmac, dst=l2, type=0x0800)
        cases.append((name, sport, pl, [e/p]))

    def mangled(name, fn, extra=b""):
        """A well-formed datagram whose IP bytes fn rewrites."""
        ipid, sport, pl = new(name)
        b = bytearray(raw(IP(src=a.src, dst=a.dst, id=ipid)/UDP(sport=sport, dport=a.dport)/pl))
        b = fn(b)
        cases.append((name, sport, pl, [eth/Raw(bytes(b) + extra)]))

    # Positive control: the same path, well formed.
    udp("ok-plain")

    # Spoofed sources.
    udp("spoof-outside", src="192.0.2.99")
    udp("spoof-router-lan", src=a.router_lan)
    udp("spoof-router-uplink", src=a.uplink)
    udp("spoof-loopback", src="127.0.0.1")
    udp("spoof-zero", src="0.0.0.0")
    udp("spoof-multicast", src="224.0.0.5")

    # Broken IP headers and lengths.
    mangled("trunc-hdr", lambda b: b[:12])

    def ihl_short(b):
        b[0] = 0x44
        return ip_csum(b)
    mangled("ihl-short", ihl_short)

    def ihl_beyond(b):
        b = b[:28]
        b[0] = 0x4F
        b[2:4] = struct.pack("!H", 28)
        return ip_csum(b)
    mangled("ihl-beyond", ihl_beyond)

    def len_long(b):
        b[2:4] = struct.pack("!H", len(b) + 100)
        return ip_csum(b)
    mangled("len-long", len_long)

    def len_short_cut(b):
        b[2:4] = struct.pack("!H", 20 + 8 + 8)
        return ip_csum(b)
    mangled("len-short-cut", len_short_cut)

    mangled("len-short-pad", lambda b: b, extra=b"\xde\xad\xbe\xef" * 4)

    def bad_ip_csum(b):
        b[10] ^= 0x5A
        return b
    mangled("bad-ip-csum", bad_ip_csum)

    def bad_udp_csum(b):
        c = struct.unpack("!H", b[26:28])[0] ^ 0x5555
        b[26:28] = struct.pack("!H", c or 0x1234)
        return b
    mangled("bad-udp-csum", bad_udp_csum)

    def udp_csum_zero(b):
        b[26:28] = b"\x00\x00"
        return b
    mangled("udp-csum-zero", udp_csum_zero)

    def udp_len_big(b):
        b[24:26] = struct.pack("!H", len(b) - 20 + 16)
        return b
    mangled("udp-len-big", udp_len_big)

    # TCP with a data offset beyond the segment.
    ipid, sport, pl = new("tcp-bad-doff", 8)
    cases.append(("tcp-bad-doff", sport, pl,
                  [eth/IP(src=a.src, dst=a.dst, id=ipid)/TCP(sport=sport, dport=a.dport, flags="S", dataofs=15)/pl]))

    # IP options.
    udp("opt-rr", options=[IPOption_RR(routers=["0.0.0.0"] * 3)])
    udp("opt-nop-eol", options=[IPOption_NOP(), IPOption_NOP(), IPOption_NOP(), IPOption_EOL()])

    # TTL.
    udp("ttl0", ttl=0)
    udp("ttl1", ttl=1)
    udp("ttl3", ttl=3)

    # Broadcast and multicast destinations.
    udp("dst-broadcast", dst="255.255.255.255")
    udp("dst-multicast", dst="239.1.2.3", l2="01:00:5e:01:02:03")
    udp("dst-multicast-router-mac", dst="239.1.2.3")

    # Protocols the dataplane does not translate.
    ipid, sport, pl = new("proto-gre", 16)
    cases.append(("proto-gre", sport, pl, [eth/IP(src=a.src, dst=a.dst, id=ipid, proto=47)/Raw(b"\x00\x00\x08\x00" + pl)]))
    ipid, sport, pl = new("icmp-timestamp", 16)
    cases.append(("icmp-timestamp", sport, pl, [eth/IP(src=a.src, dst=a.dst, id=ipid)/ICMP(type=13, id=sport)/pl]))
    # An ICMP error about a packet that belongs to no flow.
    ipid, sport, pl = new("icmp-error-noflow", 16)
    inner = IP(src=a.dst, dst=a.src, id=1)/UDP(sport=7, dport=sport)/pl
    cases.append(("icmp-error-noflow", sport, pl, [eth/IP(src=a.src, dst=a.dst, id=ipid)/ICMP(type=3, code=3)/raw(inner)]))

    # Fragments of one 72-byte UDP datagram (8-byte header, 64-byte
    # payload); each spec lists the data ranges in sending order.
    frags = [
        ("frag-inorder", [(0, 24), (24, 48), (48, 72)]),
        ("frag-ooo", [(48, 72), (0, 24), (24, 48)]),
        ("frag-dup", [(0, 24), (24, 48), (24, 48), (48, 72)]),
        ("frag-overlap", [(0, 32), (24, 56), (56, 72)]),
        ("frag-missing", [(0, 24), (48, 72)]),
    ]
    for name, spec in frags:
        ipid, sport, pl = new(name, 64)
        l4 = raw(IP(src=a.src, dst=a.dst, id=ipid)/UDP(sport=sport, dport=a.dport)/pl)[20:]
        assert len(l4) == 72
        frames = []
        for lo, hi in spec:
            mf = "MF" if hi < len(l4) else 0
            frames.append(eth/IP(src=a.src, dst=a.dst, id=ipid, proto=17, flags=mf, frag=lo // 8)/Raw(l4[lo:hi]))
        cases.append((name, sport, pl, frames))

    seen = []

    def on_icmp(p):
        e = {"src": p[IP].src, "type": int(p[ICMP].type), "code": int(p[ICMP].code)}
        if IPerror in p:
            e["inner_src"], e["inner_dst"] = p[IPerror].src, p[IPerror].dst
        if UDPerror in p:
            e["inner_sport"], e["inner_dport"] = int(p[UDPerror].sport), int(p[UDPerror].dport)
        seen.append(e)

    sn = sniffer(a.iface, lambda p: IP in p and ICMP in p and p[IP].dst == a.src and p[IP].src != a.src, on_icmp)
    s = conf.L2socket(iface=a.iface)
    for name, sport, pl, frames in cases:
        for f in frames:
            s.send(f)
        emit({"case": name, "tag": pl.split(b" ")[0].decode(), "payload": pl.hex(), "sport": sport, "sent": len(frames)})
    s.close()
    time.sleep(0.7)
    sn.stop()
    for e in seen:
        emit({"icmp": e})


def inet(a):
    s0, s1, s2, s3 = a.servers.split(",")
    U = a.uplink
    cases = []

    def add(name, pkts, pl=b""):
        cases.append((name, pl, pkts))

    ports = [p for p in range(a.port_lo, a.port_lo + a.count) if p not in (a.live, a.ctrl)]
    pl = payload(a.nonce, "udp-noflow-range", 32)
    add("udp-noflow-range", [IP(src=s1, dst=U)/UDP(sport=4444, dport=p)/pl for p in ports], pl)
    add("tcp-syn-noflow-range", [IP(src=s1, dst=U)/TCP(sport=4444, dport=p, flags="S", seq=1000 + p) for p in ports])
    pl = payload(a.nonce, "udp-wrong-addr", 32)
    add("udp-wrong-addr", [IP(src=s2, dst=U)/UDP(sport=7, dport=a.live)/pl], pl)
    pl = payload(a.nonce, "udp-wrong-port", 32)
    add("udp-wrong-port", [IP(src=s0, dst=U)/UDP(sport=4444, dport=a.live)/pl], pl)
    # ICMP errors whose embedded header matches no flow: the live NAT port
    # with another remote, an unused NAT port, and TCP where only UDP flows.
    add("icmp-unreach-noflow", [IP(src=s0, dst=U)/ICMP(type=3, code=1)/raw(IP(src=U, dst=s3, id=7)/UDP(sport=a.live, dport=7)/(b"x" * 8))])
    add("icmp-timex-noflow", [IP(src=s2, dst=U)/ICMP(type=11, code=0)/raw(IP(src=U, dst=s2, id=8)/UDP(sport=a.port_lo + a.count + 7, dport=7)/(b"x" * 8))])
    add("icmp-unreach-tcp-noflow", [IP(src=s0, dst=U)/ICMP(type=3, code=3)/raw(IP(src=U, dst=s0, id=9)/TCP(sport=a.live, dport=7, flags="S"))])
    add("echo-request", [IP(src=s1, dst=U)/ICMP(type=8, id=4242, seq=1)/payload(a.nonce, "echo-request", 16)])
    # Positive controls: a reply of the live flow, and an ICMP error about
    # the control flow, must both reach the LAN host.
    pl = payload(a.nonce, "udp-legit", 32)
    add("udp-legit", [IP(src=s0, dst=U)/UDP(sport=7, dport=a.live)/pl], pl)
    add("icmp-unreach-ctrl", [IP(src=s1, dst=U)/ICMP(type=3, code=3)/raw(IP(src=U, dst=s1, id=10)/UDP(sport=a.ctrl, dport=7)/(b"x" * 8))])

    servers = {s0, s1, s2, s3}
    seen = []

    def on_reply(p):
        e = {"src": p[IP].src, "dst": p[IP].dst, "proto": int(p[IP].proto)}
        if TCP in p:
            e.update(sport=int(p[TCP].sport), dport=int(p[TCP].dport), flags=str(p[TCP].flags))
        elif UDP in p:
            e.update(sport=int(p[UDP].sport), dport=int(p[UDP].dport))
        elif ICMP in p:
            e.update(type=int(p[ICMP].type), code=int(p[ICMP].code))
            if TCPerror in p:
                e.update(inner_sport=int(p[TCPerror].sport), inner_dport=int(p[TCPerror].dport))
            elif UDPerror in p:
                e.update(inner_sport=int(p[UDPerror].sport), inner_dport=int(p[UDPerror].dport))
        seen.append(e)

    sn = sniffer(a.iface, lambda p: IP in p and p[IP].src == U and p[IP].dst in servers, on_reply)
    # A raw IP socket: the kernel routes each packet (and fills in its
    # total length and header checksum; these packets are well formed).
    s = L3RawSocket()
    for name, pl, pkts in cases:
        for p in pkts:
            s.send(p)
        emit({"case": name, "tag": pl.split(b" ")[0].decode() if pl else "", "payload": pl.hex(), "sent": len(pkts)})
    s.close()
    time.sleep(0.7)
    sn.stop()
    for e in seen:
        emit({"reply": e})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["lan", "inet"])
    ap.add_argument("--iface", required=True)
    ap.add_argument("--nonce", required=True)
    ap.add_argument("--uplink", required=True)
    ap.add_argument("--router-mac")
    ap.add_argument("--router-lan")
    ap.add_argument("--src")
    ap.add_argument("--dst")
    ap.add_argument("--dport", type=int)
    ap.add_argument("--servers")
    ap.add_argument("--live", type=int)
    ap.add_argument("--ctrl", type=int)
    ap.add_argument("--port-lo", type=int)
    ap.add_argument("--count", type=int)
    a = ap.parse_args()
    if a.mode == "lan":
        lan(a)
    else:
        inet(a)


if __name__ == "__main__":
    main()
