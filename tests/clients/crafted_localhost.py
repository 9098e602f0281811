"""Sends a crafted UDP datagram to 127.0.0.1:PORT out of IFACE to the MAC of the next hop,
as an attacker on the same link would, and waits for an answer on SRC:40000.

  crafted_localhost.py IFACE SRC_IP DST_MAC PORT
Prints "answered" or "no answer"."""

import socket
import struct
import sys

iface, src, dst_mac, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


reply = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
reply.bind((src, 40000))
reply.settimeout(2)

payload = b"crafted"
udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton(src), socket.inet_aton("127.0.0.1"))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
raw.bind((iface, 0))
src_mac = raw.getsockname()[4]
frame = bytes.fromhex(dst_mac.replace(":", "")) + src_mac + b"\x08\x00" + ip + udp
for _ in range(3):
    raw.send(frame)
try:
    reply.recvfrom(100)
    print("answered")
except socket.timeout:
    print("no answer")
