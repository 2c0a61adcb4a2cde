#!/usr/bin/python3
"""bench/ort_export.py MODEL OUT.onnx [BATCH [H W]] - the network the benchmark gives medinfer, as
ONNX, for ONNX Runtime (bench/ort_latency.js), with a fixed input and PyTorch's output for it.
For a GCN blob: bench/ort_export.py BLOB OUT.onnx NODES.

MODEL: resnet18 | resnet50 - tools/export.py's random_model(arch, 1000, seed 0), the module whose
state_dict bench.py writes as the blob medinfer runs (BatchNorm statistics randomized too);
or a V-Net blob (*.safetensors, what bench/vnet_blob.py writes) - tools/vnet_ref.py's module
built from the blob's metadata and loaded with the blob's own weights, as torch_vnet_latency.py does;
or a depthnet / segnet blob (tools/export.py --arch depthnet|segnet --random) - tools/lesionseg_ref.py's
module, likewise, as torch_lesionseg_latency.py builds it (outputs "depth" and "seg");
or a Faster R-CNN blob (bench/rcnn_blob.py) - tools/rcnn_ref.py's torchvision FasterRCNN built from
the blob's metadata with its weights, as torch_rcnn_latency.py runs it: one H x W image in, the
image's detections out ("boxes", "scores", and "labels" as float32), the whole model traced -
resize, RPN, NMS, RoIAlign, box head and post-processing all inside the graph.
or a GCN blob (bench/gcn_blob.py) - tools/gcn_ref.py's module, likewise, on the graph
bench/torch_gcn_latency.py builds (NODES nodes): two inputs, "x" and "adjacency", and the logits;
Â's normalization (the float64 degree sums included) is inside the graph.
BATCH (default 1) is fixed in the graph, as is the spatial size (224, or the blob's input_size).

The lesion networks export at opset 13 as they are: reflect and replicate padding become Pad
(mode reflect / edge), InstanceNorm2d InstanceNormalization, GroupNorm a reshape around
InstanceNormalization and an affine Mul/Add, nearest and bilinear interpolate Resize
(asymmetric / half_pixel), clamp Clip; the depthnet's patch grid and stitching are traced as the
fixed configuration runs them (Slices, Concat, and the in-place adds of the patches into the map).

Every output the module returns is a graph output (the V-Net's seg, features and tile_logits,
all of which medinfer computes too), so ONNX Runtime cannot prune a head the others run.

Writes OUT.onnx (torch.onnx.export, opset 13, constants folded, no dynamic axes) and beside it
OUT.onnx.json (input and output names and shapes), OUT.onnx.in.f32 (the input: uniform in
[-0.5, 0.5), seed 0; a model of several inputs lists them under "inputs" and writes each as
OUT.onnx.in.<name>.f32) and OUT.onnx.<output>.f32 (PyTorch's output for it, eval() under no_grad),
raw little-endian float32, so that ort_latency.js can print ONNX Runtime's max abs difference from
PyTorch: the peer is known to compute the same network.

torch 1.13's exporter writes the protobuf itself; the `onnx` Python package is not needed (it is
imported only to check the model, and only when present)."""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
sys.path.insert(0, HERE)
import export  # noqa: E402


class Detections(torch.nn.Module):
    """A torchvision detector as a tensor-in, tensors-out module (batch 1): what tracing needs."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        d = self.m(list(x))[0]
        return d["boxes"], d["scores"], d["labels"].float()


def module_and_shape(model, batch, hw):
    if model in ("resnet18", "resnet50"):
        return export.random_model(model, 1000, 0), (batch, 3, 224, 224)
    sd, meta = export.read_safetensors(model)
    if meta.get("arch", "").startswith("fasterrcnn"):
        import rcnn_ref
        m = rcnn_ref.build(meta).eval()
        m.load_state_dict(sd)
        assert batch == 1 and hw, "a detector exports at batch 1 with its H W"
        return Detections(m), (1, int(meta.get("input_channels", 3))) + hw
    if meta.get("arch") in ("depthnet", "segnet"):
        import lesionseg_ref
        c = lesionseg_ref.config(meta)
        m = lesionseg_ref.build(meta).eval()
        m.load_state_dict(sd)
        side = int(c["input_size"])
        return m, (batch, 3 if c["arch"] == "depthnet" else int(c["in_channels"]) + 1, side, side)
    import vnet_ref
    c = vnet_ref.config(meta)
    m = vnet_ref.build(meta).eval()
    m.load_state_dict(sd)
    side = int(c["input_size"])
    return m, (batch, int(c["in_channels"])) + (side,) * (2 if c["arch"] == "vnet2d" else 3)


def gcn_inputs(model, nodes):
    """A GCN blob's module and the bench's graph of `nodes` nodes, or None for another model."""
    if model in ("resnet18", "resnet50"):
        return None
    sd, meta = export.read_safetensors(model)
    if meta.get("arch") != "gcn":
        return None
    import gcn_ref
    from torch_gcn_latency import graph
    m = gcn_ref.build(meta).eval()
    m.load_state_dict(sd)
    return m, graph(meta, nodes)


def main():
    model, out = sys.argv[1], sys.argv[2]
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    hw = (int(sys.argv[4]), int(sys.argv[5])) if len(sys.argv) > 5 else None
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    gcn = gcn_inputs(model, batch)
    if gcn:
        m, xs = gcn
        in_names = ["x", "adjacency"]
    else:
        m, shape = module_and_shape(model, batch, hw)
        xs = (torch.rand(*shape, generator=torch.Generator().manual_seed(0)) - 0.5,)
        in_names = ["input"]
    m = m.eval()
    with torch.no_grad():
        y = m(*xs)
        ys = list(y) if isinstance(y, (tuple, list)) else [y]
        arch = getattr(m, "c", {}).get("arch")
        names = ([{"depthnet": "depth", "segnet": "seg"}[arch]] if arch in ("depthnet", "segnet") else
                 ["boxes", "scores", "labels"] if isinstance(m, Detections) else
                 ["logits"] if len(ys) == 1 else ["seg", "features", "tile_logits"][:len(ys)])
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        torch.onnx.export(m, xs, out, input_names=in_names, output_names=names, opset_version=13,
                          do_constant_folding=True)
    try:
        import onnx
        onnx.checker.check_model(onnx.load(out))
    except ImportError:
        pass
    xs[0].numpy().astype("<f4").tofile(out + ".in.f32")
    if len(xs) > 1:
        for name, x in zip(in_names, xs):
            x.numpy().astype("<f4").tofile(f"{out}.in.{name}.f32")
    for name, t in zip(names, ys):
        t.numpy().astype("<f4").tofile(f"{out}.{name}.f32")
    info = {"model": model, "input": in_names[0], "input_shape": list(xs[0].shape),
            "outputs": {name: list(t.shape) for name, t in zip(names, ys)}, "torch": torch.__version__,
            "opset": 13}
    if len(xs) > 1:
        info["inputs"] = [{"name": name, "shape": list(x.shape)} for name, x in zip(in_names, xs)]
    with open(out + ".json", "w") as f:
        json.dump(info, f)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
