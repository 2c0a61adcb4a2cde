#!/usr/bin/python3
"""tools/rcnn_ref.py - the Faster R-CNN that nn/rcnn.c runs, built from torchvision's own parts.

torchvision's FasterRCNN (GeneralizedRCNNTransform, AnchorGenerator, RPNHead,
RegionProposalNetwork, MultiScaleRoIAlign, TwoMLPHead, FastRCNNPredictor, RoIHeads) on a "C4"
backbone: a torchvision ResNet-18/50 up to layer3 (stride 16; 256 or 1024 channels), one feature
map named '0'. Training (tools/train_echo.py), export and the parity tests all build the model
here, from the same metadata that the blob carries, so the blob and the module cannot disagree.

Anchors: by default torchvision's sizes x aspect ratios; with metadata 'anchors' (a JSON list of
[width, height] pairs, in the pixels of the resized network input) exactly those boxes at every
position, in that order -- the adaptive anchors tools/anchors.py computes from labeled boxes.

Metadata keys (all strings, as safetensors stores them; defaults are torchvision's):
  arch              "fasterrcnn_c4"
  backbone          "resnet18" | "resnet50"
  input_channels    1 or 3 (conv1's input; 1 for grayscale modalities)        default 3
  num_classes       classes including background (index 0)
  labels            JSON list of num_classes names ("__background__" first)
  min_size max_size GeneralizedRCNNTransform's resize                        800, 1333
  image_mean image_std  JSON lists, one per input channel                    ImageNet's
  anchors           JSON [[w, h], ...]  | anchor_sizes + anchor_ratios (JSON lists)
  rpn_pre_nms_top_n rpn_post_nms_top_n rpn_nms_thresh rpn_score_thresh         1000 1000 0.7 0.0
  box_score_thresh box_nms_thresh box_detections_per_img                     0.05 0.5 100
  roi_output_size roi_sampling_ratio  (MultiScaleRoIAlign)                   7 2
  representation_size (TwoMLPHead)                                            1024
"""
import json

import torch
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign

DEFAULTS = {"input_channels": 3, "min_size": 800, "max_size": 1333,
            "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
            "anchor_sizes": [32, 64, 128, 256, 512], "anchor_ratios": [0.5, 1.0, 2.0],
            "rpn_pre_nms_top_n": 1000, "rpn_post_nms_top_n": 1000, "rpn_nms_thresh": 0.7,
            "rpn_score_thresh": 0.0, "box_score_thresh": 0.05, "box_nms_thresh": 0.5,
            "box_detections_per_img": 100, "roi_output_size": 7, "roi_sampling_ratio": 2,
            "representation_size": 1024}
C4_CHANNELS = {"resnet18": 256, "resnet50": 1024}


class C4Backbone(nn.Module):
    """torchvision ResNet conv1 .. layer3; state_dict names 'body.conv1.weight', 'body.layer3...'."""

    def __init__(self, arch, in_channels=3):
        super().__init__()
        r = getattr(torchvision.models, arch)(weights=None)
        if in_channels != 3:
            r.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.body = IntermediateLayerGetter(r, {"layer3": "0"})  # drops layer4, avgpool, fc
        self.out_channels = C4_CHANNELS[arch]

    def forward(self, x):
        return self.body(x)


class BoxAnchorGenerator(AnchorGenerator):
    """torchvision's AnchorGenerator with the per-position anchors given as (w, h) boxes instead
    of the product of sizes and aspect ratios; rounded as AnchorGenerator.generate_anchors rounds."""

    def __init__(self, wh):
        super().__init__(sizes=((1,),), aspect_ratios=((1.0,),))
        wh = torch.tensor(wh, dtype=torch.float32)
        self.cell_anchors = [(torch.stack([-wh[:, 0], -wh[:, 1], wh[:, 0], wh[:, 1]], dim=1) / 2).round()]

    def num_anchors_per_location(self):
        return [self.cell_anchors[0].shape[0]]


def parse_meta(meta):
    """metadata (str -> str) -> typed config, torchvision's defaults filled in"""
    cfg = dict(DEFAULTS)
    for k, v in meta.items():
        if k in ("arch", "backbone", "labels", "model_version", "created", "format_version"):
            cfg[k] = v
        else:
            try:
                cfg[k] = json.loads(v)
            except (TypeError, ValueError):
                cfg[k] = v
    return cfg


def anchor_generator(cfg):
    if "anchors" in cfg:
        return BoxAnchorGenerator(cfg["anchors"])
    return AnchorGenerator(sizes=(tuple(cfg["anchor_sizes"]),), aspect_ratios=(tuple(cfg["anchor_ratios"]),))


def build(meta):
    """The eval-mode-ready FasterRCNN described by blob metadata (str -> str)."""
    cfg = parse_meta(meta)
    assert cfg["arch"] == "fasterrcnn_c4", cfg["arch"]
    backbone = C4Backbone(cfg["backbone"], int(cfg["input_channels"]))
    pool = MultiScaleRoIAlign(featmap_names=["0"], output_size=int(cfg["roi_output_size"]),
                              sampling_ratio=int(cfg["roi_sampling_ratio"]))
    return FasterRCNN(
        backbone, num_classes=None,
        min_size=int(cfg["min_size"]), max_size=int(cfg["max_size"]),
        image_mean=list(cfg["image_mean"]), image_std=list(cfg["image_std"]),
        rpn_anchor_generator=anchor_generator(cfg),
        rpn_pre_nms_top_n_test=int(cfg["rpn_pre_nms_top_n"]),
        rpn_post_nms_top_n_test=int(cfg["rpn_post_nms_top_n"]),
        rpn_nms_thresh=float(cfg["rpn_nms_thresh"]), rpn_score_thresh=float(cfg["rpn_score_thresh"]),
        box_roi_pool=pool,
        box_head=torchvision.models.detection.faster_rcnn.TwoMLPHead(
            backbone.out_channels * int(cfg["roi_output_size"]) ** 2, int(cfg["representation_size"])),
        box_predictor=torchvision.models.detection.faster_rcnn.FastRCNNPredictor(
            int(cfg["representation_size"]), int(cfg["num_classes"])),
        box_score_thresh=float(cfg["box_score_thresh"]), box_nms_thresh=float(cfg["box_nms_thresh"]),
        box_detections_per_img=int(cfg["box_detections_per_img"]))


def metadata(backbone, num_classes, labels=None, model_version="0.0.0", **cfg):
    """Blob metadata for build(): cfg keys as in the module docstring, values JSON-encoded."""
    import export
    labels = labels or ["__background__"] + [f"class_{i}" for i in range(1, num_classes)]
    meta = export.blob_metadata("fasterrcnn_c4", num_classes, labels,
                                input_size=int(cfg.pop("min_size", DEFAULTS["min_size"])),
                                mean=cfg.pop("image_mean", DEFAULTS["image_mean"]),
                                std=cfg.pop("image_std", DEFAULTS["image_std"]),
                                model_version=model_version, backbone=backbone, **cfg)
    # the transform's names for what export.blob_metadata calls input_size, mean and std
    meta["min_size"] = meta.pop("input_size")
    meta["image_mean"] = meta.pop("mean")
    meta["image_std"] = meta.pop("std")
    return meta
