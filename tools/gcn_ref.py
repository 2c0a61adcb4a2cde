#!/usr/bin/python3
"""tools/gcn_ref.py - the graph convolutional network that nn/gcn.c runs (slide classification).

Kipf & Welling, "Semi-supervised classification with graph convolutional networks" (ICLR 2017):
each layer is H' = ReLU(Â · (H · Wᵀ + b)) (the bias inside the product with Â, as forward()
writes it), with Â the symmetrically normalized adjacency
  with self loops:     Â = D^-1/2 (A + I) D^-1/2,  D_ii = Σ_j (A + I)_ij
  without self loops:  Â = D^-1/2 A D^-1/2,        D_ii = Σ_j A_ij  (a node of degree 0 gets 0)
then a readout over the nodes (mean or max) and a Linear to the classes; softmax gives the
probabilities. Degrees are summed in float64, as ops/graph.c does.

Training (tools/train_patho.py), export and the parity tests all build the module here from the
metadata the blob carries.

Metadata keys (strings, as safetensors stores them):
  arch            "gcn"
  in_dim          node feature length (the V-Net's feature_dim)
  hidden          JSON list of the graph-conv layer widths                       default [64, 32]
  num_classes     default 4
  labels          JSON list of class names
  self_loops      "true" | "false"                                               default true
  readout         "mean" | "max"                                                 default "mean"
State-dict names: layers.<i>.weight [out, in], layers.<i>.bias [out]; out.weight, out.bias.
"""
import json

import torch
from torch import nn

DEFAULTS = {"arch": "gcn", "in_dim": 64, "hidden": [64, 32], "num_classes": 4,
            "labels": ["negative", "low-grade intraepithelial neoplasia",
                       "high-grade intraepithelial neoplasia", "invasive carcinoma"],
            "self_loops": True, "readout": "mean"}


def normalize_adjacency(a, self_loops=True):
    """Â from a dense (n, n) adjacency (float32 in, float32 out; degrees in float64)."""
    a = a.to(torch.float32)
    if self_loops:
        a = a + torch.eye(a.shape[0], dtype=a.dtype)
    deg = a.to(torch.float64).sum(1).to(torch.float32)
    dinv = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    return dinv[:, None] * a * dinv[None, :]


class GCN(nn.Module):
    def __init__(self, in_dim=64, hidden=(64, 32), num_classes=4, self_loops=True, readout="mean"):
        super().__init__()
        if readout not in ("mean", "max"):
            raise ValueError(f"readout {readout!r} is not mean or max")
        dims = [in_dim] + list(hidden)
        self.layers = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(len(hidden)))
        self.out = nn.Linear(dims[-1], num_classes)
        self.self_loops, self.readout = self_loops, readout

    def forward(self, x, adjacency, stages=None):
        """x: (n, in_dim) node features, adjacency: (n, n) -> logits (num_classes).
        Also takes a batch (B, n, in_dim), (B, n, n) for training."""
        if x.dim() == 3:
            return torch.stack([self.forward(xi, ai) for xi, ai in zip(x, adjacency)])
        a_hat = normalize_adjacency(adjacency, self.self_loops)
        h = x
        for i, lin in enumerate(self.layers):
            h = torch.relu(a_hat @ lin(h))
            if stages is not None:
                stages[f"layers.{i}"] = h
        r = h.mean(0) if self.readout == "mean" else h.max(0).values
        logits = self.out(r)
        if stages is not None:
            stages.update({"a_hat": a_hat, "readout": r, "logits": logits})
        return logits


def config(meta):
    c = dict(DEFAULTS)
    for k, v in meta.items():
        if k in c and isinstance(v, str) and k not in ("arch", "readout"):
            v = json.loads(v)
        if k in c:
            c[k] = v
    if c["arch"] != "gcn":
        raise ValueError(f"arch {c['arch']!r} is not a GCN")
    return c


def build(meta):
    c = config(meta)
    return GCN(in_dim=int(c["in_dim"]), hidden=list(c["hidden"]), num_classes=int(c["num_classes"]),
               self_loops=bool(c["self_loops"]), readout=c["readout"])


def metadata(c):
    return {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in c.items()}
