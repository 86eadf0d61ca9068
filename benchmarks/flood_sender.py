"""The flood sender the data-plane benchmark runs inside a namespace.

Usage: flood_sender.py DST PORT COUNT RATE MAX_TIME [SRC]
Sends COUNT UDP datagrams (or, to port 179, TCP resets from SRC) to DST at RATE pps (0:
unpaced), for at most MAX_TIME seconds. It prints what it did as JSON, with CLOCK_MONOTONIC
times (system-wide, so comparable with the benchmark's time.monotonic()).
"""
import json, socket, sys, time
dst, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rate, max_time = float(sys.argv[4]), float(sys.argv[5])
if port == 179:
    # TCP RST segments to the BGP port: the unmetered class, which measures the relay itself.
    # The receiving kernel counts each (Tcp InSegs) and, as it is a reset, answers none.
    import struct
    src = sys.argv[6]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    header = struct.pack("!HHIIBBHHH", 40179, port, 1, 0, 5 << 4, 0x04, 0, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(header))
    words = sum(struct.unpack("!%dH" % ((len(pseudo) + len(header)) // 2), pseudo + header))
    while words >> 16:
        words = (words & 0xFFFF) + (words >> 16)
    payload = header[:16] + struct.pack("!H", ~words & 0xFFFF) + header[18:]
    addr = (dst, 0)
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = b"taprouter-bench-" + b"x" * 2
    addr = (dst, port)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
sent = errors = 0
mono = time.monotonic
t0 = mono()
deadline = t0 + max_time
while sent < count:
    now = mono()
    if now >= deadline:
        break
    due = count if rate <= 0 else min(count, int((now - t0) * rate) + 1)
    while sent < due:
        try:
            s.sendto(payload, addr)
            sent += 1
        except OSError:
            errors += 1
            break
    if rate > 0:
        time.sleep(0.0002)
t1 = mono()
print(json.dumps({"sent": sent, "errors": errors, "t0": t0, "t1": t1}))
