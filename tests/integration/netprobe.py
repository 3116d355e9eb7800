# -*- coding: utf-8 -*-
"""An ICMP echo series for the lab, run inside its namespace
(``ip netns exec iaas-lab python netprobe.py ADDRESS ...``) that reports which
replies came back, as one JSON object. Standard library only, so the machine
needs no ping binary.

    netprobe.py 192.168.156.20 --count 100 --interval 0.2
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import sys
import time


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(address: str, count: int, interval: float, timeout: float) -> dict:
    """Send ``count`` echo requests ``interval`` seconds apart; report which came back."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    sent_at = {}
    received = {}
    start = time.monotonic()
    deadline_last = None
    seq = 0
    while True:
        now = time.monotonic()
        if seq < count and now >= start + seq * interval:
            payload = struct.pack("!d", now) + b"iaas-kvm-netprobe"
            header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload
            sock.sendto(packet, (address, 0))
            sent_at[seq] = now
            seq += 1
            if seq == count:
                deadline_last = now + timeout
        if deadline_last is not None and now >= deadline_last:
            break
        wait = max(0.0, min(start + seq * interval - now if seq < count else deadline_last - now, 0.05))
        ready = select.select([sock], [], [], wait)[0]
        if not ready:
            continue
        data, (source, _port) = sock.recvfrom(2048)
        header_len = (data[0] & 0x0F) * 4
        kind, _code, _sum, rid, rseq = struct.unpack("!BBHHH", data[header_len : header_len + 8])
        if kind == 0 and rid == ident and source == address and rseq in sent_at and rseq not in received:
            received[rseq] = time.monotonic() - sent_at[rseq]
    sock.close()
    lost = sorted(set(sent_at) - set(received))
    rtts = sorted(received.values())
    return dict(
        address=address,
        sent=len(sent_at),
        received=len(received),
        lost=lost,
        max_rtt_ms=round(rtts[-1] * 1000, 2) if rtts else None,
        duration_s=round(time.monotonic() - start, 2),
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="ICMP echo series")
    parser.add_argument("address")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for the last reply")
    args = parser.parse_args(argv)
    json.dump(ping(args.address, args.count, args.interval, args.timeout), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
