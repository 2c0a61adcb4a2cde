"""tests/assist_server_test.py BIN WORKDIR - `medinfer assist-server` end to end, through HTTP only
(urllib and raw sockets), run by tests/test_assist_server.sh.

The detector is a small random-weight fasterrcnn_fpn (ResNet-18 without layer4, a 64-channel pyramid, min_size 96) made here with
tools/rcnn_ref.py and written with tools/export.py's writer; its class-score bias makes every
proposal an "adenomatous polyp" (a high-risk label) with probability near 1, so every sharp frame
has lesions and every lesion raises an alert, whatever the random weights find.

Checked: 401 (no token, wrong token, with WWW-Authenticate), 403 (another terminal's exam, the
wrong role, another terminal's thumbnail), 404, 405 (with Allow), 409 (a closed exam), 413 (a
Content-Length over --max-body answered before any body byte is sent; a chunked body growing
past it), 415, 400 with a message (malformed JSON, a missing field, an unknown terminal, a
missing query field, an undecodable image); two terminals on two exams: every answer names its
own exam and terminal, and each exam's findings hold exactly the findings its answers
acknowledged; a dark frame is answered judged=false with the reason; a burst over a one-frame
queue gets 503 with Retry-After; /metrics parses as Prometheus text and counts what was sent;
SIGKILL after acknowledged findings, restart on the same database: every acknowledged finding is
there and --verify-db passes; SIGTERM with frames in flight: each is answered, exit 0; an edited
row and a deleted last row make --verify-db fail (exit 30)."""
import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

try:
    import numpy as np
    import torch
    from PIL import Image
except ImportError as e:   # tests/run.sh counts exit 77 as skipped
    print(f"assist_server_test: needs numpy, torch and PIL ({e})")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import export  # noqa: E402
import rcnn_ref  # noqa: E402

BIN, WORK = os.path.abspath(sys.argv[1]), sys.argv[2]
LABELS = ["__background__", "adenomatous polyp", "non-adenomatous polyp", "ulcer", "other"]
TOK = {"T1": "t1-token-0123456789abcdef", "T2": "t2-token-0123456789abcdef", "WS": "ws-token-0123456789abcdef"}
failures = []


T0 = time.time()


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + f"[{time.time() - T0:5.1f} s] " + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def make_blob(path):
    torch.manual_seed(0)
    meta = rcnn_ref.metadata("resnet18", len(LABELS), labels=LABELS, model_version="test-assist-1",
                             arch="fasterrcnn_fpn", min_size=96, max_size=128, representation_size=64,
                             returned_layers=[1, 2, 3], fpn_channels=64, anchor_sizes=[32, 64, 128, 256],
                             rpn_pre_nms_top_n=100, rpn_post_nms_top_n=20, box_detections_per_img=3)
    model = rcnn_ref.build(meta).eval()
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.mul_(0.01)
        model.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([0.0, 8.0, 0.0, 0.0, 0.0]))
    export.write_safetensors(path, model.state_dict(), meta)


def frame(kind, w=320, h=240, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "dark":
        px = rng.integers(0, 12, (h, w, 3), dtype=np.uint8)
    else:
        px = rng.integers(40, 220, (h, w, 3), dtype=np.uint8)
    b = io.BytesIO()
    Image.fromarray(px).save(b, format="JPEG", quality=90)
    return b.getvalue()


class Server:
    def __init__(self, db, extra=()):
        self.port_file = os.path.join(WORK, "port")
        if os.path.exists(self.port_file):
            os.remove(self.port_file)
        self.log = open(os.path.join(WORK, "server.log"), "ab")
        self.p = subprocess.Popen([BIN, "assist-server", "--model", os.path.join(WORK, "det.safetensors"),
                                   "--tokens", os.path.join(WORK, "tokens"), "--db", db, "--port", "0",
                                   "--port-file", self.port_file, "--max-body", "300000",
                                   "--score-threshold", "0.3", *extra],
                                  stdout=subprocess.DEVNULL, stderr=self.log)
        t0 = time.time()
        while not os.path.exists(self.port_file):
            if self.p.poll() is not None or time.time() - t0 > 60:
                raise SystemExit("assist-server did not start: " + open(os.path.join(WORK, "server.log")).read()[-2000:])
            time.sleep(0.02)
        self.port = int(open(self.port_file).read())

    def stop(self, sig=signal.SIGTERM):
        self.p.send_signal(sig)
        rc = self.p.wait(60)
        self.log.close()
        return rc


def req(port, method, path, token=None, body=None, ctype=None, headers=None):
    """(status, headers, body bytes)"""
    h = dict(headers or {})
    if token:
        h["Authorization"] = "Bearer " + token
    if ctype:
        h["Content-Type"] = ctype
    r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method, headers=h)
    try:
        with urllib.request.urlopen(r, timeout=60) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def jreq(*a, **k):
    st, h, b = req(*a, **k)
    try:
        return st, h, json.loads(b)
    except ValueError:
        return st, h, None


def error_says(body, *words):
    return isinstance(body, dict) and isinstance(body.get("error"), str) and all(w in body["error"] for w in words)


def raw(port, data, read_only_headers=True):
    """sends raw bytes; returns the status line and the response head"""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(data)
        got = b""
        while b"\r\n\r\n" not in got:
            c = s.recv(65536)
            if not c:
                break
            got += c
        return got.decode("latin-1")
    finally:
        s.close()


def post_frame(port, token, exam, ts, img, trigger="auto"):
    return jreq(port, "POST", f"/v1/frames?exam={exam}&timestamp_ms={ts}&trigger={trigger}", token, img, "image/jpeg")


def metrics(port):
    st, h, b = req(port, "GET", "/metrics")
    text = b.decode()
    samples = {}
    ok = st == 200 and h.get("Content-Type", "").startswith("text/plain")
    for line in text.splitlines():
        if not line or line.startswith("#"):
            good = line == "" or bool(re.match(r"# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* ", line))
            if not good:
                print("bad metrics line: " + line)
            ok &= good
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$', line)
        if not m:
            print("bad metrics line: " + line)
            ok = False
            continue
        float(m.group(3))
        samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return ok, samples


def main():
    os.makedirs(WORK, exist_ok=True)
    make_blob(os.path.join(WORK, "det.safetensors"))
    print(f"[{time.time() - T0:5.1f} s] detector blob written", flush=True)
    with open(os.path.join(WORK, "tokens"), "w") as f:
        f.write("# test tokens\n" + "".join(f"{TOK[n]} {'workstation' if n == 'WS' else 'terminal'} {n}\n" for n in TOK))
    db = os.path.join(WORK, "findings.sqlite")
    srv = Server(db, ["--workers", "1", "--queue", "1"])
    port = srv.port
    ws, t1, t2 = TOK["WS"], TOK["T1"], TOK["T2"]
    exam = {"terminal": "T1", "patient_id": "P-0001", "exam_number": "X-1", "age": 63, "sex": "F"}

    # --- authentication and roles
    st, h, b = jreq(port, "POST", "/v1/exams", None, json.dumps(exam).encode(), "application/json")
    check(st == 401 and h.get("WWW-Authenticate", "").startswith("Bearer") and error_says(b, "token"), "401 without a token")
    st, h, b = jreq(port, "POST", "/v1/exams", "wrong-token-0123456789", json.dumps(exam).encode(), "application/json")
    check(st == 401 and h.get("WWW-Authenticate", "").startswith("Bearer") and error_says(b, "not valid"), "401 with a wrong token")
    st, _, b = jreq(port, "POST", "/v1/exams", t1, json.dumps(exam).encode(), "application/json")
    check(st == 403 and error_says(b, "terminal"), "403 when a terminal opens an exam")

    # --- bad bodies
    st, _, b = jreq(port, "POST", "/v1/exams", ws, b'{"terminal": "T1", "patient_id": ', "application/json")
    check(st == 400 and error_says(b, "not valid JSON"), f"400 for malformed JSON: {b}")
    st, _, b = jreq(port, "POST", "/v1/exams", ws, json.dumps({**exam, "age": None}).encode(), "application/json")
    check(st == 400 and error_says(b, "age"), f"400 naming a bad field: {b}")
    bad = dict(exam)
    del bad["sex"]
    st, _, b = jreq(port, "POST", "/v1/exams", ws, json.dumps(bad).encode(), "application/json")
    check(st == 400 and error_says(b, "sex", "missing"), f"400 naming a missing field: {b}")
    st, _, b = jreq(port, "POST", "/v1/exams", ws, json.dumps({**exam, "terminal": "T9"}).encode(), "application/json")
    check(st == 400 and error_says(b, "T9"), f"400 for a terminal not in the token file: {b}")

    # --- two exams, two terminals
    st, _, e1 = jreq(port, "POST", "/v1/exams", ws, json.dumps(exam).encode(), "application/json")
    check(st == 201 and e1["terminal"] == "T1" and e1["status"] == "open" and e1["patient_id"] == "P-0001", "exam 1 opened")
    st, _, e2 = jreq(port, "POST", "/v1/exams", ws,
                     json.dumps({**exam, "terminal": "T2", "patient_id": "P-0002", "sex": "M"}).encode(), "application/json")
    check(st == 201 and e2["terminal"] == "T2", "exam 2 opened")
    E1, E2 = e1["exam_id"], e2["exam_id"]
    st, _, b = jreq(port, "GET", "/v1/exams/current", t1)
    check(st == 200 and b["exam_id"] == E1, "T1's current exam is exam 1")
    st, _, b = jreq(port, "GET", "/v1/exams/current", t2)
    check(st == 200 and b["exam_id"] == E2, "T2's current exam is exam 2")
    st, _, b = jreq(port, "GET", "/v1/exams/current", ws)
    check(st == 403, "403 for a workstation asking for a current exam")
    st, _, b = jreq(port, "GET", f"/v1/exams/{E2}", t1)
    check(st == 403 and error_says(b, "another terminal"), "403 for T1 reading exam 2")
    st, _, b = jreq(port, "GET", f"/v1/exams/{E2}", ws)
    check(st == 200 and b["exam_id"] == E2, "the workstation reads exam 2")

    # --- not found, method
    st, _, b = jreq(port, "GET", "/v1/nothing", ws)
    check(st == 404 and error_says(b), "404 for an unknown path")
    st, _, b = jreq(port, "GET", "/v1/exams/E999999-00000000", ws)
    check(st == 404 and error_says(b, "E999999"), "404 for an unknown exam")
    st, h, b = jreq(port, "GET", "/v1/frames", t1)
    check(st == 405 and h.get("Allow") == "POST" and error_says(b), "405 with Allow for GET /v1/frames")

    img = frame("noise")
    # --- frame refusals
    st, _, b = jreq(port, "POST", f"/v1/frames?exam={E1}&timestamp_ms=1&trigger=auto", t1, img, "text/plain")
    check(st == 415 and error_says(b, "image/jpeg"), "415 for a frame sent as text/plain")
    st, _, b = jreq(port, "POST", f"/v1/frames?exam={E1}&trigger=auto", t1, img, "image/jpeg")
    check(st == 400 and error_says(b, "timestamp_ms", "missing"), f"400 naming a missing query field: {b}")
    st, _, b = jreq(port, "POST", f"/v1/frames?exam={E1}&timestamp_ms=1&trigger=sometimes", t1, img, "image/jpeg")
    check(st == 400 and error_says(b, "trigger"), "400 for a bad trigger")
    st, _, b = post_frame(port, t1, E1, 1, b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    check(st == 400 and error_says(b, "frame"), "400 for a PNG that does not decode (sent as jpeg: signature)")
    st, _, b = jreq(port, "POST", f"/v1/frames?exam={E1}&timestamp_ms=1&trigger=auto", t1, b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "image/png")
    check(st == 400 and error_says(b, "frame"), f"400 for an undecodable PNG: {b}")
    st, _, b = post_frame(port, t1, E2, 1, img)
    check(st == 403 and error_says(b, "another terminal"), "403 for T1 posting to exam 2")
    st, _, b = post_frame(port, ws, E1, 1, img)
    check(st == 403, "403 for a workstation posting a frame")

    # --- 413: declared too large, answered before the body is sent
    head = raw(port, (f"POST /v1/frames?exam={E1}&timestamp_ms=1&trigger=auto HTTP/1.1\r\nHost: x\r\n"
                      f"Authorization: Bearer {t1}\r\nContent-Type: image/jpeg\r\nContent-Length: 1000000000\r\n\r\n").encode())
    check(head.startswith("HTTP/1.1 413"), f"413 for Content-Length 1e9 with no body sent: {head.splitlines()[:1]}")
    # chunked, growing past the limit
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall((f"POST /v1/frames?exam={E1}&timestamp_ms=1&trigger=auto HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {t1}\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
    chunk = b"\xff" * 65536
    try:
        for _ in range(6):
            s.sendall(b"10000\r\n" + chunk + b"\r\n")
        s.sendall(b"0\r\n\r\n")
    except OSError:
        pass
    got = b""
    try:
        while b"\r\n" not in got:
            c = s.recv(4096)
            if not c:
                break
            got += c
    except OSError:
        pass
    s.close()
    check(got.startswith(b"HTTP/1.1 413"), f"413 for a chunked body over the limit: {got[:40]}")

    # --- frames of two terminals
    acked = {E1: set(), E2: set()}
    sent = {"frames_200": 0}
    for i in range(2):
        for tok, ex, term in ((t1, E1, "T1"), (t2, E2, "T2")):
            st, _, b = post_frame(port, tok, ex, 1000 + i * 40, frame("noise", seed=i + (7 if term == "T2" else 0)),
                                  trigger="pedal" if i == 0 else "auto")
            ok = (st == 200 and b["exam_id"] == ex and b["terminal"] == term and b["judged"] is True
                  and b["reason"] is None and len(b["lesions"]) >= 1 and len(b["finding_ids"]) == len(b["lesions"]))
            check(ok, f"{term} frame {i}: 200 naming exam and terminal, lesions: {st} {b if not ok else len(b['lesions'])}")
            if not ok:
                continue
            sent["frames_200"] += 1
            acked[ex].update(b["finding_ids"])
            les = b["lesions"][0]
            check(les["type"] == "adenomatous polyp" and les["high_risk"] and b["high_risk"]
                  and abs(sum(les["probs"].values()) - 1) < 1e-3 and set(les["probs"]) == set(LABELS)
                  and len(les["box"]) == 4 and 0 <= les["box"][0] <= les["box"][2] <= 320
                  and 0 <= les["box"][1] <= les["box"][3] <= 240
                  and b["model"]["arch"] == "fasterrcnn_fpn" and b["model"]["model_version"] == "test-assist-1"
                  and len(b["model"]["sha256"]) == 64 and b["timing_ms"]["total"] >= b["timing_ms"]["inference"] > 0,
                  f"{term} frame {i}: lesion, probabilities, box in the posted pixels, provenance, timing")
    st, _, b = post_frame(port, t1, E1, 5000, frame("dark"))
    check(st == 200 and b["judged"] is False and b["reason"].startswith("too dark: mean luma") and b["lesions"] == []
          and b["finding_ids"] == [], f"a dark frame: judged false with the reason ({b and b.get('reason')})")

    for ex, other in ((E1, E2), (E2, E1)):
        st, _, b = jreq(port, "GET", f"/v1/exams/{ex}/findings", ws)
        ids = {f["id"] for f in b["findings"]} if st == 200 else set()
        check(st == 200 and b["exam_id"] == ex and ids == acked[ex] and not (ids & acked[other]),
              f"findings of {ex}: exactly its {len(acked[ex])} acknowledged findings")
    st, _, b = jreq(port, "GET", f"/v1/exams/{E1}/findings", t1)
    check(st == 200 and {f["id"] for f in b["findings"]} == acked[E1], "T1 reads its own exam's findings")
    f0 = b["findings"][0]
    st, _, b = jreq(port, "GET", f"/v1/exams/{E1}/findings", t2)
    check(st == 403, "403 for T2 reading exam 1's findings")
    st, h, jpg = req(port, "GET", f0["thumbnail"], t1)
    check(st == 200 and h.get("Content-Type") == "image/jpeg" and jpg[:3] == b"\xff\xd8\xff"
          and Image.open(io.BytesIO(jpg)).size == (160, 120), "the finding's thumbnail is a 160x120 JPEG")
    st, _, b = jreq(port, "GET", f0["thumbnail"], t2)
    check(st == 403, "403 for T2 fetching a thumbnail of exam 1")
    st, _, b = jreq(port, "GET", "/v1/findings/999999/thumbnail", ws)
    check(st == 404, "404 for an unknown finding")

    # --- burst over the queue (one worker, one queued frame)
    big = frame("noise", 640, 480, seed=99)
    results = []
    barrier = threading.Barrier(10)

    def burst(k):
        barrier.wait()
        st, h, b = post_frame(port, t1, E1, 9000 + k, big)
        results.append((st, h.get("Retry-After"), b))
    ts = [threading.Thread(target=burst, args=(k,)) for k in range(10)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    n503 = sum(1 for st, ra, _ in results if st == 503 and ra == "1")
    n200 = sum(1 for st, _, _ in results if st == 200)
    for st, _, b in results:
        if st == 200:
            acked[E1].update(b["finding_ids"])
    sent["frames_200"] += n200
    check(n503 >= 1 and n200 >= 1 and n503 + n200 == 10, f"a burst of 10 over a 1-frame queue: {n200} answered, {n503} x 503 + Retry-After")

    # --- metrics
    ok, m = metrics(port)
    check(ok, "/metrics is Prometheus text")
    check(m.get('medinfer_assist_requests_total{path="/v1/frames",code="200"}') == sent["frames_200"] + 1,
          f"/metrics counts {sent['frames_200'] + 1} frames answered 200")
    check(m.get('medinfer_assist_rejects_total{reason="queue_full"}') == n503, "/metrics counts the 503s")
    check(m.get('medinfer_assist_requests_total{path="/v1/exams",code="401"}') == 2, "/metrics counts the 401s")
    check(m.get('medinfer_assist_frames_total{judged="false"}') == 1, "/metrics counts the unjudged frame")
    check(m.get("medinfer_assist_alerts_total") == sum(len(v) for v in acked.values()), "/metrics counts the alerts")
    check(m.get('medinfer_assist_inference_seconds_bucket{le="+Inf"}') == sent["frames_200"], "/metrics: inference histogram")
    check("P-0001" not in req(port, "GET", "/metrics")[2].decode(), "/metrics holds no patient data")

    # --- closing an exam
    st, _, b = jreq(port, "POST", f"/v1/exams/{E2}/close", ws)
    check(st == 200 and b["status"] == "closed", "exam 2 closed")
    st, _, b = post_frame(port, t2, E2, 7000, img)
    check(st == 409 and error_says(b, "closed"), "409 for a frame to a closed exam")
    st, _, b = jreq(port, "GET", "/v1/exams/current", t2)
    check(st == 404, "T2 has no current exam once it is closed")

    # --- SIGKILL after acknowledged findings, restart on the same database
    st, _, b = post_frame(port, t1, E1, 8000, img)
    check(st == 200, "one more frame acknowledged just before the kill")
    acked[E1].update(b["finding_ids"])
    srv.stop(signal.SIGKILL)
    srv = Server(db, ["--workers", "1", "--queue", "8"])
    port = srv.port
    for ex in (E1, E2):
        st, _, b = jreq(port, "GET", f"/v1/exams/{ex}/findings", ws)
        check(st == 200 and {f["id"] for f in b["findings"]} == acked[ex],
              f"after kill -9 and restart: all {len(acked[ex])} acknowledged findings of {ex} are there")
    v = subprocess.run([BIN, "assist-server", "--verify-db", db], capture_output=True, text=True)
    check(v.returncode == 0 and "intact" in v.stdout, "--verify-db passes after the kill: " + (v.stdout + v.stderr).strip().replace("\n", "; "))

    # --- SIGTERM with frames in flight (one running, at least one queued): each is answered
    results.clear()
    ts = [threading.Thread(target=burst, args=(k,)) for k in range(6)]
    barrier = threading.Barrier(6)
    [t.start() for t in ts]
    t0, seen = time.time(), False
    while not seen and time.time() - t0 < 20:
        ok, m = metrics(port)
        # every frame received (answered, or in flight besides this /metrics request), one of
        # them running and at least one queued: a SIGTERM now stops a server with work to finish
        received = len(results) + m.get("medinfer_assist_requests_in_flight", 0) - 1
        seen = (received == 6 and m.get("medinfer_assist_workers_busy") == 1
                and m.get("medinfer_assist_queue_depth", 0) >= 1)
        time.sleep(0.002)
    rc = srv.stop(signal.SIGTERM)
    [t.join() for t in ts]
    check(seen and rc == 0 and len(results) == 6 and all(st == 200 for st, _, _ in results),
          f"SIGTERM with frames running and queued: all answered ({[r[0] for r in results]}), exit {rc}")
    log = open(os.path.join(WORK, "server.log")).read()
    check(re.search(r"assist-server: POST /v1/frames 200 [0-9.]+ ms T1", log) is not None, "one log line per request")
    check("P-0001" not in log, "the log holds no patient data")

    # --- tampering
    v = subprocess.run([BIN, "assist-server", "--verify-db", db], capture_output=True, text=True)
    check(v.returncode == 0, "--verify-db passes after the graceful stop")
    bad = os.path.join(WORK, "edited.sqlite")
    shutil.copy(db, bad)
    c = sqlite3.connect(bad)
    c.execute("DROP TRIGGER findings_no_update")
    c.execute("UPDATE findings SET type = 'other' WHERE seq = 2")
    c.commit()
    c.close()
    v = subprocess.run([BIN, "assist-server", "--verify-db", bad], capture_output=True, text=True)
    check(v.returncode == 30 and "findings row 2 was edited" in v.stderr, f"an edited finding fails --verify-db: {v.stderr.strip()}")
    shutil.copy(db, bad)
    c = sqlite3.connect(bad)
    c.execute("DROP TRIGGER events_no_delete")
    c.execute("DELETE FROM events WHERE seq = (SELECT max(seq) FROM events)")
    c.commit()
    c.close()
    v = subprocess.run([BIN, "assist-server", "--verify-db", bad], capture_output=True, text=True)
    check(v.returncode == 30 and "missing" in v.stderr, f"a deleted last event fails --verify-db: {v.stderr.strip()}")

    print(f"assist_server_test: {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
