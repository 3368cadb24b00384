"""A hand-made BGP peer for the integration tests: opens a session to a tapnet node from
the address of a configured peer (run it in that peer's namespace), then sends what the
test asks on stdin, one word a line, and says on stdout what it did and what it got.

  good PREFIX         announce PREFIX (ORIGIN IGP, empty AS_PATH, NEXT_HOP us, LOCAL_PREF 100)
  badlen PREFIX       the same with NEXT_HOP's length field saying 9: it overruns the
                      attribute list (RFC 7606 §4: treat-as-withdraw)
  loop PREFIX         AS_PATH [65001 64512]: our AS in it (RFC 4271 §9.1.2: not used)
  wellknown PREFIX    an unknown attribute flagged well-known (RFC 4271 §6.3: NOTIFICATION 3/2)
  keepalive
It proposes hold time 0 (no keepalives needed while the test thinks).
Each sent message is followed by a KEEPALIVE; lines out: "sent WORD", "notification C/S",
"closed". Usage: bgp-craft.py LOCAL REMOTE AS
"""

import select
import socket
import struct
import sys

local, remote, asn = sys.argv[1], sys.argv[2], int(sys.argv[3])


def msg(t, body):
    return b"\xff" * 16 + struct.pack("!HB", 19 + len(body), t) + body


def prefix(p):
    a, l = p.split("/")
    l = int(l)
    return bytes([l]) + socket.inet_aton(a)[: (l + 7) // 8]


def update(attrs, nlri):
    return msg(2, struct.pack("!H", 0) + struct.pack("!H", len(attrs)) + attrs + nlri)


ORIGIN = bytes([0x40, 1, 1, 0])
NEXT_HOP = bytes([0x40, 3, 4]) + socket.inet_aton(local)
LOCAL_PREF = bytes([0x40, 5, 4, 0, 0, 0, 100])
EMPTY_PATH = bytes([0x40, 2, 0])

s = socket.socket()
s.bind((local, 0))
s.settimeout(15)
s.connect((remote, 179))
caps = bytes([1, 4, 0, 1, 0, 1, 65, 4]) + struct.pack("!I", asn)
s.sendall(msg(1, struct.pack("!BHHIB", 4, asn, 0, struct.unpack("!I", socket.inet_aton(local))[0], len(caps) + 2) + bytes([2, len(caps)]) + caps))

buf = b""


def read_messages(timeout):
    """Messages that arrive within `timeout` seconds (None when the peer closed)."""
    global buf
    out = []
    r, _, _ = select.select([s], [], [], timeout)
    if r:
        d = s.recv(65536)
        if not d:
            return None
        buf += d
    while len(buf) >= 19:
        n = struct.unpack("!H", buf[16:18])[0]
        if len(buf) < n:
            break
        out.append(buf[:n])
        buf = buf[n:]
    return out


got_open = got_ka = False
while not (got_open and got_ka):
    ms = read_messages(10)
    if ms is None:
        print("closed", flush=True)
        sys.exit(1)
    for m in ms:
        got_open |= m[18] == 1
        got_ka |= m[18] == 4
s.sendall(msg(4, b""))
print("established", flush=True)

for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    what, p = words[0], (words[1] if len(words) > 1 else "")
    if what == "good":
        s.sendall(update(ORIGIN + EMPTY_PATH + NEXT_HOP + LOCAL_PREF, prefix(p)))
    elif what == "badlen":
        bad = bytes([0x40, 3, 9]) + socket.inet_aton(local)
        s.sendall(update(ORIGIN + EMPTY_PATH + LOCAL_PREF + bad, prefix(p)))
    elif what == "loop":
        path = bytes([0x40, 2, 10, 2, 2]) + struct.pack("!II", 65001, asn)
        s.sendall(update(ORIGIN + path + NEXT_HOP + LOCAL_PREF, prefix(p)))
    elif what == "wellknown":
        s.sendall(update(ORIGIN + EMPTY_PATH + NEXT_HOP + bytes([0x40, 99, 1, 7]), prefix(p)))
    s.sendall(msg(4, b""))
    print("sent", what, flush=True)
    # Whatever came back meanwhile (keepalives, or a NOTIFICATION and the close).
    while True:
        ms = read_messages(0.3)
        if ms is None:
            print("closed", flush=True)
            sys.exit(0)
        if not ms:
            break
        for m in ms:
            if m[18] == 3:
                print("notification %d/%d" % (m[19], m[20]), flush=True)
