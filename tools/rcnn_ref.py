#!/usr/bin/python3
"""tools/rcnn_ref.py - the Faster R-CNNs that nn/rcnn.c runs, built from torchvision's own parts.

torchvision's FasterRCNN (GeneralizedRCNNTransform, AnchorGenerator, RPNHead,
RegionProposalNetwork, MultiScaleRoIAlign, TwoMLPHead, FastRCNNPredictor, RoIHeads) on one of
two backbones, chosen by metadata 'arch':
  fasterrcnn_c4   a torchvision ResNet-18/50 up to layer3 (stride 16; 256 or 1024 channels), one
                  feature map named '0'.
  fasterrcnn_fpn  torchvision's BackboneWithFPN, by default exactly as resnet_fpn_backbone() and
                  fasterrcnn_resnet50_fpn() build it: the ResNet's layer1..layer4 (returned
                  layers 1-4) into a FeaturePyramidNetwork with 256 channels and LastLevelMaxPool
                  (metadata fpn_channels and returned_layers change both),
                  feature maps '0', '1', '2', '3' (strides 4, 8, 16, 32) and 'pool' (k=1, s=2 on
                  '3'). The RPN runs on all five, MultiScaleRoIAlign on '0'..'3' (LevelMapper:
                  canonical scale 224, level 4 by default). With backbone resnet50 and default
                  metadata it
                  is fasterrcnn_resnet50_fpn(num_classes=...); a state_dict of that model (or of
                  FasterRCNN(resnet_fpn_backbone('resnet18', ...))) loads into build(meta).
Training (tools/train_echo.py), export and the parity tests all build the model here, from the
same metadata that the blob carries, so the blob and the module cannot disagree.

Anchors (fasterrcnn_c4): by default torchvision's sizes x aspect ratios; with metadata 'anchors' (a
JSON list of [width, height] pairs, in the pixels of the resized network input) exactly those
boxes at every position, in that order -- the adaptive anchors tools/anchors.py computes from
labeled boxes.
Anchors (fasterrcnn_fpn): 'anchor_sizes' names the sizes of each of the five levels '0', '1',
'2', '3', 'pool' -- [32, 64, 128, 256, 512] (one size per level, torchvision's default, as
AnchorGenerator reads ((32,), (64,), ...)) or [[32, 40], [64, 80], ...] (the same number per
level: the RPN head is shared) -- times 'anchor_ratios' at every level. 'anchors' is refused.

Metadata keys (all strings, as safetensors stores them; defaults are torchvision's):
  arch              "fasterrcnn_c4" | "fasterrcnn_fpn"
  backbone          "resnet18" | "resnet50"
  bn_eps            the backbone's BatchNorm eps                              1e-5
                    (torchvision's COCO-trained fasterrcnn_resnet50_fpn: 0.0)
  input_channels    1 or 3 (conv1's input; 1 for grayscale modalities)        default 3
  num_classes       classes including background (index 0)
  labels            JSON list of num_classes names ("__background__" first)
  min_size max_size GeneralizedRCNNTransform's resize                        800, 1333
  image_mean image_std  JSON lists, one per input channel                    ImageNet's
  anchors           JSON [[w, h], ...]  | anchor_sizes + anchor_ratios (JSON lists)
  rpn_pre_nms_top_n rpn_post_nms_top_n rpn_nms_thresh rpn_score_thresh         1000 1000 0.7 0.0
  box_score_thresh box_nms_thresh box_detections_per_img                     0.05 0.5 100
  roi_output_size roi_sampling_ratio  (MultiScaleRoIAlign)                   7 2
  roi_canonical_scale roi_canonical_level  (its LevelMapper; FPN only)        224 4
  representation_size (TwoMLPHead)                                            1024
  fpn_channels      the FPN's out_channels (FPN only)                         256
  returned_layers   JSON list of the ResNet layers the FPN takes, increasing   [1, 2, 3, 4]
                    in 1..4 (FPN only; torchvision's returned_layers): k of them give maps
                    '0'..'k-1' (MultiScaleRoIAlign pools those; its LevelMapper infers the levels
                    from their sizes) plus 'pool', so anchor_sizes has k + 1 entries; the layers
                    after the last one are not in the model (IntermediateLayerGetter drops them:
                    [1, 2, 3] has no layer4)
"""
import json

import torch
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN, resnet_fpn_backbone
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

DEFAULTS = {"input_channels": 3, "min_size": 800, "max_size": 1333,
            "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
            "anchor_sizes": [32, 64, 128, 256, 512], "anchor_ratios": [0.5, 1.0, 2.0],
            "rpn_pre_nms_top_n": 1000, "rpn_post_nms_top_n": 1000, "rpn_nms_thresh": 0.7,
            "rpn_score_thresh": 0.0, "box_score_thresh": 0.05, "box_nms_thresh": 0.5,
            "box_detections_per_img": 100, "roi_output_size": 7, "roi_sampling_ratio": 2,
            "representation_size": 1024, "fpn_channels": 256, "returned_layers": [1, 2, 3, 4], "bn_eps": 1e-5, "roi_canonical_scale": 224, "roi_canonical_level": 4}
C4_CHANNELS = {"resnet18": 256, "resnet50": 1024}
FPN_LEVELS = ["0", "1", "2", "3", "pool"]   # BackboneWithFPN's feature maps by default, finest first
FPN_ROI_LEVELS = ["0", "1", "2", "3"]       # those MultiScaleRoIAlign pools from


def fpn_maps(cfg):
    """the FPN's feature maps for cfg's returned_layers: '0'..'k-1' (pooled by MultiScaleRoIAlign)
    and the RPN's extra 'pool'"""
    k = len(cfg.get("returned_layers", [1, 2, 3, 4]))
    return [str(i) for i in range(k)], [str(i) for i in range(k)] + ["pool"]


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


def fpn_backbone(arch, in_channels=3, norm_layer=FrozenBatchNorm2d, trainable_layers=5, returned_layers=(1, 2, 3, 4),
                 out_channels=256):
    """torchvision's resnet_fpn_backbone(): the returned layers (default layer1..layer4) into an FPN of
    out_channels (default 256) with LastLevelMaxPool; state_dict names 'body.*',
    'fpn.inner_blocks.<i>.0.*', 'fpn.layer_blocks.<i>.0.*'. norm_layer: FrozenBatchNorm2d as
    resnet_fpn_backbone has it, or nn.BatchNorm2d as fasterrcnn_resnet50_fpn(weights=None,
    weights_backbone=None) has it: the same four tensors per norm (BatchNorm2d adds
    num_batches_tracked), the same inference. With the defaults this is resnet_fpn_backbone()
    itself; otherwise _resnet_fpn_extractor's own steps with out_channels in place of its fixed 256
    (BackboneWithFPN's IntermediateLayerGetter drops the layers after the last returned one)."""
    returned_layers = list(returned_layers)
    if (sorted(set(returned_layers)) != returned_layers or not returned_layers or min(returned_layers) < 1
            or max(returned_layers) > 4):
        raise ValueError(f"returned_layers {returned_layers}: expected increasing layer numbers in 1..4")
    if returned_layers == [1, 2, 3, 4] and out_channels == 256:
        bb = resnet_fpn_backbone(backbone_name=arch, weights=None, norm_layer=norm_layer,
                                 trainable_layers=trainable_layers)
    else:
        r = getattr(torchvision.models, arch)(weights=None, norm_layer=norm_layer)
        layers_to_train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
        if trainable_layers == 5:
            layers_to_train.append("bn1")
        for name, parameter in r.named_parameters():
            if all(not name.startswith(layer) for layer in layers_to_train):
                parameter.requires_grad_(False)
        stage2 = r.inplanes // 8
        bb = BackboneWithFPN(r, {f"layer{k}": str(v) for v, k in enumerate(returned_layers)},
                             [stage2 * 2 ** (i - 1) for i in returned_layers], int(out_channels),
                             extra_blocks=LastLevelMaxPool())
    if in_channels != 3:
        bb.body.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return bb


def set_bn_eps(module, eps):
    """The backbone's norms get eps (torchvision's overwrite_eps does this for its COCO weights)."""
    for m in module.modules():
        if isinstance(m, (FrozenBatchNorm2d, nn.BatchNorm2d)):
            m.eps = eps


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


def fpn_anchor_sizes(sizes, nlevels=len(FPN_LEVELS)):
    """metadata anchor_sizes of a fasterrcnn_fpn -> AnchorGenerator's sizes, one tuple per level
    (nlevels: the returned layers' maps and 'pool')"""
    sizes = [tuple(s) if isinstance(s, (list, tuple)) else (s,) for s in sizes]
    if len(sizes) != nlevels or len({len(s) for s in sizes}) != 1:
        raise ValueError(f"anchor_sizes {sizes}: expected {nlevels} levels with as many sizes each")
    return tuple(sizes)


def anchor_generator(cfg):
    if cfg["arch"] == "fasterrcnn_fpn":
        if "anchors" in cfg:
            raise ValueError("fasterrcnn_fpn: metadata 'anchors' is for fasterrcnn_c4; use anchor_sizes")
        n = len(fpn_maps(cfg)[1])
        return AnchorGenerator(sizes=fpn_anchor_sizes(cfg["anchor_sizes"], n),
                               aspect_ratios=(tuple(cfg["anchor_ratios"]),) * n)
    if "anchors" in cfg:
        return BoxAnchorGenerator(cfg["anchors"])
    return AnchorGenerator(sizes=(tuple(cfg["anchor_sizes"]),), aspect_ratios=(tuple(cfg["anchor_ratios"]),))


def build(meta, norm_layer=None, trainable_layers=5):
    """The eval-mode-ready FasterRCNN described by blob metadata (str -> str). For a
    fasterrcnn_fpn, norm_layer is the backbone's norm (default FrozenBatchNorm2d, as torchvision's
    resnet_fpn_backbone; nn.BatchNorm2d to train the statistics too) and trainable_layers
    resnet_fpn_backbone's (5: all); neither changes inference or the state_dict's tensors."""
    cfg = parse_meta(meta)
    if cfg["arch"] == "fasterrcnn_fpn":
        backbone = fpn_backbone(cfg["backbone"], int(cfg["input_channels"]), norm_layer or FrozenBatchNorm2d,
                                trainable_layers, cfg["returned_layers"], int(cfg["fpn_channels"]))
        levels = fpn_maps(cfg)[0]
    else:
        assert cfg["arch"] == "fasterrcnn_c4", cfg["arch"]
        backbone = C4Backbone(cfg["backbone"], int(cfg["input_channels"]))
        levels = ["0"]
    set_bn_eps(backbone, float(cfg["bn_eps"]))
    pool = MultiScaleRoIAlign(featmap_names=levels, output_size=int(cfg["roi_output_size"]),
                              sampling_ratio=int(cfg["roi_sampling_ratio"]),
                              canonical_scale=int(cfg["roi_canonical_scale"]),
                              canonical_level=int(cfg["roi_canonical_level"]))
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


def metadata(backbone, num_classes, labels=None, model_version="0.0.0", arch="fasterrcnn_c4", **cfg):
    """Blob metadata for build(): cfg keys as in the module docstring, values JSON-encoded."""
    import export
    labels = labels or ["__background__"] + [f"class_{i}" for i in range(1, num_classes)]
    meta = export.blob_metadata(arch, num_classes, labels,
                                input_size=int(cfg.pop("min_size", DEFAULTS["min_size"])),
                                mean=cfg.pop("image_mean", DEFAULTS["image_mean"]),
                                std=cfg.pop("image_std", DEFAULTS["image_std"]),
                                model_version=model_version, backbone=backbone, **cfg)
    # the transform's names for what export.blob_metadata calls input_size, mean and std
    meta["min_size"] = meta.pop("input_size")
    meta["image_mean"] = meta.pop("mean")
    meta["image_std"] = meta.pop("std")
    return meta
