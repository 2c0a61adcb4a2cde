#!/usr/bin/env node
// bench/ort_latency.js MODEL.onnx THREADS ITERS [WARMUP] - ONNX Runtime's latency for one
// configuration, in its own process so that peak RSS belongs to it. Prints one JSON line, like
// bench/torch_latency.py: median_ms, p90_ms, min_ms, peak_rss_mb, plus max_abs_diff.
//
// MODEL.onnx and the files beside it come from bench/ort_export.py: MODEL.onnx.json (input and
// output names and shapes), MODEL.onnx.in.f32 (the fixed input; MODEL.onnx.in.<name>.f32 each for
// a model of several inputs, which the JSON lists under "inputs") and MODEL.onnx.<output>.f32
// (PyTorch's output for that input). The first run's outputs are compared with PyTorch's:
// max_abs_diff (per output, and the largest as max_abs_diff_all; pytorch_max_abs: the largest
// magnitude of each of PyTorch's outputs, for scale) says that the peer computes the
// same network as the other two engines.
//
// The session: CPU execution provider, graphOptimizationLevel 'all' (constant folding, Conv+BN /
// Conv+ReLU / Conv+Add fusions and the NCHWc layout rewrite), intraOpNumThreads = THREADS,
// interOpNumThreads 1, sequential execution. Everything else is ONNX Runtime's default, as a user
// gets it (its intra-op threads spin briefly while waiting, the memory arena is on). WARMUP runs
// (default 5, like torch_latency.py) precede the ITERS timed runs, each of the same input.
//
// onnxruntime-node is found through NODE_PATH (bench.py points it at build/ort/node_modules,
// where `make bench` installs the version pinned by bench/ort/package-lock.json).
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

function peakRssMb() {
  // VmHWM: the resident peak of this address space only (ru_maxrss would count the parent's too)
  const m = /VmHWM:\s+(\d+)\s+kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function readF32(path, shape) {
  const n = shape.reduce((a, b) => a * b, 1);
  const buf = fs.readFileSync(path);
  if (buf.length !== 4 * n) throw new Error(`${path}: ${buf.length} bytes, expected ${4 * n} for [${shape}]`);
  // a copy into its own ArrayBuffer: Node's pooled Buffers may not be 4-byte aligned
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = buf.readFloatLE(4 * i);
  return out;
}

async function main() {
  const [model, threadsArg, itersArg, warmArg] = process.argv.slice(2);
  if (!model || !threadsArg || !itersArg) {
    console.error('usage: ort_latency.js MODEL.onnx THREADS ITERS [WARMUP]');
    process.exit(2);
  }
  const threads = parseInt(threadsArg, 10), iters = Math.max(1, parseInt(itersArg, 10));
  const warmup = warmArg === undefined ? 5 : Math.max(1, parseInt(warmArg, 10));
  const info = JSON.parse(fs.readFileSync(`${model}.json`, 'utf8'));
  // one input (MODEL.onnx.in.f32), or several listed under "inputs" (MODEL.onnx.in.<name>.f32)
  const feeds = {};
  for (const { name, shape, file } of info.inputs ?
    info.inputs.map((i) => ({ ...i, file: `${model}.in.${i.name}.f32` })) :
    [{ name: info.input, shape: info.input_shape, file: `${model}.in.f32` }]) {
    feeds[name] = new ort.Tensor('float32', readF32(file, shape), shape);
  }

  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
  });

  // the first run: outputs against PyTorch's (and one of the warm-up runs)
  const first = await session.run(feeds);
  const maxAbsDiff = {}, refMaxAbs = {};   // the difference, and the size of what it is a difference of
  for (const [name, shape] of Object.entries(info.outputs)) {
    const ref = readF32(`${model}.${name}.f32`, shape), got = first[name].data;
    if (got.length !== ref.length) throw new Error(`${name}: ${got.length} values, PyTorch has ${ref.length}`);
    let d = 0, r = 0;
    for (let i = 0; i < ref.length; i++) {
      d = Math.max(d, Math.abs(got[i] - ref[i]));
      r = Math.max(r, Math.abs(ref[i]));
    }
    maxAbsDiff[name] = d;
    refMaxAbs[name] = r;
  }
  for (let i = 1; i < warmup; i++) await session.run(feeds);

  const t = [];
  for (let i = 0; i < iters; i++) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    t.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  t.sort((a, b) => a - b);
  console.log(JSON.stringify({
    engine: 'onnxruntime', model: info.model, threads, iters, batch: info.input_shape[0],
    median_ms: t[Math.floor(t.length / 2)], p90_ms: t[Math.min(t.length - 1, Math.floor(t.length * 9 / 10))],
    min_ms: t[0], peak_rss_mb: peakRssMb(), max_abs_diff: maxAbsDiff, pytorch_max_abs: refMaxAbs,
    max_abs_diff_all: Math.max(...Object.values(maxAbsDiff)), ort: ort.env.versions.node,
  }));
}

main().catch((e) => { console.error(`ort_latency.js: ${e.message || e}`); process.exit(1); });
