#!/usr/bin/env python3
"""Loopback HTTP server for tests/revocation/revocation.sh.

GET /NAME          serves DIR/NAME (CRLs, caIssuers certificates and PKCS#7 bundles)
POST /replay/NAME  answers any OCSP request with the fixed DIR/NAME (a response recorded for
                   another request: its nonce does not match)
Every request is appended to DIR/requests.log ("METHOD PATH"), so the test can tell what was
fetched. Binds 127.0.0.1 port 0 (a free port chosen by the kernel: tests run in parallel) and
writes the port to PORTFILE once it listens.
usage: http_server.py DIR PORTFILE
"""
import http.server
import os
import sys

DIR = os.path.abspath(sys.argv[1])
PORTFILE = sys.argv[2]


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def note(self):
        with open(os.path.join(DIR, "requests.log"), "a") as f:
            f.write(f"{self.command} {self.path}\n")

    def send(self, code, body=b"", ctype="application/octet-stream"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def file(self, name):
        path = os.path.normpath(os.path.join(DIR, name))
        if not path.startswith(DIR + os.sep) or not os.path.isfile(path):
            return None
        with open(path, "rb") as f:
            return f.read()

    def do_GET(self):
        self.note()
        body = self.file(self.path.lstrip("/"))
        if body is None:
            self.send(404)
        else:
            self.send(200, body)

    def do_POST(self):
        self.note()
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        if not self.path.startswith("/replay/"):
            self.send(404)
            return
        body = self.file(self.path[len("/replay/"):])
        if body is None:
            self.send(404)
        else:
            self.send(200, body, "application/ocsp-response")


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORTFILE + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(PORTFILE + ".tmp", PORTFILE)
srv.serve_forever()
