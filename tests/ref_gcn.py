"""tests/ref_gcn.py - fixtures for tests/test_gcn.c: GCNs built by tools/gcn_ref.py from random
weights, exported with the metadata gcn_ref.metadata writes, and each one's stages on a few graphs.

gcn_<name>.safetensors      the blob (what nn/gcn.c opens)
gcn_<name>_ref.safetensors  "<g>.x", "<g>.adj" and the stages "<g>.a_hat", "<g>.layers.<i>",
                            "<g>.readout", "<g>.logits", "<g>.probs" for graphs g = 0..graphs-1
gcn_bad_<what>.safetensors  blobs nn/gcn.c must refuse (tests/test_gcn.c lists the message each
                            must give)
Graphs: random symmetric 0/1 adjacency with an isolated node (no edges at all: with self loops it
keeps its own features, without them its row of Â is 0), the adjacency tools/patho_ref.py builds
from feature similarity, and n = 1."""
import json
import os
import sys

import numpy as np
import torch

import mi_ref

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import gcn_ref  # noqa: E402
import patho_ref  # noqa: E402

torch.manual_seed(20240)
rng = np.random.default_rng(20240)


def random_graph(n, p):
    a = (torch.rand(n, n) < p).float()
    a = torch.triu(a, 1)
    a = a + a.t()
    if n > 3:
        a[3, :] = 0
        a[:, 3] = 0
    return a


def similarity_graph(n, in_dim):
    f = rng.standard_normal((n, in_dim)).astype(np.float32)
    f[: n // 2] += rng.standard_normal(in_dim).astype(np.float32)   # two clusters
    return torch.from_numpy(f), torch.from_numpy(patho_ref.adjacency(f, "pearson", "ge", 0.3))


def make(name, cfg, graphs):
    c = dict(gcn_ref.DEFAULTS)
    c.update(cfg)
    meta = gcn_ref.metadata(c)
    model = gcn_ref.build(meta)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * p.shape[-1] ** -0.5)
    mi_ref.save("gcn_%s.safetensors" % name, model.state_dict(), meta)
    t = {}
    for g, (x, a) in enumerate(graphs):
        stages = {}
        logits = model(x, a, stages)
        t["%d.x" % g], t["%d.adj" % g] = x, a
        for k, v in stages.items():
            t["%d.%s" % (g, k)] = v.reshape(1, -1) if k == "readout" else v
        t["%d.probs" % g] = torch.softmax(logits, 0)
    mi_ref.save("gcn_%s_ref.safetensors" % name, t, {"graphs": str(len(graphs))})
    return model, meta


def graphs_for(in_dim, sizes):
    out = []
    for n in sizes:
        out.append((torch.randn(n, in_dim), random_graph(n, 0.1) if n > 1 else torch.zeros(1, 1)))
    return out


make("default", {}, graphs_for(64, [37, 1]) + [similarity_graph(200, 64)])
make("noloops_max", {"in_dim": 24, "hidden": [20, 12, 8], "num_classes": 3, "labels": ["a", "b", "c"],
                     "self_loops": False, "readout": "max"}, graphs_for(24, [50, 1, 2]))
make("loops_max", {"in_dim": 16, "hidden": [32], "readout": "max"}, graphs_for(16, [23, 1]))
make("noloops_mean", {"in_dim": 8, "hidden": [8, 8], "self_loops": False}, graphs_for(8, [11, 1]))
make("nolayers", {"in_dim": 5, "hidden": [], "num_classes": 2, "labels": ["x", "y"]}, graphs_for(5, [7]))

# ---- blobs to refuse: each from a valid GCN with one thing wrong
base = gcn_ref.GCN(in_dim=6, hidden=[5, 4], num_classes=2)
base_meta = gcn_ref.metadata(dict(gcn_ref.DEFAULTS, in_dim=6, hidden=[5, 4], num_classes=2, labels=["p", "q"]))
sd = base.state_dict()


def bad(what, meta=None, tensors=None, drop=()):
    m = dict(base_meta)
    for k, v in (meta or {}).items():
        if v is None:
            m.pop(k)
        else:
            m[k] = v
    t = {k: v for k, v in sd.items() if k not in drop}
    t.update(tensors or {})
    mi_ref.save("gcn_bad_%s.safetensors" % what, t, m)


bad("arch", {"arch": "resnet18"})
bad("noarch", {"arch": None})
bad("hidden", {"hidden": "5, 4"})
bad("hidden_zero", {"hidden": "[5, 0]"})
bad("hidden_long", {"hidden": json.dumps([4] * 17)})
bad("in_dim", {"in_dim": "six"})
bad("in_dim_shape", {"in_dim": "7"})
bad("readout", {"readout": "sum"})
bad("self_loops", {"self_loops": "yes"})
bad("labels", {"labels": json.dumps(["p", "q", "r"])})
bad("nolabels", {"labels": None})
bad("missing", drop=("out.bias",))
bad("shape", tensors={"layers.1.weight": torch.zeros(4, 6)})
bad("extra", tensors={"layers.2.weight": torch.zeros(3, 4), "layers.2.bias": torch.zeros(3)})
