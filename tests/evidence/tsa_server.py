#!/usr/bin/env python3
"""A real RFC 3161 time-stamping authority on loopback for the evidence tests.

`openssl ts -reply` answers each POSTed TimeStampReq (RFC 3161 section 3.4).
usage: tsa_server.py DIR PORTFILE
  DIR holds ts.cnf (sections tsa_good, tsa_other) written by evidence.sh.
  Paths: /good (TSA certified by the test PKI), /other (TSA from an unrelated CA),
  /wrong (answers a different request: wrong messageImprint and nonce).
The chosen port is written to PORTFILE once the server listens.
"""
import http.server
import os
import subprocess
import sys
import tempfile

DIR = sys.argv[1]
PORTFILE = sys.argv[2]


def reply(query: bytes, section: str) -> bytes:
    with tempfile.TemporaryDirectory(dir=DIR) as t:
        q = os.path.join(t, "q.tsq")
        r = os.path.join(t, "r.tsr")
        with open(q, "wb") as f:
            f.write(query)
        subprocess.run(["openssl", "ts", "-reply", "-config", os.path.join(DIR, "ts.cnf"),
                        "-section", section, "-queryfile", q, "-out", r],
                       check=True, capture_output=True)
        with open(r, "rb") as f:
            return f.read()


def other_query() -> bytes:
    with tempfile.TemporaryDirectory(dir=DIR) as t:
        d = os.path.join(t, "d")
        with open(d, "wb") as f:
            f.write(b"not the signature value")
        return subprocess.run(["openssl", "ts", "-query", "-data", d, "-sha256", "-cert"],
                              check=True, capture_output=True).stdout


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        query = self.rfile.read(n)
        if self.headers.get("Content-Type") != "application/timestamp-query":
            self.send_error(415)
            return
        try:
            if self.path == "/good":
                body = reply(query, "tsa_good")
            elif self.path == "/other":
                body = reply(query, "tsa_other")
            elif self.path == "/wrong":
                body = reply(other_query(), "tsa_good")
            else:
                self.send_error(404)
                return
        except subprocess.CalledProcessError as e:
            sys.stderr.write(e.stderr.decode(errors="replace"))
            self.send_error(500)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
with open(PORTFILE + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(PORTFILE + ".tmp", PORTFILE)
srv.serve_forever()
