#!/usr/bin/python3
"""bench/bench.py - medinfer beside PyTorch and ONNX Runtime, measured in the same run on the same machine.

For ResNet-18 and ResNet-50 (batch 1, 224x224, random weights) at 1 and 2 threads: median and p90
latency of medinfer, of PyTorch's best mode (each mode of bench/torch_latency.py is tried, the
fastest median is kept) and of ONNX Runtime (bench/ort_latency.js: onnxruntime-node, CPU provider,
all graph optimizations, on the same module exported by bench/ort_export.py; its max abs difference
from PyTorch's output on the same input is printed), the ratios ours/theirs (<= 1.00: we are no
slower), our effective GFLOP/s
(direct-convolution FLOPs over our time; Winograd layers do fewer) and its
share of the FMA peak that bench_conv measures on this machine, and peak RSS. The V-Net of
tools/vnet_ref.py (its default config: 512 x 512 RGB tiles, batch 4) in tiles per second, ours
beside PyTorch's best mode and ONNX Runtime, at 1 and 2 threads. The two networks of
depth-guided lesion segmentation (tools/lesionseg_ref.py: depthnet and segnet at their default
configuration, 192 x 192, batch 1, random weights from tools/export.py) beside the same module in
PyTorch (bench/torch_lesionseg_latency.py, loaded with the blob's weights) and ONNX Runtime, at 1
and 2 threads, with the ratio to the faster of the two. The Faster R-CNN detectors of
bench/rcnn_blob.py (ResNet-18 and ResNet-50 C4, one image) beside torchvision's FasterRCNN with
the same weights and ONNX Runtime running that model exported whole. The slide-classification GCN
(tools/gcn_ref.py's defaults, random weights from bench/gcn_blob.py) on graphs of 64 and 1024
nodes: ours through nn/gcn.h (bench_gcn), PyTorch eager (and traced, without --quick) and ONNX
Runtime on the module exported with both inputs. Then the convolution kernels
alone (bench_conv) and the pipelines' own benchmarks when present. --only runs some sections (e.g.
--only vnet, --only lesionseg, --only gcn).

In the ResNet, Faster R-CNN, V-Net, lesion and GCN sections the engines take turns: each of --rounds rounds (default 3) runs
medinfer, every PyTorch mode, then ONNX Runtime, each in its own process, so that a change in the
machine's load falls on all of them alike; a figure is the median of the rounds' medians (p90: the
median of their p90s). The ResNet-50 batch-8 rows (throughput: images per second at 1 and 2 threads)
take turns the same way.

ONNX Runtime is optional: `make bench` installs onnxruntime-node into BIN/ort/node_modules; when
it is missing or fails, its columns are left empty and the bench says "ONNX Runtime: not
available (reason)". Prints a table; writes everything as JSON (--out)."""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = "/usr/bin/python3"
MODES = ("eager", "channels_last", "jit_freeze", "optimize_for_inference")


# Both engines run under the same OpenMP settings: at 2 threads pinned to cores (1 thread: omp_env()),
# so that a thread parked on a busy core does not stall every barrier. The wait policy is libgomp's own (a waiting
# thread spins briefly, then sleeps), as an application of either engine gets it and as ONNX
# Runtime's pool does (its intra-op threads spin too): on an idle machine sleeping at once
# (OMP_WAIT_POLICY=passive) made medinfer's segnet 1.9x slower at 2 threads (25 -> 48 ms: every
# parallel region then starts with a futex wake-up). On a machine shared with other jobs the
# opposite holds - at a load of 9-13 on 2 cores libgomp's spin made both engines 2-3x slower at 2
# threads (segnet: medinfer 714-1004 ms spinning vs 251-284 passive, PyTorch 1118-1162 vs
# 493-544) - so run such a bench with OMP_WAIT_POLICY=passive in the environment: a caller's own
# policy is kept, for PyTorch too, and the table's footer says which one ran.
OMP_ENV = dict(os.environ, OMP_PROC_BIND="true", OMP_PLACES="cores")
# The CPUs this bench was given, read before this process loads OpenMP. With OMP_PROC_BIND in the
# caller's own environment, importing torch here (flops(), detector_image()) binds this process to
# the first core, and every engine started after it inherits that one core: ResNet-18 at 2 threads
# took 16.2 ms against 15.3 at one, ONNX Runtime 33.6 against 18.5, while the same commands from a
# shell took 10.3 and 9.9 ms.
CPUS = os.sched_getaffinity(0)


def unbind():
    """Gives this process, and so the engines it starts from now on, all of CPUS again."""
    os.sched_setaffinity(0, CPUS)


def omp_env(threads):
    """The OpenMP settings for an engine run at this many threads. One thread is not pinned: it
    runs where the scheduler puts it, as ONNX Runtime's does (it ignores OMP_*). Pinned, libgomp
    puts it on the first core, and the cores of the 2-core VM this bench measured on drifted apart
    in speed by up to 18 % within minutes (ResNet-50 at one thread, in turns: 46.3 ms pinned to
    core 0 against 39.1 on core 1; at another minute 40.9 against 44.8), while ONNX Runtime's
    thread took whichever core was free. With OMP_PROC_BIND in the caller's environment one thread
    is pinned too."""
    if threads == 1 and "OMP_PROC_BIND" not in os.environ:
        return dict(OMP_ENV, OMP_PROC_BIND="false")
    return OMP_ENV


def core_speeds(bin_dir, blob, iters):
    """Each CPU's speed alone: ResNet-18 at one thread pinned to it, median ms, {cpu: ms}. The two
    vCPUs of the machine this bench was tuned on ran the same work up to 50 % apart, one or the
    other by the host's state, for seconds to minutes at a time; at two threads a layer's split
    then waits on the slower core, so the figures at two threads are read beside this."""
    return {cpu: run_json([os.path.join(bin_dir, "bench_engine"), blob, "1", str(iters)], threads=1,
                          preexec_fn=lambda c=cpu: os.sched_setaffinity(0, {c}))["median_ms"]
            for cpu in sorted(CPUS)}


def speeds_line(speeds):
    cpus = " ".join(f"cpu{c} {ms:.2f}" for c, ms in speeds.items())
    return f"{cpus} ms (slowest / fastest {max(speeds.values()) / min(speeds.values()):.2f})"


def run_json(cmd, threads=None, **kw):
    unbind()
    kw.setdefault("env", omp_env(threads))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout
    return json.loads(out.strip().splitlines()[-1])


def detector_image(blob, h, w):
    """The one image every engine times a detector on (BLOB.in.f32 beside the blob): a detector's
    work depends on its input (how many proposals survive NMS), so all three must see the same.
    Uniform in [-0.5, 0.5) from torch's generator seeded 0, as bench/ort_export.py makes the input
    it exports with; where that export exists its image must be this one."""
    import torch
    raw = open(blob, "rb").read(8)
    head = json.loads(open(blob, "rb").read(8 + int.from_bytes(raw, "little"))[8:])
    shape = (1, int(head.get("__metadata__", {}).get("input_channels", 3)), h, w)
    path = blob + ".in.f32"
    x = (torch.rand(*shape, generator=torch.Generator().manual_seed(0)) - 0.5).numpy().astype("<f4").tobytes()
    unbind()
    with open(path, "wb") as f:
        f.write(x)
    ort_in = os.path.join(os.path.dirname(blob), "ort", os.path.basename(blob).replace(".safetensors", ".onnx.in.f32"))
    if os.path.exists(ort_in) and open(ort_in, "rb").read() != x:
        sys.exit(f"bench: {ort_in} is not the image the other engines run ({path}); remove it to re-export")
    return path


def combine(runs):
    """One figure from the rounds' runs of one engine: the median of their medians and of their
    p90s, the least min, the largest peak RSS; the rest as the last run reported it."""
    r = dict(runs[-1])
    r["median_ms"] = statistics.median(x["median_ms"] for x in runs)
    r["p90_ms"] = statistics.median(x["p90_ms"] for x in runs)
    r["min_ms"] = min(x["min_ms"] for x in runs)
    r["peak_rss_mb"] = max(x["peak_rss_mb"] for x in runs)
    r["round_medians_ms"] = [x["median_ms"] for x in runs]
    return r


class Ort:
    """ONNX Runtime through node and the onnxruntime-node that `make bench` puts in BIN/ort.
    reason: None while it is usable, else why not (printed as "ONNX Runtime: not available")."""

    def __init__(self, bin_dir, blobs):
        self.dir = os.path.join(blobs, "ort")
        self.version, self.reason = None, None
        modules = os.path.abspath(os.path.join(bin_dir, "ort", "node_modules"))
        self.env = dict(OMP_ENV, NODE_PATH=modules)
        log = os.path.join(bin_dir, "ort", "install.log")
        if not shutil.which("node"):
            self.reason = "no node on the PATH (tools/install-deps.sh bench installs Node.js)"
        elif not os.path.isdir(os.path.join(modules, "onnxruntime-node")):
            tail = open(log, errors="replace").read().strip().splitlines()[-1:] if os.path.exists(log) else []
            self.reason = (f"onnxruntime-node not installed in {modules}" +
                           (f"; {log}: {tail[0]}" if tail else "; `make bench` installs it"))
        else:
            p = subprocess.run(["node", "-e", "process.stdout.write(require('onnxruntime-node').env.versions.node)"],
                               capture_output=True, text=True, env=self.env)
            if p.returncode:
                self.reason = f"onnxruntime-node does not load: {(p.stderr.strip().splitlines() or ['?'])[-1]}"
            else:
                self.version = p.stdout.strip()
        self.models = {}   # name -> .onnx path, or None when its export failed
        self.diffs = {}    # name -> (max abs diff from PyTorch over the outputs, largest |PyTorch output|)
        self.failures = [] # "name: why" for an export or a run that failed

    def model(self, name, source, batch=1, hw=None):
        """The .onnx of `source` (an arch or a blob) exported at `batch` (and H x W: a detector);
        None if unusable."""
        if self.reason:
            return None
        if name not in self.models:
            path = os.path.join(self.dir, f"{name}.onnx")
            if not os.path.exists(path + ".json"):
                os.makedirs(self.dir, exist_ok=True)
                p = subprocess.run([PY, os.path.join(HERE, "ort_export.py"), source, path, str(batch)] +
                                   [str(v) for v in hw or ()], capture_output=True, text=True, env=OMP_ENV)
                if p.returncode:
                    self.failures.append(f"{name}: export failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}")
                    path = None
            self.models[name] = path
        return self.models[name]

    def run(self, name, path, threads, iters, warmup):
        """One process of bench/ort_latency.js; None (and the reason kept) if it fails."""
        try:
            r = run_json(["node", os.path.join(HERE, "ort_latency.js"), path, str(threads), str(iters),
                          str(warmup)], env=self.env)
        except (subprocess.CalledProcessError, ValueError, IndexError) as e:
            err = getattr(e, "stderr", None) or str(e)
            self.failures.append(f"{name} x{threads}: {(err.strip().splitlines() or ['?'])[-1]}")
            self.models[name] = None
            return None
        scale = max(r.get("pytorch_max_abs", {}).values(), default=float("nan"))
        self.diffs[name] = (max(self.diffs.get(name, (0.0,))[0], r["max_abs_diff_all"]), scale)
        return r

    def summary(self):
        if self.reason:
            return f"ONNX Runtime: not available ({self.reason})"
        s = (f"ONNX Runtime {self.version} (onnxruntime-node, CPU provider, graph optimizations 'all', "
             f"intra-op threads = thr, inter-op 1, sequential)")
        if self.diffs:
            s += ("; max abs diff of its outputs from PyTorch's, same input (largest |PyTorch output|): " +
                  ", ".join(f"{k} {d:.2g} ({m:.3g})" for k, (d, m) in self.diffs.items()))
        for f in self.failures:
            s += f"\nONNX Runtime: not available for {f}"
        return s


def flops(arch):
    """Multiply-adds x 2 of every conv and linear layer, counted on torchvision's own model."""
    import torch
    import torchvision
    m = getattr(torchvision.models, arch)(weights=None).eval()
    total = [0]

    def hook(mod, inp, out):
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
            total[0] += 2 * k * out.numel()
        elif isinstance(mod, torch.nn.Linear):
            total[0] += 2 * mod.in_features * out.numel()
    for mod in m.modules():
        mod.register_forward_hook(hook)
    with torch.no_grad():
        m(torch.zeros(1, 3, 224, 224))
    unbind()
    return total[0]


def peer_table(title, width, rows, label, prec):
    """A section's rows beside PyTorch's best mode and ONNX Runtime: median and p90 in ms with prec
    decimals, the ratios, peak RSS; label(row) names the row."""
    if not rows:
        return
    print(f"\n{title:{width}} {'thr':>3} {'ours med':>9} {'p90':>7} {'torch med':>9} {'p90':>7} "
          f"{'torch mode':>22} {'ratio':>6} {'ORT med':>9} {'p90':>7} {'/ORT':>5} {'/peer':>6} {'RSS ours':>8} "
          f"{'torch':>6} {'ORT':>5}")
    for r in rows:
        o, t, x = r["ours"], r["pytorch_best"], r["ort"]
        ort_cols = (f"{x['median_ms']:8.{prec}f}m {x['p90_ms']:6.{prec}f}m {r['ratio_ort']:5.2f}" if x else
                    f"{'-':>9} {'-':>7} {'-':>5}")
        ort_rss = f"{x['peak_rss_mb']:4.0f}M" if x else "-"
        print(f"{label(r):{width}} {r['threads']:3} {o['median_ms']:8.{prec}f}m {o['p90_ms']:6.{prec}f}m "
              f"{t['median_ms']:8.{prec}f}m {t['p90_ms']:6.{prec}f}m {t['mode']:>22} {r['ratio_median']:6.2f} "
              f"{ort_cols} {r['ratio_peer']:6.2f} {o['peak_rss_mb']:7.0f}M {t['peak_rss_mb']:5.0f}M {ort_rss:>5}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build")
    ap.add_argument("--out", default="build/bench.json")
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--quick", action="store_true", help="fewer iterations and modes")
    ap.add_argument("--only", default="conv,resnet,rcnn,vnet,lesionseg,gcn,pipelines",
                    help="comma-separated sections to run (default: all)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="ResNet, V-Net, lesion nets: rounds of medinfer, PyTorch, ONNX Runtime in turn "
                         "(median kept)")
    a = ap.parse_args()
    only = set(a.only.split(","))
    iters = 10 if a.quick else a.iters
    blobs = os.path.join(a.bin, "bench")
    os.makedirs(blobs, exist_ok=True)
    result = {"machine": {"cpus": os.cpu_count()}, "resnet": [], "rcnn": [], "vnet": [], "lesionseg": [], "gcn": [],
              "conv": None, "pipelines": {}, "rounds": max(1, a.rounds)}
    rounds = range(max(1, a.rounds))
    # the machine is shared: its load at the start and the end says how far to trust the figures
    result["machine"]["loadavg_at_start"] = os.getloadavg()
    ort = Ort(a.bin, blobs)

    peak = None
    conv_bin = os.path.join(a.bin, "bench_conv")
    if os.path.exists(conv_bin) and "conv" in only:
        conv_json = os.path.join(blobs, "bench_conv.json")
        p = subprocess.run([conv_bin, "--json", conv_json], check=True, capture_output=True,
                           text=True, env=OMP_ENV)
        result["conv"] = json.load(open(conv_json))
        result["conv_table"] = p.stdout
        peak = result["conv"].get("peak_gflops")

    for arch in ("resnet18", "resnet50") if "resnet" in only else ():
        blob = os.path.join(blobs, f"{arch}.safetensors")
        if not os.path.exists(blob):
            subprocess.run([PY, os.path.join(ROOT, "tools", "export.py"), "--arch", arch, "--random",
                            "--seed", "0", "--out", blob], check=True)
        if arch == "resnet18" and len(CPUS) > 1:
            result["machine"]["core_ms_at_start"] = core_speeds(a.bin, blob, iters)
        gflop = flops(arch) / 1e9
        ort.model(arch, arch)
        modes = MODES[-1:] if a.quick else MODES
        for threads in (1, 2):
            runs = {"ours": [], "ort": [], **{mode: [] for mode in modes}}
            for _ in rounds:   # in turn, so that load drift falls on every engine alike
                runs["ours"].append(run_json([os.path.join(a.bin, "bench_engine"), blob, str(threads), str(iters)], threads=threads))
                for mode in modes:
                    runs[mode].append(run_json([PY, os.path.join(HERE, "torch_latency.py"), arch, str(threads),
                                                str(iters), mode], threads=threads))
                onnx = ort.models.get(arch)
                if onnx:
                    runs["ort"].append(ort.run(arch, onnx, threads, iters, 5))
            ours = combine(runs["ours"])
            theirs = [combine(runs[mode]) for mode in modes]
            best = min(theirs, key=lambda r: r["median_ms"])
            o = combine(runs["ort"]) if runs["ort"] and all(runs["ort"]) else None
            row = {"arch": arch, "threads": threads, "gflop": gflop, "ours": ours, "pytorch_best": best,
                   "pytorch_modes": theirs, "ratio_median": ours["median_ms"] / best["median_ms"],
                   "ort": o, "ratio_ort": ours["median_ms"] / o["median_ms"] if o else None,
                   "ours_gflops": gflop / (ours["median_ms"] / 1e3)}
            if peak:
                p = peak.get(f"{ours['isa']}_{threads}t") or peak.get(f"avx2_{threads}t")
                row["share_of_fma_peak"] = row["ours_gflops"] / p if p else None
            result["resnet"].append(row)
            print(f"  measured {arch} x{threads}", file=sys.stderr)

    # ResNet-50 at batch 8 (throughput mode), 1 and 2 threads: images per second beside PyTorch's best
    # mode and ONNX Runtime on the same weights, taking turns as above; the session arena
    # (activations by liveness) and peak RSS
    if "resnet" in only:
        blob = os.path.join(blobs, "resnet50.safetensors")
        n = max(3, iters // 4)
        modes = MODES[-1:] if a.quick else MODES
        onnx = ort.model("resnet50_b8", "resnet50", 8)
        result["batch8"] = []
        for threads in (1, 2):
            runs = {"ours": [], "ort": [], **{mode: [] for mode in modes}}
            for _ in rounds:
                runs["ours"].append(run_json([os.path.join(a.bin, "bench_engine"), blob, str(threads), str(n), "8"], threads=threads))
                for mode in modes:
                    runs[mode].append(run_json([PY, os.path.join(HERE, "torch_latency.py"), "resnet50",
                                                str(threads), str(n), mode, "8"], threads=threads))
                if onnx:
                    runs["ort"].append(ort.run("resnet50_b8", onnx, threads, n, 2))
            ours = combine(runs["ours"])
            best = min((combine(runs[mode]) for mode in modes), key=lambda r: r["median_ms"])
            o = combine(runs["ort"]) if runs["ort"] and all(runs["ort"]) else None
            for r in (ours, best, o):
                if r:
                    r["images_per_s"] = 8 / (r["median_ms"] / 1e3)
            result["batch8"].append({"threads": threads, "ours": ours, "pytorch_best": best, "ort": o,
                                     "ratio_median": ours["median_ms"] / best["median_ms"],
                                     "ratio_ort": ours["median_ms"] / o["median_ms"] if o else None})
            print(f"  measured resnet50 batch 8 x{threads}", file=sys.stderr)

    # The V-Net (tools/vnet_ref.py DEFAULTS) on batches of 512 x 512 RGB tiles: tiles per second,
    # ours / PyTorch's best mode (>= 1.00: we are no slower). A batch takes seconds: few iterations,
    # and PyTorch's two fastest modes only: at batch 1, 2 threads, channels_last 5.4 s, jit_freeze
    # 5.5 s, optimize_for_inference 5.5 s, eager 6.6 s (a loaded 2-core machine).
    if "vnet" in only:
        blob = os.path.join(blobs, "vnet2d.safetensors")
        if not os.path.exists(blob):
            subprocess.run([PY, os.path.join(HERE, "vnet_blob.py"), blob], check=True)
        n, batch = max(2, iters // 20), 4
        ort.model("vnet2d", blob, batch)
        modes = ("channels_last",) if a.quick else ("channels_last", "optimize_for_inference")
        for threads in (1, 2):
            runs = {"ours": [], "ort": [], **{mode: [] for mode in modes}}
            for _ in rounds:   # in turn, as for the ResNets
                runs["ours"].append(run_json([os.path.join(a.bin, "bench_engine"), blob, str(threads), str(n),
                                              str(batch)], threads=threads))
                for mode in modes:
                    try:
                        runs[mode].append(run_json([PY, os.path.join(HERE, "torch_vnet_latency.py"), blob,
                                                    str(threads), str(n), str(batch), mode], threads=threads))
                    except subprocess.CalledProcessError as e:   # a mode that cannot take this module
                        print(f"  torch {mode} failed: {e.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                onnx = ort.models.get("vnet2d")
                if onnx:   # one warm-up, as torch_vnet_latency.py: a batch takes seconds
                    runs["ort"].append(ort.run("vnet2d", onnx, threads, n, 1))
            ours = combine(runs["ours"])
            ours["tiles_per_s"] = batch / (ours["median_ms"] / 1e3)
            theirs = [combine(runs[mode]) for mode in modes if runs[mode]]
            for r in theirs:
                r["tiles_per_s"] = batch / (r["median_ms"] / 1e3)
            best = max(theirs, key=lambda r: r["tiles_per_s"])
            o = combine(runs["ort"]) if runs["ort"] and all(runs["ort"]) else None
            if o:
                o["tiles_per_s"] = batch / (o["median_ms"] / 1e3)
            result["vnet"].append({"threads": threads, "batch": batch, "ours": ours, "pytorch_best": best,
                                   "pytorch_modes": theirs, "speedup": ours["tiles_per_s"] / best["tiles_per_s"],
                                   "ort": o, "speedup_ort": ours["tiles_per_s"] / o["tiles_per_s"] if o else None})
            print(f"  measured vnet2d x{threads}", file=sys.stderr)

    # The lesion networks (tools/lesionseg_ref.py defaults: 192 x 192, batch 1) on random weights:
    # the blob tools/export.py writes, PyTorch's module loaded from that blob, ONNX Runtime on the
    # same module exported. One forward takes 0.1-0.5 s here, so a quarter of the iterations, and
    # PyTorch's eager mode and its fastest: at 1 thread on a loaded 2-core machine depthnet took
    # 509 ms by optimize_for_inference, 645 eager, 697 jit_freeze, 1010 channels_last; segnet 224,
    # 444, 359, 491 (scripting refuses their forward's optional stage dict: the jit modes trace).
    if "lesionseg" in only:
        n = max(3, iters // 4)
        modes = ("optimize_for_inference",) if a.quick else ("eager", "optimize_for_inference")
        for arch in ("depthnet", "segnet"):
            blob = os.path.join(blobs, f"{arch}.safetensors")
            if not os.path.exists(blob):
                subprocess.run([PY, os.path.join(ROOT, "tools", "export.py"), "--arch", arch, "--random",
                                "--seed", "0", "--out", blob], check=True)
            ort.model(arch, blob)
            for threads in (1, 2):
                runs = {"ours": [], "ort": [], **{mode: [] for mode in modes}}
                for _ in rounds:   # in turn, as for the ResNets
                    runs["ours"].append(run_json([os.path.join(a.bin, "bench_engine"), blob, str(threads), str(n)], threads=threads))
                    for mode in modes:
                        try:
                            runs[mode].append(run_json([PY, os.path.join(HERE, "torch_lesionseg_latency.py"), blob,
                                                        str(threads), str(n), mode], threads=threads))
                        except subprocess.CalledProcessError as e:   # a mode that cannot take this module
                            print(f"  torch {mode} failed: {e.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                    onnx = ort.models.get(arch)
                    if onnx:
                        runs["ort"].append(ort.run(arch, onnx, threads, n, 5))
                ours = combine(runs["ours"])
                theirs = [combine(runs[mode]) for mode in modes if runs[mode]]
                best = min(theirs, key=lambda r: r["median_ms"])
                o = combine(runs["ort"]) if runs["ort"] and all(runs["ort"]) else None
                peer = min([best] + ([o] if o else []), key=lambda r: r["median_ms"])
                result["lesionseg"].append({
                    "arch": arch, "threads": threads, "ours": ours, "pytorch_best": best, "pytorch_modes": theirs,
                    "ratio_median": ours["median_ms"] / best["median_ms"], "ort": o,
                    "ratio_ort": ours["median_ms"] / o["median_ms"] if o else None,
                    "ratio_peer": ours["median_ms"] / peer["median_ms"],
                    "peer": "onnxruntime" if peer is o else "pytorch"})
                print(f"  measured {arch} x{threads}", file=sys.stderr)

    # The slide-classification GCN (tools/gcn_ref.py DEFAULTS on random weights, bench/gcn_blob.py)
    # on a graph of 64 nodes (more than the pipeline's default top-K of 10: a forward there is
    # all call overhead) and of 1024 (dense Â: 4 MB, the products dominate); ours through
    # nn/gcn.h (bench_gcn), PyTorch eager and traced, ONNX Runtime on the module exported with
    # both inputs. The engines take turns as above.
    if "gcn" in only:
        blob = os.path.join(blobs, "gcn.safetensors")
        if not os.path.exists(blob):
            subprocess.run([PY, os.path.join(HERE, "gcn_blob.py"), blob], check=True)
        modes = ("eager",) if a.quick else ("eager", "optimize_for_inference")
        for nodes in (64, 1024):
            n = iters * 5 if nodes <= 64 else iters
            onnx = ort.model(f"gcn_{nodes}", blob, nodes)
            for threads in (1, 2):
                runs = {"ours": [], "ort": [], **{mode: [] for mode in modes}}
                for _ in rounds:
                    runs["ours"].append(run_json([os.path.join(a.bin, "bench_gcn"), blob, str(nodes), str(threads),
                                                  str(n)], threads=threads))
                    for mode in modes:
                        runs[mode].append(run_json([PY, os.path.join(HERE, "torch_gcn_latency.py"), blob, str(nodes),
                                                    str(threads), str(n), mode], threads=threads))
                    if ort.models.get(f"gcn_{nodes}"):
                        runs["ort"].append(ort.run(f"gcn_{nodes}", onnx, threads, n, 5))
                ours = combine(runs["ours"])
                best = min((combine(runs[mode]) for mode in modes), key=lambda r: r["median_ms"])
                o = combine(runs["ort"]) if runs["ort"] and all(runs["ort"]) else None
                peer = min([best] + ([o] if o else []), key=lambda r: r["median_ms"])
                result["gcn"].append({
                    "nodes": nodes, "threads": threads, "ours": ours, "pytorch_best": best,
                    "ratio_median": ours["median_ms"] / best["median_ms"], "ort": o,
                    "ratio_ort": ours["median_ms"] / o["median_ms"] if o else None,
                    "ratio_peer": ours["median_ms"] / peer["median_ms"],
                    "peer": "onnxruntime" if peer is o else "pytorch"})
                print(f"  measured gcn {nodes} nodes x{threads}", file=sys.stderr)

    # Faster R-CNN (ResNet C4) beside torchvision's FasterRCNN with the same weights, one image,
    # and beside ONNX Runtime running that FasterRCNN exported whole (bench/ort_export.py); the
    # engines take turns as above
    for name, h, w in (("echo", 256, 600), ("r50", 480, 640)) if "rcnn" in only else ():
        blob = os.path.join(blobs, f"rcnn_{name}.safetensors")
        if not os.path.exists(blob):
            subprocess.run([PY, os.path.join(HERE, "rcnn_blob.py"), name, blob], check=True)
        n = max(3, iters // 4)
        onnx = ort.model(f"rcnn_{name}", blob, 1, (h, w))
        image = detector_image(blob, h, w)
        for threads in (1, 2):
            runs = {"ours": [], "torch": [], "ort": []}
            for _ in rounds:
                runs["ours"].append(run_json([os.path.join(a.bin, "bench_engine"), blob, str(threads), str(n), "1",
                                              str(h), str(w), image], threads=threads))
                runs["torch"].append(run_json([PY, os.path.join(HERE, "torch_rcnn_latency.py"), blob, str(threads),
                                               str(n), str(h), str(w), image], threads=threads))
                if ort.models.get(f"rcnn_{name}"):
                    runs["ort"].append(ort.run(f"rcnn_{name}", onnx, threads, n, 2))
            ours, theirs = combine(runs["ours"]), combine(runs["torch"])
            o = combine(runs["ort"]) if runs["ort"] and all(runs["ort"]) else None
            peer = min([theirs] + ([o] if o else []), key=lambda r: r["median_ms"])
            result["rcnn"].append({"name": name, "h": h, "w": w, "threads": threads, "ours": ours,
                                   "torchvision": theirs, "ratio_median": ours["median_ms"] / theirs["median_ms"],
                                   "ort": o, "ratio_ort": ours["median_ms"] / o["median_ms"] if o else None,
                                   "ratio_peer": ours["median_ms"] / peer["median_ms"],
                                   "peer": "onnxruntime" if peer is o else "pytorch"})
            print(f"  measured fasterrcnn {name} x{threads}", file=sys.stderr)

    # pipeline benchmarks: bench/bench_<pipeline>.sh BUILD_DIR prints its own table
    for script in sorted(os.listdir(HERE)):
        if script.startswith("bench_") and script.endswith(".sh") and not a.quick and "pipelines" in only:
            p = subprocess.run(["sh", os.path.join(HERE, script), a.bin], capture_output=True,
                               text=True, env=OMP_ENV, cwd=ROOT)
            result["pipelines"][script] = {"exit": p.returncode, "output": p.stdout,
                                           "stderr_tail": p.stderr[-2000:]}

    if result["resnet"]:
        print(f"\n{'model':9} {'thr':>3} {'isa':>6} {'ours med':>9} {'p90':>7} {'torch med':>9} {'p90':>7} "
              f"{'torch mode':>22} {'ratio':>6} {'ORT med':>9} {'p90':>7} {'/ORT':>5} {'eff GF/s':>8} {'%peak':>6} "
              f"{'RSS ours':>8} {'torch':>6} {'ORT':>5}")
    for r in result["resnet"]:
        o, t, x = r["ours"], r["pytorch_best"], r["ort"]
        share = r.get("share_of_fma_peak")
        ort_cols = (f"{x['median_ms']:8.2f}m {x['p90_ms']:6.2f}m {r['ratio_ort']:5.2f}" if x else
                    f"{'-':>9} {'-':>7} {'-':>5}")
        ort_rss = f"{x['peak_rss_mb']:4.0f}M" if x else "-"
        print(f"{r['arch']:9} {r['threads']:3} {o['isa']:>6} {o['median_ms']:8.2f}m {o['p90_ms']:6.2f}m "
              f"{t['median_ms']:8.2f}m {t['p90_ms']:6.2f}m {t['mode']:>22} {r['ratio_median']:6.2f} {ort_cols} "
              f"{r['ours_gflops']:8.1f} {(f'{100 * share:5.1f}%' if share else '    -'):>6} "
              f"{o['peak_rss_mb']:7.0f}M {t['peak_rss_mb']:5.0f}M {ort_rss:>5}")
    if result.get("batch8"):
        print(f"\n{'resnet50 batch 8':16} {'thr':>3} {'ours img/s':>10} {'torch img/s':>11} {'ORT img/s':>9} "
              f"{'/torch':>6} {'/ORT':>5} {'arena':>7} {'RSS ours':>8} {'torch':>6} {'ORT':>5}")
    for r in result.get("batch8") or ():
        o, t, x = r["ours"], r["pytorch_best"], r["ort"]
        ort_cols = (f"{x['images_per_s']:9.2f} {r['ratio_median']:6.2f} {r['ratio_ort']:5.2f}"
                    if x else f"{'-':>9} {r['ratio_median']:6.2f} {'-':>5}")
        ort_rss = f"{x['peak_rss_mb']:4.0f}M" if x else "-"
        print(f"{'':16} {r['threads']:3} {o['images_per_s']:10.2f} {t['images_per_s']:11.2f} {ort_cols} "
              f"{o['arena_mb']:6.1f}M {o['peak_rss_mb']:7.0f}M {t['peak_rss_mb']:5.0f}M {ort_rss:>5}")
    if result["vnet"]:
        print(f"\n{'V-Net 2-D 512x512 RGB':22} {'thr':>3} {'batch':>5} {'ours tiles/s':>12} {'torch tiles/s':>13} "
              f"{'torch mode':>22} {'ours/torch':>10} {'ORT tiles/s':>11} {'ours/ORT':>8} {'arena':>7} "
              f"{'RSS ours':>8} {'torch':>6} {'ORT':>5}")
        for r in result["vnet"]:
            o, t, x = r["ours"], r["pytorch_best"], r["ort"]
            ort_cols = f"{x['tiles_per_s']:11.3f} {r['speedup_ort']:8.2f}" if x else f"{'-':>11} {'-':>8}"
            ort_rss = f"{x['peak_rss_mb']:4.0f}M" if x else "-"
            print(f"{'vnet2d (vnet_ref DEFAULTS)':22} {r['threads']:3} {r['batch']:5} {o['tiles_per_s']:12.3f} "
                  f"{t['tiles_per_s']:13.3f} {t['mode']:>22} {r['speedup']:10.2f} {ort_cols} {o['arena_mb']:6.0f}M "
                  f"{o['peak_rss_mb']:7.0f}M {t['peak_rss_mb']:5.0f}M {ort_rss:>5}")
    peer_table("lesion 192x192", 14, result["lesionseg"], lambda r: r["arch"], 1)
    if result["rcnn"]:
        print(f"\n{'detector':28} {'thr':>3} {'ours med':>9} {'p90':>7} {'torchvision':>11} {'p90':>7} {'ratio':>6} "
              f"{'ORT med':>9} {'p90':>7} {'/ORT':>5} {'/peer':>6} {'RSS ours':>8} {'torch':>6} {'ORT':>5}")
    for r in result["rcnn"]:
        o, t, x = r["ours"], r["torchvision"], r.get("ort")
        label = f"fasterrcnn_c4 {r['name']} {r['h']}x{r['w']}"
        ort_cols = (f"{x['median_ms']:8.1f}m {x['p90_ms']:6.1f}m {r['ratio_ort']:5.2f}" if x else
                    f"{'-':>9} {'-':>7} {'-':>5}")
        ort_rss = f"{x['peak_rss_mb']:4.0f}M" if x else "-"
        print(f"{label:28} {r['threads']:3} {o['median_ms']:8.1f}m {o['p90_ms']:6.1f}m {t['median_ms']:10.1f}m "
              f"{t['p90_ms']:6.1f}m {r['ratio_median']:6.2f} {ort_cols} {r['ratio_peer']:6.2f} "
              f"{o['peak_rss_mb']:7.0f}M {t['peak_rss_mb']:5.0f}M {ort_rss:>5}")
    peer_table("GCN (gcn_ref DEFAULTS)", 22, result["gcn"], lambda r: f"{r['nodes']} nodes", 3)
    if result["resnet"] or result["vnet"] or result["lesionseg"] or result["rcnn"] or result["gcn"]:
        print(f"\nResNet, Faster R-CNN, V-Net, lesion nets and GCN: medians of {result['rounds']} rounds of medinfer, PyTorch, ONNX "
              f"Runtime in turn; ratio = ours/torch, /ORT = ours/ORT, /peer = ours/the faster of the two (<= 1.00: we "
              f"are no slower); ours/torch and ours/ORT for the V-Net are tiles/s (>= 1.00: we are no slower).")
        load = os.getloadavg()
        result["machine"]["loadavg_at_end"] = load
        l0 = result["machine"]["loadavg_at_start"]
        print(f"load average (1, 5, 15 min) at the start: {l0[0]:.2f} {l0[1]:.2f} {l0[2]:.2f}, at the end: "
              f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} CPUs); OMP_WAIT_POLICY "
              f"{OMP_ENV.get('OMP_WAIT_POLICY', 'unset (libgomp default)')}")
        result["machine"]["omp_wait_policy"] = OMP_ENV.get("OMP_WAIT_POLICY")
        if "core_ms_at_start" in result["machine"]:
            end = core_speeds(a.bin, os.path.join(blobs, "resnet18.safetensors"), iters)
            result["machine"]["core_ms_at_end"] = end
            print(f"each CPU alone (ResNet-18, one thread pinned to it; at two threads each layer waits on the "
                  f"slower): at the start {speeds_line(result['machine']['core_ms_at_start'])}, at the end "
                  f"{speeds_line(end)}")
        print(ort.summary())
        result["ort"] = {"version": ort.version, "not_available": ort.reason, "max_abs_diff": ort.diffs,
                         "failures": ort.failures}
    if result["resnet"]:
        print("eff GF/s: the direct convolution's FLOPs over our time; the 3x3 stride-1 layers run by "
              "Winograd, which does fewer, so %peak can pass 100 %. The kernels against the peak: below.")
    if result["conv"]:
        print("\nconvolution kernels alone (bench_conv; ResNet-50's 53 conv shapes):")
        print(result["conv_table"])
    for k, v in result["pipelines"].items():
        print(f"\n{k} (exit {v['exit']}):\n{v['output'] or v['stderr_tail']}")
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"\nwritten {a.out}")


if __name__ == "__main__":
    main()
