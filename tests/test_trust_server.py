#!/usr/bin/python3
"""tests/test_trust_server.py ROOT PORTFILE - the update server of tests/test_trust.sh.

Serves ROOT on 127.0.0.1 exactly like `python3 -m http.server --directory ROOT`, on a free port
the kernel picks (written to PORTFILE, atomically, once listening: no port race, no sleep), plus
two misbehaviours a real network produces:

  /truncate/<path>  promises the whole file in Content-Length, sends the first half, closes
  /stall/<path>     promises the whole file, sends the first half, creates ROOT/stalled, then
                    waits until the client goes away (the test kills the client)

and, for a client that asks more than once in one run (the endoqc model-quality loop asks before
a batch and again when the batch drifts), a server whose answer changes between the questions:

  /seq/<dir>/manifest.json   the k-th request serves ROOT/<dir>/manifest.<k>.json (k = 1, 2, ...;
                             the last one there is repeated); ROOT/<dir>/served counts them
"""
import functools
import http.server
import os
import sys
import threading

LOCK = threading.Lock()
SERVED = {}


class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/seq/") and self.path.endswith("/manifest.json"):
            return self.sequence(self.path[len("/seq/"):-len("/manifest.json")])
        for mode in ("truncate", "stall"):
            prefix = f"/{mode}/"
            if self.path.startswith(prefix):
                return self.misbehave(mode, "/" + self.path[len(prefix):])
        return super().do_GET()

    def sequence(self, d):
        folder = self.translate_path("/" + d)
        with LOCK:
            k = SERVED.get(folder, 0) + 1
            SERVED[folder] = k
            with open(os.path.join(folder, "served"), "w") as f:
                f.write(str(k))
        while k > 1 and not os.path.exists(os.path.join(folder, f"manifest.{k}.json")):
            k -= 1
        with open(os.path.join(folder, f"manifest.{k}.json"), "rb") as f:
            data = f.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def misbehave(self, mode, path):
        with open(self.translate_path(path), "rb") as f:
            data = f.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        if mode == "stall":
            open(os.path.join(ROOT, "stalled"), "w").close()
            self.rfile.read(1)  # b"" once the client's socket is closed (it was killed)
        self.close_connection = True


if __name__ == "__main__":
    ROOT, portfile = sys.argv[1], sys.argv[2]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=ROOT))
    srv.daemon_threads = True
    with open(portfile + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(portfile + ".tmp", portfile)
    srv.serve_forever()
