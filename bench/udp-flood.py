#!/usr/bin/env python3
"""UDP flood for `npm run bench -- newconn`: every packet a new connection, as fast as one core sends.

Usage: udp-flood.py SECONDS SRC DST
One raw socket (IP_HDRINCL; the kernel fills in the IP checksum, id and length; UDP checksum 0 =
none) fed by sendmmsg(2) through ctypes: one syscall per BATCH packets, no Python per packet. On
the 2-core box this offers 540-670k packets in 1.5 s into a gateway that drops them, against 350k
for a send() per packet (a socket or bind() per packet adds syscalls to that), while plain NAT forwards
about 310k: only sendmmsg leaves the gateway, not the flood, as the limit.
The packets are all built up front, one per source port 1024-65535; after each round the
destination port moves on. One source address and a fresh (sport, dport) pair per packet, so NAT
to one address keeps every source port and never searches for a free one.
Prints one JSON line: {"sent": packets, "seconds": the flood's, "cpu": CPU seconds of this process,
start-up included, so the caller can tell other processes' share of this CPU}.
"""
import ctypes
import errno
import json
import resource
import socket
import struct
import sys
import time

FIRST_DPORT = 10000
SPORTS = range(1024, 65536)
BATCH = 256
PACKET = 32  # 20 IP + 8 UDP + 4 payload
MSG_DONTWAIT = 0x40


class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class Msghdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.POINTER(Iovec)),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", Msghdr), ("len", ctypes.c_uint)]


def packets(src: str, dst: str):
    """All SPORTS packets in one buffer, their iovecs and message headers."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0, 64, socket.IPPROTO_UDP, 0, socket.inet_aton(src), socket.inet_aton(dst))
    data = bytearray(b"".join(ip + struct.pack("!HHHH", p, 0, 8 + 4, 0) + b"mwbn" for p in SPORTS))
    base = ctypes.addressof((ctypes.c_char * len(data)).from_buffer(data))
    iov = (Iovec * len(SPORTS))(*[Iovec(base + i * PACKET, PACKET) for i in range(len(SPORTS))])
    msgs = (Mmsghdr * len(SPORTS))()
    for i in range(len(SPORTS)):
        msgs[i].hdr.iov = ctypes.pointer(iov[i])
        msgs[i].hdr.iovlen = 1
    return data, iov, msgs


def flood(seconds: float, src: str, dst: str) -> tuple[int, float]:
    libc = ctypes.CDLL(None, use_errno=True)
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.connect((dst, 0))
    data, _iov, msgs = packets(src, dst)
    view = memoryview(data)
    count = len(SPORTS)
    sent = 0
    start = time.monotonic()
    deadline = start + seconds
    for dport in range(FIRST_DPORT, 65536):
        view[22::PACKET] = bytes([dport >> 8]) * count
        view[23::PACKET] = bytes([dport & 0xFF]) * count
        i = 0
        while i < count:
            # Spins on a full send buffer (the gateway behind): sleeping in send would cost the
            # gateway's CPU a wake-up for every packet it frees.
            n = libc.sendmmsg(s.fileno(), ctypes.byref(msgs, i * ctypes.sizeof(Mmsghdr)), min(BATCH, count - i), MSG_DONTWAIT)
            if n < 0:
                if ctypes.get_errno() not in (errno.EAGAIN, errno.ENOBUFS):
                    raise OSError(ctypes.get_errno(), "sendmmsg")
                n = 0
            i += n
            sent += n
            if time.monotonic() >= deadline:
                return sent, time.monotonic() - start
    return sent, time.monotonic() - start


def main() -> None:
    seconds, src, dst = float(sys.argv[1]), sys.argv[2], sys.argv[3]
    if not 0 < seconds <= 10:
        sys.exit("usage: udp-flood.py SECONDS(0-10] SRC DST")
    sent, elapsed = flood(seconds, src, dst)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"sent": sent, "seconds": elapsed, "cpu": usage.ru_utime + usage.ru_stime}))


main()
