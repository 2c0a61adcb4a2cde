#!/usr/bin/env node
// bench/ort_profile.js MODEL.onnx THREADS ITERS - where ONNX Runtime's time goes, node by node:
// the same session as bench/ort_latency.js (CPU provider, graph optimizations 'all', intra-op
// threads THREADS, sequential) with ONNX Runtime's own profiler on, ITERS runs of MODEL's fixed
// input (MODEL.onnx.in.f32 from bench/ort_export.py). Prints, in graph order, each node's median
// kernel time over the runs after the first, its operator and its name, then their sum - to set
// beside build/bench_layers's stages for the same network. The profiler's JSON is left in the
// working directory as ort_profile_*.json.
//
// onnxruntime-node is found through NODE_PATH, as for ort_latency.js:
//   NODE_PATH=build/ort/node_modules node bench/ort_profile.js build/bench/ort/resnet50.onnx 1 20
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

async function main() {
  const [model, threadsArg, itersArg] = process.argv.slice(2);
  if (!model || !threadsArg || !itersArg) {
    console.error('usage: ort_profile.js MODEL.onnx THREADS ITERS');
    process.exit(2);
  }
  const info = JSON.parse(fs.readFileSync(`${model}.json`, 'utf8'));
  const feeds = {};   // as ort_latency.js reads them: one input, or several under "inputs"
  for (const { name, shape, file } of info.inputs ?
    info.inputs.map((i) => ({ ...i, file: `${model}.in.${i.name}.f32` })) :
    [{ name: info.input, shape: info.input_shape, file: `${model}.in.f32` }]) {
    const raw = fs.readFileSync(file), data = new Float32Array(raw.length / 4);
    for (let i = 0; i < data.length; i++) data[i] = raw.readFloatLE(4 * i);
    feeds[name] = new ort.Tensor('float32', data, shape);
  }
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: parseInt(threadsArg, 10),
    interOpNumThreads: 1, executionMode: 'sequential', enableProfiling: true, profileFilePrefix: 'ort_profile',
  });
  for (let i = 0; i < Math.max(2, parseInt(itersArg, 10)); i++) await session.run(feeds);
  await session.release();   // writes the profile

  const file = fs.readdirSync('.').filter((f) => /^ort_profile_.*\.json$/.test(f))
    .map((f) => [f, fs.statSync(f).mtimeMs]).sort((a, b) => b[1] - a[1])[0][0];
  const times = new Map(), ops = new Map();
  for (const e of JSON.parse(fs.readFileSync(file, 'utf8'))) {
    if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
    const name = e.name.slice(0, -'_kernel_time'.length);
    if (!times.has(name)) times.set(name, []);
    times.get(name).push(e.dur / 1000);
    ops.set(name, e.args.op_name);
  }
  let sum = 0;
  for (const [name, t] of times) {
    const rest = (t.length > 1 ? t.slice(1) : t).sort((a, b) => a - b);   // the first run warms up
    const median = rest[Math.floor(rest.length / 2)];
    sum += median;
    console.log(`${median.toFixed(3).padStart(9)}  ${ops.get(name).padEnd(20)} ${name}`);
  }
  console.log(`${sum.toFixed(3).padStart(9)}  sum of the nodes' medians (ms), ${file}`);
}

main().catch((e) => { console.error(`ort_profile.js: ${e.message}`); process.exit(1); });
