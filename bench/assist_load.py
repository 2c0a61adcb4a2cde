#!/usr/bin/python3
"""bench/assist_load.py - simulated capture terminals against `medinfer assist-server`, on loopback.

    bench/assist_load.py --bin build/medinfer --model BLOB --frames DIR [--terminals 1,4,16]
                         [--fps 25] [--every 1] [--duration 60] [--kill-at S] [--json OUT]

For each terminal count the script starts a fresh server (its own token file and findings database
in a temporary folder, --port 0 and --port-file), opens one exam per terminal from a workstation
token (POST /v1/exams), and runs that many terminal threads. Each thread walks the frames of DIR
(PNG/JPEG, sorted, looped) at --fps on its own clock, as a terminal's camera would; every --every-th
frame is a target (the automatic trigger), and a target is sent only when the terminal has no
request in flight (one in flight per terminal: targets that fall while one is out are skipped and
counted as skipped). A 503 is honoured as assist-terminal does: no target before its Retry-After
has passed. Per request: the round trip (POST to the end of the answer), the HTTP code, and whether
the answer names the terminal's own exam and terminal - an answer naming any other is a leak, and
the run fails. 503 is a reject (the terminal drops that frame and waits); a refused connection or timeout is
a fault (the terminal shows it and tries the next target).

--kill-at S kills the server with SIGKILL S seconds into each run and restarts it on the same
database and port 2 s later: terminals must show faults and then resume, and at the end every
finding the server acknowledged (finding_ids of a 200 answer) must be in its exam's findings
(GET /v1/exams/{id}/findings) - none lost - and no exam may hold another exam's findings.

Output: a table (terminals, sent, answered, judged, rejects, faults, skipped targets, answers per
second, p50 / p99 / max round trip in ms, leaks, lost findings) and --json with the raw figures. The
round trips are measured here; nothing in `make test` depends on them (tests/test_assist_load.sh
runs this for a few seconds and checks only the counts). Exit status 1 on any leak or lost finding.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse


def percentile(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


class Server:
    """One assist-server process; restartable on the same database and port."""

    def __init__(self, a, work, n_terminals):
        self.a, self.work, self.port, self.proc = a, work, 0, None
        self.tokens = {f"T{i + 1}": f"term-{i + 1}-{os.urandom(8).hex()}" for i in range(n_terminals)}
        self.ws_token = "ws-" + os.urandom(8).hex()
        with open(os.path.join(work, "tokens"), "w") as f:
            f.write(f"{self.ws_token} workstation WS1\n")
            for term, tok in self.tokens.items():
                f.write(f"{tok} terminal {term}\n")
        self.db = os.path.join(work, "findings.sqlite")
        self.log = open(os.path.join(work, "server.log"), "ab")

    def start(self):
        pf = os.path.join(self.work, "port")
        if os.path.exists(pf):
            os.remove(pf)
        cmd = [self.a.bin, "assist-server", "--model", self.a.model, "--tokens", os.path.join(self.work, "tokens"),
               "--db", self.db, "--port", str(self.port), "--port-file", pf]
        if self.a.workers:
            cmd += ["--workers", str(self.a.workers)]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)
        t0 = time.time()
        while not os.path.exists(pf) or not open(pf).read().strip():
            if self.proc.poll() is not None:
                raise SystemExit(f"assist-server exited with {self.proc.returncode}; see {self.work}/server.log")
            if time.time() - t0 > 60:
                raise SystemExit("assist-server did not write its port file within 60 s")
            time.sleep(0.05)
        self.port = int(open(pf).read().strip())

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def request(self, method, path, token, body=None, ctype=None, timeout=10):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            h = {"Authorization": f"Bearer {token}"}
            if ctype:
                h["Content-Type"] = ctype
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            return r.status, r.read(), r.getheader("Retry-After")
        finally:
            c.close()


class Terminal(threading.Thread):
    def __init__(self, srv, name, exam, frames, a, t_start, t_end):
        super().__init__(daemon=True)
        self.srv, self.name, self.exam, self.frames, self.a = srv, name, exam, frames, a
        self.t_start, self.t_end = t_start, t_end
        self.rtt, self.codes, self.leaks, self.acked, self.timing = [], {}, [], [], []
        self.answered_at = []
        self.judged = self.faults = self.skipped = self.sent = 0

    def run(self):
        tok = self.srv.tokens[self.name]
        period = 1.0 / self.a.fps
        k = 0
        while True:
            t_frame = self.t_start + k * period
            if t_frame >= self.t_end:
                return
            now = time.time()
            if t_frame > now:
                time.sleep(t_frame - now)
            if k % self.a.every == 0:
                self.send(tok, k)
                # the frames shown while the request was out are past: the next target is chosen
                # among the frames after the answer
                k_now = int((time.time() - self.t_start) / period)
                if k_now > k + 1:
                    self.skipped += sum(1 for j in range(k + 1, k_now) if j % self.a.every == 0)
                    k = k_now
                    continue
            k += 1

    def send(self, tok, k):
        path, ctype, body = self.frames[k % len(self.frames)]
        q = urllib.parse.urlencode({"exam": self.exam, "timestamp_ms": int(k * 1000 / self.a.fps), "trigger": "auto"})
        t0 = time.time()
        self.sent += 1
        try:
            code, raw, retry = self.srv.request("POST", f"/v1/frames?{q}", tok, body, ctype, timeout=self.a.timeout)
        except (OSError, http.client.HTTPException):
            self.faults += 1
            time.sleep(min(0.2, self.a.timeout))   # a terminal's back-off before its next target
            return
        dt = (time.time() - t0) * 1000
        self.codes[code] = self.codes.get(code, 0) + 1
        if code == 503:   # as assist-terminal does: no target before Retry-After has passed
            try:
                time.sleep(min(float(retry or 1), 5.0))
            except ValueError:
                time.sleep(1.0)
        if code != 200:
            return
        self.rtt.append(dt)
        self.answered_at.append(time.time())
        ans = json.loads(raw)
        if ans.get("exam_id") != self.exam or ans.get("terminal") != self.name:
            self.leaks.append({"frame": k, "sent_for": [self.exam, self.name],
                               "answer_for": [ans.get("exam_id"), ans.get("terminal")]})
        self.judged += bool(ans.get("judged"))
        self.timing.append(ans.get("timing_ms") or {})
        self.acked += ans.get("finding_ids", [])


def load_frames(folder):
    out = []
    for name in sorted(os.listdir(folder)):
        low = name.lower()
        if low.endswith((".png", ".jpg", ".jpeg")) and "_mask" not in low and "_depth" not in low:
            with open(os.path.join(folder, name), "rb") as f:
                out.append((name, "image/png" if low.endswith(".png") else "image/jpeg", f.read()))
    if not out:
        raise SystemExit(f"{folder}: no PNG or JPEG frames")
    return out


def one_run(a, n, frames):
    work = tempfile.mkdtemp(prefix=f"assist_load_{n}_")
    srv = Server(a, work, n)
    srv.start()
    try:
        exams = {}
        for i, term in enumerate(srv.tokens):
            body = json.dumps({"terminal": term, "patient_id": f"LOAD-{n}-{i + 1}", "exam_number": f"E{i + 1}",
                               "age": 50 + i, "sex": "O"}).encode()
            code, raw, _ = srv.request("POST", "/v1/exams", srv.ws_token, body, "application/json")
            if code != 201:
                raise SystemExit(f"POST /v1/exams for {term}: HTTP {code}: {raw[:200]!r}")
            exams[term] = json.loads(raw)["exam_id"]
        t_start = time.time() + 0.5
        t_end = t_start + a.duration
        terms = [Terminal(srv, term, exams[term], frames, a, t_start, t_end) for term in srv.tokens]
        for t in terms:
            t.start()
        killed, restarted_at = False, None
        if a.kill_at:
            time.sleep(max(0.0, t_start + a.kill_at - time.time()))
            srv.kill()
            time.sleep(2)
            srv.start()
            killed, restarted_at = True, time.time()
        for t in terms:
            t.join()
        # every acknowledged finding is in its own exam's list, and no exam holds another's
        lost, foreign = [], []
        for t in terms:
            code, raw, _ = srv.request("GET", f"/v1/exams/{t.exam}/findings", srv.ws_token, timeout=30)
            if code != 200:
                raise SystemExit(f"GET findings of {t.exam}: HTTP {code}")
            have = {f["id"] for f in json.loads(raw)["findings"]}
            lost += [fid for fid in t.acked if fid not in have]
            mine = set(t.acked)
            others = set().union(*[set(o.acked) for o in terms if o is not t])
            foreign += sorted(have & others - mine)
        code, metrics, _ = srv.request("GET", "/metrics", srv.ws_token)
    finally:
        srv.stop()
    rtt = [x for t in terms for x in t.rtt]
    timing = [x for t in terms for x in t.timing]
    codes = {}
    for t in terms:
        for c, v in t.codes.items():
            codes[c] = codes.get(c, 0) + v
    row = {"terminals": n, "duration_s": a.duration, "fps": a.fps, "every": a.every, "killed": killed,
           "sent": sum(t.sent for t in terms), "answered": codes.get(200, 0),
           "judged": sum(t.judged for t in terms), "rejects_503": codes.get(503, 0),
           "other_codes": {str(c): v for c, v in codes.items() if c not in (200, 503)},
           "faults": sum(t.faults for t in terms),
           "answered_after_restart": (sum(1 for t in terms for x in t.answered_at if x > restarted_at)
                                      if killed else None),
           "terminals_answered_after_restart": (sum(1 for t in terms if any(x > restarted_at for x in t.answered_at))
                                                if killed else None), "skipped_targets": sum(t.skipped for t in terms),
           "answers_per_s": codes.get(200, 0) / a.duration, "p50_ms": percentile(rtt, 50),
           "p99_ms": percentile(rtt, 99), "max_ms": max(rtt) if rtt else float("nan"),
           "acknowledged_findings": sum(len(t.acked) for t in terms), "lost_findings": len(lost),
           "leaks": [lk for t in terms for lk in t.leaks], "foreign_findings": len(foreign),
           "metrics_lines": len(metrics.splitlines()) if code == 200 else None,
           "server_timing_p50_ms": {k: percentile([t[k] for t in timing if k in t], 50)
                                    for k in sorted({k for t in timing for k in t})}}
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        row["work"] = work
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default="build/medinfer")
    ap.add_argument("--model", required=True)
    ap.add_argument("--frames", required=True, help="folder of PNG/JPEG frames, sent in name order, looped")
    ap.add_argument("--terminals", default="1,4,16")
    ap.add_argument("--fps", type=float, default=25)
    ap.add_argument("--every", type=int, default=1, help="automatic trigger: every k-th frame is a target")
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--timeout", type=float, default=5, help="a terminal's request timeout (s)")
    ap.add_argument("--workers", type=int, default=0, help="the server's --workers (0: its default)")
    ap.add_argument("--kill-at", type=float, default=0, help="SIGKILL the server this many s into each run")
    ap.add_argument("--keep", action="store_true", help="keep each run's folder (server log, database)")
    ap.add_argument("--json")
    a = ap.parse_args()
    frames = load_frames(a.frames)
    rows = [one_run(a, int(n), frames) for n in a.terminals.split(",")]
    print(f"{'terminals':>9} {'sent':>6} {'answered':>8} {'judged':>6} {'503':>5} {'faults':>6} {'skipped':>7} "
          f"{'ans/s':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'leaks':>5} {'lost':>4}")
    for r in rows:
        print(f"{r['terminals']:>9} {r['sent']:>6} {r['answered']:>8} {r['judged']:>6} {r['rejects_503']:>5} "
              f"{r['faults']:>6} {r['skipped_targets']:>7} {r['answers_per_s']:>6.1f} {r['p50_ms']:>7.1f} "
              f"{r['p99_ms']:>7.1f} {r['max_ms']:>7.1f} {len(r['leaks']):>5} {r['lost_findings']:>4}")
    for r in rows:
        print(f"{r['terminals']:>9} terminals, the server's own split of an answer (median ms): "
              + ", ".join(f"{k} {v:.1f}" for k, v in r["server_timing_p50_ms"].items()))
    print(f"{len(frames)} frames from {a.frames} at {a.fps:g} fps, every {a.every}; {a.duration:g} s per run"
          + (f"; server killed at {a.kill_at:g} s and restarted 2 s later" if a.kill_at else "")
          + f"; load average {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"runs": rows, "frames": a.frames, "model": a.model}, f, indent=1)
    for r in rows:
        if r["killed"]:
            print(f"{r['terminals']:>9} terminals: after the restart {r['answered_after_restart']} answers, "
                  f"{r['terminals_answered_after_restart']} of {r['terminals']} terminals answered again")
    bad = [r for r in rows if r["leaks"] or r["lost_findings"] or r["foreign_findings"]]
    for r in bad:
        print(f"FAIL at {r['terminals']} terminals: {len(r['leaks'])} leaked answers, {r['lost_findings']} "
              f"acknowledged findings lost, {r['foreign_findings']} findings in another exam", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
