#!/usr/bin/env python3
"""Drive a milter directly over the libmilter wire protocol, as an MTA would (issue 6 item 6).

    milter_client.py [--conns N] [--seconds S | --count M] [--expect TEXT] [--mark TEXT]
                     SOCKET FROM TO MESSAGE

SOCKET is unix:PATH or inet:PORT@HOST (the gateway's own syntax). MESSAGE is an RFC 5322 file;
it is sent again and again over N connections at once, each connection carrying one message
after another (MAIL ... end of body, then the next MAIL), the way Postfix reuses a milter
connection within an SMTP session. Every message must come back with SMFIR_REPLBODY holding
TEXT (--expect) and an added/inserted header whose value starts with --mark; any other outcome
(tempfail, reject, a body without TEXT) is counted as a failure and makes the exit status 1.

Prints one line:
    milter <ok> msgs in <s> s = <rate> msgs/s (conns N, failed F, latency avg A ms max X ms)

Wire protocol (libmilter, milter protocol version 6; Sendmail's libmilter/docs and
include/libmilter/mfdef.h): every packet is a 4-octet big-endian length (command octet
included), one command octet, then the data. The MTA sends SMFIC_OPTNEG 'O' (version,
actions, protocol flags), SMFIC_CONNECT 'C', SMFIC_MAIL 'M', SMFIC_RCPT 'R', SMFIC_HEADER 'H'
per field, SMFIC_EOH 'N', SMFIC_BODY 'B' in chunks of at most 65535 octets, SMFIC_BODYEOB
'E'; the milter answers each with SMFIR_CONTINUE 'c' (unless it asked for "no reply" in
the negotiation), and at end of body with modification requests (SMFIR_ADDHEADER 'h',
SMFIR_INSHEADER 'i', SMFIR_CHGHEADER 'm', SMFIR_REPLBODY 'b', ...) followed by a final
answer: 'c' continue, 'a' accept, 'r' reject, 't' tempfail, 'd' discard, 'y' reply code.
"""
import argparse
import socket
import struct
import sys
import threading
import time

SMFI_VERSION = 6
# Every action the MTA allows (SMFIF_ADDHDRS .. SMFIF_SETSYMLIST) and every protocol step it
# can skip or leave unanswered (SMFIP_NOCONNECT .. SMFIP_HDR_LEADSPC): the milter picks.
ACTIONS = 0x1FF
PFLAGS = 0x1FFFFF
P_NOCONNECT, P_NOHELO, P_NOMAIL, P_NORCPT, P_NOBODY, P_NOHDRS, P_NOEOH = (
    0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40)
P_NR_HDR, P_NR_CONN, P_NR_HELO, P_NR_MAIL, P_NR_RCPT, P_NR_EOH, P_NR_BODY = (
    0x80, 0x1000, 0x2000, 0x4000, 0x8000, 0x40000, 0x80000)
FINAL = b"cartdy"
CHUNK = 65535


def packet(cmd, data=b""):
    return struct.pack(">I", len(data) + 1) + cmd + data


def parse_message(path):
    """Header fields (name, value) unfolded as an MTA hands them over, and the CRLF body."""
    raw = open(path, "rb").read().replace(b"\r\n", b"\n")
    head, sep, body = raw.partition(b"\n\n")
    if not sep:
        head, body = raw, b""
    fields = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
        elif b":" in line:
            name, value = line.split(b":", 1)
            fields.append((name.strip(), value.lstrip(b" \t")))
    return fields, body.replace(b"\n", b"\r\n")


class Milter:
    def __init__(self, where):
        if where.startswith("unix:") or where.startswith("local:"):
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.s.connect(where.split(":", 1)[1])
        elif where.startswith("inet:"):
            port, _, host = where[5:].partition("@")
            self.s = socket.create_connection((host or "127.0.0.1", int(port)))
            self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            raise ValueError(f"socket {where}: unix:PATH or inet:PORT@HOST")
        self.f = self.s.makefile("rb")
        self.pflags = 0

    def send(self, data):
        self.s.sendall(data)

    def read(self):
        hdr = self.f.read(5)
        if len(hdr) < 5:
            raise ConnectionError("milter closed the connection")
        n, cmd = struct.unpack(">I", hdr[:4])[0], hdr[4:5]
        data = self.f.read(n - 1)
        if len(data) != n - 1:
            raise ConnectionError("short packet from the milter")
        return cmd, data

    def step(self, cmd, data, skip, noreply):
        """Send one protocol step unless the milter asked to skip it; read its answer."""
        if self.pflags & skip:
            return b"c"
        self.send(packet(cmd, data))
        if self.pflags & noreply:
            return b"c"
        r, _ = self.read()
        return r

    def negotiate(self):
        self.send(packet(b"O", struct.pack(">III", SMFI_VERSION, ACTIONS, PFLAGS)))
        cmd, data = self.read()
        if cmd != b"O" or len(data) < 12:
            raise ConnectionError(f"bad option negotiation answer {cmd!r}")
        _, _, self.pflags = struct.unpack(">III", data[:12])
        # SMFIC_CONNECT: host name, family '4', port, address (libmilter's st_connectinfo).
        r = self.step(b"C", b"localhost\0" + b"4" + struct.pack(">H", 25) + b"127.0.0.1\0",
                      P_NOCONNECT, P_NR_CONN)
        if r != b"c":
            raise ConnectionError(f"connect refused: {r!r}")
        if not self.pflags & P_NOHELO:
            self.send(packet(b"H", b"bench.test\0"))
            if not self.pflags & P_NR_HELO:
                self.read()

    def message(self, sender, rcpt, fields, body):
        """One transaction; returns (final answer, replaced body, added header values)."""
        for cmd, data, skip, nr in (
                (b"M", b"<" + sender + b">\0", P_NOMAIL, P_NR_MAIL),
                (b"R", b"<" + rcpt + b">\0", P_NORCPT, P_NR_RCPT)):
            r = self.step(cmd, data, skip, nr)
            if r != b"c":
                return r, b"", []
        for name, value in fields:
            r = self.step(b"L", name + b"\0" + value + b"\0", P_NOHDRS, P_NR_HDR)
            if r != b"c":
                return r, b"", []
        r = self.step(b"N", b"", P_NOEOH, P_NR_EOH)
        if r != b"c":
            return r, b"", []
        if not self.pflags & P_NOBODY:
            for i in range(0, len(body), CHUNK):
                r = self.step(b"B", body[i:i + CHUNK], 0, P_NR_BODY)
                if r != b"c":
                    return r, b"", []
        # The queue id macro {i}, as Postfix sends it with end of body (the gateway logs it).
        self.send(packet(b"D", b"E" + b"i\0BENCH\0") + packet(b"E"))
        newbody, added = [], []
        while True:
            cmd, data = self.read()
            if cmd == b"b":
                newbody.append(data)
            elif cmd in (b"h", b"i"):
                # SMFIR_INSHEADER carries a 4-octet index before name and value.
                parts = (data[4:] if cmd == b"i" else data).split(b"\0")
                added.append(parts[1] if len(parts) > 1 else b"")
            elif cmd in FINAL:
                return cmd, b"".join(newbody), added
            # 'm' chgheader, 'p' progress and the rest: nothing to check here

    def close(self):
        try:
            self.send(packet(b"Q"))
        finally:
            self.s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--count", type=int, default=0, help="messages in all (overrides --seconds)")
    ap.add_argument("--expect", default="", help="text the replaced body must hold")
    ap.add_argument("--mark", default="decrypted", help="start of an added header's value")
    ap.add_argument("socket")
    ap.add_argument("sender")
    ap.add_argument("rcpt")
    ap.add_argument("message")
    a = ap.parse_args()
    fields, body = parse_message(a.message)
    expect, mark = a.expect.encode(), a.mark.encode()
    sender, rcpt = a.sender.encode(), a.rcpt.encode()
    lock = threading.Lock()
    st = {"ok": 0, "failed": 0, "started": 0, "lat": 0.0, "max": 0.0, "errors": []}
    deadline = [None]

    def take():
        with lock:
            if a.count:
                if st["started"] >= a.count:
                    return False
            elif time.monotonic() >= deadline[0]:
                return False
            st["started"] += 1
            return True

    def worker():
        try:
            m = Milter(a.socket)
            m.negotiate()
        except (OSError, ConnectionError) as e:
            with lock:
                st["errors"].append(str(e))
            return
        try:
            while take():
                t0 = time.monotonic()
                r, newbody, added = m.message(sender, rcpt, fields, body)
                dt = time.monotonic() - t0
                good = (r in (b"c", b"a") and (not expect or expect in newbody) and
                        (not mark or any(v.lstrip().startswith(mark) for v in added)))
                with lock:
                    st["ok" if good else "failed"] += 1
                    st["lat"] += dt
                    st["max"] = max(st["max"], dt)
                    if not good and len(st["errors"]) < 5:
                        st["errors"].append(f"answer {r!r}, {len(newbody)} body octets, "
                                            f"headers {added!r}")
            m.close()
        except (OSError, ConnectionError) as e:
            with lock:
                st["failed"] += 1
                st["errors"].append(str(e))

    threads = [threading.Thread(target=worker) for _ in range(a.conns)]
    t0 = time.monotonic()
    deadline[0] = t0 + a.seconds
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t = time.monotonic() - t0
    done = st["ok"] + st["failed"]
    print(f"milter {st['ok']} msgs in {t:.3f} s = {st['ok'] / t:.1f} msgs/s (conns {a.conns}, "
          f"failed {st['failed']}, latency avg {1000 * st['lat'] / max(done, 1):.1f} ms "
          f"max {1000 * st['max']:.1f} ms)")
    for e in st["errors"]:
        print(f"milter_client: {e}", file=sys.stderr)
    return 0 if st["failed"] == 0 and not st["errors"] and st["ok"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
