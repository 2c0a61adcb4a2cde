#!/usr/bin/python3
"""tests/ref_patho.py - `medinfer patho` end to end against the references, on a picture whose
every pixel the C and Python both see the same way.

A 448 x 320 H&E-like image made by Beer-Lambert from two stains whose concentrations vary
smoothly, with glass (no stain) over part of it and a stripe of dark "lesion", saved as PNG;
random-weight V-Net and GCN blobs (tools/vnet_ref.py, tools/gcn_ref.py) carrying the pipeline's
metadata. The test runs the C pipeline with --slide-mpp equal to the model's mpp (tiles are plain
crops, no resampling) and a fixed --tissue-gray (the thumbnail does not decide), and compares
with the pipeline written here from tools/patho_ref.py: which tiles are kept, each tile's score
S, the top-K order, the number of graph edges and the class probabilities.

Writes patho_e2e.png, patho_e2e_vnet.safetensors, patho_e2e_gcn.safetensors and
patho_e2e.json (the expected results) into the fixture directory."""
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

from mi_ref import out_dir, save

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import gcn_ref  # noqa: E402
import patho_ref  # noqa: E402
import vnet_ref  # noqa: E402

T, W, H, GRAY = 64, 448, 320, 215
MPP, TOP_K = 2.0, 5


def smooth(rng, h, w, cells):
    """a smooth random field in [0, 1]: bilinear up-sampling of a coarse random grid"""
    g = torch.from_numpy(rng.random((1, 1, cells, cells)).astype(np.float32))
    return torch.nn.functional.interpolate(g, size=(h, w), mode="bilinear", align_corners=True)[0, 0].numpy()


def picture(rng):
    he = np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]])            # H and E optical densities
    c_h = 0.3 + 1.2 * smooth(rng, H, W, 9) + 0.3 * rng.random((H, W))
    c_e = 0.4 + 0.8 * smooth(rng, H, W, 7) + 0.2 * rng.random((H, W))
    y, x = np.mgrid[0:H, 0:W]
    c_h = np.where(np.abs(x - 0.8 * y - 120) < 40, c_h + 1.2, c_h)          # a dark stripe
    glass = (x > 330) & (y < 200) | (x + y < 90)
    c = np.stack([np.where(glass, 0, c_h), np.where(glass, 0, c_e)], -1)
    img = 240 * np.exp(-(c @ he.T)) + rng.normal(0, 2, (H, W, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def main():
    d = out_dir()
    rng = np.random.default_rng(11)
    torch.manual_seed(11)
    img = picture(rng)
    Image.fromarray(img).save(os.path.join(d, "patho_e2e.png"))

    ref = patho_ref.macenko_fit(img[:128, :128])
    vc = dict(vnet_ref.DEFAULTS, width=6, enc_convs=[1, 2, 2], dec_convs=[1, 1], feature_dim=16,
              input_size=T)
    vnet = vnet_ref.build(vc).eval()
    vmeta = vnet_ref.metadata(vc)
    vmeta.update(mpp=str(MPP), tile_size=str(T), tissue_ratio="0.7", stain="macenko",
                 stain_he=json.dumps(ref[0].tolist()), stain_max_c=json.dumps(ref[1].tolist()),
                 mean=json.dumps([0.7, 0.5, 0.7]), std=json.dumps([0.15, 0.2, 0.15]), model_version="e2e")
    save("patho_e2e_vnet.safetensors", vnet.state_dict(), vmeta)
    gc = dict(gcn_ref.DEFAULTS, in_dim=16, hidden=[8])
    gcn = gcn_ref.build(gcn_ref.metadata(gc)).eval()
    gmeta = gcn_ref.metadata(gc)

    mean = torch.tensor([0.7, 0.5, 0.7]).view(1, 3, 1, 1)
    std = torch.tensor([0.15, 0.2, 0.15]).view(1, 3, 1, 1)
    kept, scores, feats = [], [], []
    for row in range(H // T):
        for col in range(W // T):
            tile = img[row * T:(row + 1) * T, col * T:(col + 1) * T]
            if patho_ref.tissue_ratio(patho_ref.gray(tile), GRAY) < 0.7:
                continue
            norm = patho_ref.macenko_normalize(tile, ref[0], ref[1])
            if norm is None:
                continue
            x = (torch.from_numpy(np.ascontiguousarray(norm)).permute(2, 0, 1)[None].float() / 255 - mean) / std
            seg, f, _ = vnet(x)
            kept.append([col, row])
            scores.append(float(seg[0, 1].double().sum()))
            feats.append(f[0].numpy())
    order = patho_ref.top_k(scores, TOP_K)
    fk = np.stack([feats[i] for i in order])
    # the threshold between the similarities, so that about half the pairs are joined and no
    # similarity sits on it (a rounding difference cannot flip an edge)
    sims = np.sort(patho_ref.pearson(fk)[np.triu_indices(len(order), 1)])
    i = len(sims) // 2
    edge_t = round(float(sims[i - 1] + sims[i]) / 2, 4)
    assert np.min(np.abs(sims - edge_t)) > 1e-5
    a = patho_ref.adjacency(fk, "pearson", "ge", edge_t)
    gmeta.update(top_k=str(TOP_K), edge_metric="pearson", edge_compare="ge", edge_threshold=str(edge_t),
                 model_version="e2e")
    save("patho_e2e_gcn.safetensors", gcn.state_dict(), gmeta)
    p = torch.softmax(gcn(torch.from_numpy(fk), torch.from_numpy(a)), 0)
    with open(os.path.join(d, "patho_e2e.json"), "w") as f:
        json.dump({"kept": kept, "scores": scores, "top": [kept[i] for i in order],
                   "edges": int(a.sum()) // 2, "probabilities": p.tolist(), "labels": gc["labels"],
                   "tissue_gray": GRAY, "mpp": MPP}, f, indent=1)


if __name__ == "__main__":
    main()
