#!/usr/bin/env python3
"""Answers the ICMP echo requests that arrive on one interface DELAY_MS late (the lab has no netem).

Usage: echo-delay.py INTERFACE DELAY_MS MARK MAX_SECONDS

The kernel still answers at once; Lab.impairEchoes drops those answers (echo replies out of
INTERFACE without MARK), and this program's answers carry MARK. Prints "ready" once listening.
SIGTERM: stop listening, send the answers still due at their time, exit; EOF on stdin (its parent
died) or MAX_SECONDS: exit at once.
"""
import collections
import select
import signal
import socket
import struct
import sys
import time


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def echo_reply(packet: bytes):
    """(destination, IP packet answering it) for an echo request, else None."""
    ihl = (packet[0] & 0x0F) * 4
    icmp = packet[ihl:]
    if packet[9] != socket.IPPROTO_ICMP or len(icmp) < 8 or icmp[0] != 8:
        return None
    src, dst = packet[12:16], packet[16:20]
    body = b"\0\0\0\0" + icmp[4:]  # type 0 (echo reply), code 0, checksum below; id, seq, data kept
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    # Source = the address asked (the kernel fills in length, id and header checksum).
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 0, 0, 0, 64, socket.IPPROTO_ICMP, 0, dst, src)
    return socket.inet_ntoa(src), header + body


def main() -> None:
    interface, delay_ms, mark, max_seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    rx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
    tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
    draining = []
    signal.signal(signal.SIGTERM, lambda *_: draining.append(True))
    due = collections.deque()  # (monotonic time, destination, packet): one delay, so in time order
    end = time.monotonic() + max_seconds
    print("ready", flush=True)
    while time.monotonic() < end and not (draining and not due):
        now = time.monotonic()
        while due and due[0][0] <= now:
            _, dst, reply = due.popleft()
            tx.sendto(reply, (dst, 0))
        wait = min(due[0][0] - now if due else 0.2, end - now)
        watched = [sys.stdin] + ([] if draining else [rx])
        # A SIGTERM does not cut the wait short (PEP 475): the 0.2 s cap bounds how long it goes unseen.
        readable, _, _ = select.select(watched, [], [], max(wait, 0))
        if sys.stdin in readable and not sys.stdin.buffer.read1(4096):
            return
        if rx in readable:
            answer = echo_reply(rx.recv(65535))
            if answer:
                due.append((time.monotonic() + delay_ms / 1000, *answer))


if __name__ == "__main__":
    main()
