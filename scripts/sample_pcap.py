#!/usr/bin/env python3
"""Writes a small capture for `director-xdp replay` against examples/director.json:
clients of the example's VIPs (IPv4 and IPv6, TCP and UDP), an ICMP
packet-too-big quoting a VIP flow, a packet for no VIP and a malformed one.
Documentation addresses only. Usage: sample_pcap.py OUT.pcap"""
import socket
import struct
import sys

DIRECTOR = bytes.fromhex("020000000001")
CLIENT = bytes.fromhex("020000000002")


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def eth(ethertype, payload):
    return DIRECTOR + CLIENT + struct.pack("!H", ethertype) + payload


def ipv4(src, dst, proto, payload):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000, 64, proto, 0,
                    socket.inet_aton(src), socket.inet_aton(dst))
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload


def ipv6(src, dst, nxt, payload):
    return struct.pack("!IHBB16s16s", 0x60000000, len(payload), nxt, 64,
                       socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)) + payload


def tcp_syn(sport, dport):
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x02, 64240, 0, 0)


def udp(sport, dport, data):
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data


packets = [
    eth(0x0800, ipv4("192.0.2.7", "203.0.113.10", 6, tcp_syn(40000, 443))),
    eth(0x0800, ipv4("192.0.2.8", "203.0.113.10", 6, tcp_syn(40001, 80))),
    eth(0x86DD, ipv6("2001:db8:1::7", "2001:db8:10::10", 6, tcp_syn(40002, 443))),
    eth(0x0800, ipv4("192.0.2.9", "203.0.113.53", 17, udp(5353, 53, b"\x12\x34" + b"\0" * 10))),
    eth(0x0800, ipv4("192.0.2.9", "203.0.113.200", 17, udp(5353, 5500, b"hello"))),
    # A router says the backend's reply from the VIP to 2001:db8:1::7 was too big.
    eth(0x86DD, ipv6("2001:db8:ff::1", "2001:db8:10::10", 58,
                     struct.pack("!BBHI", 2, 0, 0, 1280)
                     + ipv6("2001:db8:10::10", "2001:db8:1::7", 6, tcp_syn(443, 40002)))),
    eth(0x0800, ipv4("192.0.2.7", "198.51.100.200", 6, tcp_syn(40000, 443))),
    eth(0x0800, ipv4("192.0.2.7", "203.0.113.10", 6, b"\x9c\x40")),  # TCP header cut short
]

with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for i, p in enumerate(packets):
        f.write(struct.pack("<IIII", 1764288000 + i, 0, len(p), len(p)))
        f.write(p)
