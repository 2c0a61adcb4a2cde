/* nn/rcnn.h - Faster R-CNN as torchvision 0.14's FasterRCNN runs it in eval mode
 * (models/detection/: GeneralizedRCNNTransform, AnchorGenerator, RPNHead, RegionProposalNetwork,
 * MultiScaleRoIAlign, TwoMLPHead, FastRCNNPredictor, RoIHeads), on one of two ResNet-18/50
 * backbones, chosen by metadata 'arch':
 *   fasterrcnn_c4   conv1..layer3 (stride 16), one feature map;
 *   fasterrcnn_fpn  BackboneWithFPN as resnet_fpn_backbone() builds it (fasterrcnn_resnet50_fpn
 *                   with backbone resnet50): by default layer1..layer4 into a FeaturePyramidNetwork
 *                   (backbone.fpn.inner_blocks.<i>.0, backbone.fpn.layer_blocks.<i>.0, top-down
 *                   nearest upsampling) of 256 channels plus LastLevelMaxPool, maps '0' '1' '2'
 *                   '3' 'pool' (strides 4, 8, 16, 32, 64); the RPN on all five with per-level
 *                   anchors and per-level top-k, RoIs pooled from '0'..'3' by torchvision's
 *                   LevelMapper. Metadata 'returned_layers' (e.g. [1, 2, 3]: maps '0' '1' '2'
 *                   'pool', no layer4 in the model) and 'fpn_channels' change the pyramid as
 *                   torchvision's returned_layers and out_channels do.
 * tools/rcnn_ref.py builds the same model from the same blob metadata; its docstring lists the
 * keys. Internal: integrators use include/medinfer.h (a session's "detections" output, read with
 * mi_session_detections). */
#ifndef MI_NN_RCNN_H
#define MI_NN_RCNN_H

#include "nn/ctx.h"
#include "weights/safetensors.h"

typedef struct mi_rcnn mi_rcnn;

#define MI_RCNN_MAX_ANCHORS 64
#define MI_RCNN_MAX_CHANNELS 4
#define MI_RCNN_MAX_LEVELS 5      /* anchor levels: 1 for C4, 5 for the FPN */

/* What the blob's metadata configures (torchvision's defaults where a key is absent). */
typedef struct {
    int    fpn;                                    /* arch: 0 fasterrcnn_c4, 1 fasterrcnn_fpn */
    int    in_c;                                   /* conv1's input channels, given by the caller */
    int    min_size, max_size;                     /* GeneralizedRCNNTransform */
    float  mean[MI_RCNN_MAX_CHANNELS], std[MI_RCNN_MAX_CHANNELS];
    double bn_eps;                                 /* the backbone's BatchNorm eps ('bn_eps') */
    /* anchors at one position of each level, centred on 0: ncell per level on nlevels levels
       (C4: 1; FPN: 5, one per feature map '0' .. 'pool') */
    float  cell[MI_RCNN_MAX_LEVELS][MI_RCNN_MAX_ANCHORS][4];
    int    ncell, nlevels;                         /* FPN: nlevels = fpn_maps + 1 ('pool') */
    int    fpn_maps;                               /* FPN: maps from the returned layers, 1..4 */
    int    returned[4];                            /* FPN: their ResNet layers, increasing in 1..4 */
    int    fpn_channels;                           /* FPN: out_channels ('fpn_channels', 256) */
    int    pre_nms, post_nms;                      /* RegionProposalNetwork (eval); pre_nms per level */
    float  rpn_score;
    double rpn_nms, box_nms;                       /* double: torchvision's NMS compares with a double */
    int    roi_out, roi_sampling;                  /* MultiScaleRoIAlign */
    int    roi_scale0, roi_level0;                 /* its LevelMapper's canonical scale and level (FPN) */
    float  box_score;                              /* RoIHeads */
    int    dets;
} mi_rcnn_config;

/* Reads and checks every configuration key; errors name the blob, the key and what is wrong.
 * 'arch' fasterrcnn_fpn selects the FPN's anchors ('anchor_sizes' per level; 'anchors' is
 * refused), anything else the C4's. */
mi_status mi_rcnn_config_from_blob(mi_rcnn_config *c, const mi_weights *w, int in_channels);

/* GeneralizedRCNNTransform's resized size of an h x w image: the scale min(min_size / shorter,
 * max_size / longer) computed in float32 as torch computes it, the sizes floored as
 * F.interpolate's recompute_scale_factor path does. */
void mi_rcnn_resized_size(int min_size, int max_size, int64_t h, int64_t w, int64_t *oh, int64_t *ow);

/* Reads the configuration from the blob's metadata and every tensor by torchvision's state_dict
 * names (backbone.body.*, for the FPN backbone.fpn.*, rpn.head.*, roi_heads.box_head.*,
 * roi_heads.box_predictor.*), checking presence and shape. Convolutions are packed for an image
 * of in_h x in_w before the transform's resize. */
mi_status mi_rcnn_load(mi_rcnn **out, const mi_weights *w, int64_t in_h, int64_t in_w);
void      mi_rcnn_free(mi_rcnn *r);
int       mi_rcnn_num_classes(const mi_rcnn *r);     /* including the background class 0 */
int       mi_rcnn_in_channels(const mi_rcnn *r);
int       mi_rcnn_max_detections(const mi_rcnn *r);  /* box_detections_per_img */

/* FasterRCNN.forward on a batch x (N, C, H, W) of images of one size, in eval mode. Writes
 * "detections" (N, D, 6): per image up to D = box_detections_per_img rows (x1, y1, x2, y2,
 * score, label) in the pixels of x, best first in torchvision's order, then zero rows; and
 * "detections.count" (N, 1), and "detections.probs" (N, D, num_classes): per detection the softmax
 * row (background first) of the box head for the proposal it was decoded from, as
 * postprocess_detections computes it before flattening it per class. Marks (nn_mark) the stages torchvision has: "transform" (the
 * normalized, resized, zero-padded batch); the backbone's ("features.C2".."features.C5" from
 * the ResNet; C4: "features", its one map; FPN: "fpn.0" "fpn.1" "fpn.2" "fpn.3" "fpn.pool");
 * the RPN head's outputs (C4: "rpn.objectness", "rpn.deltas"; FPN: "rpn.objectness.<map>",
 * "rpn.deltas.<map>" per map, e.g. "rpn.deltas.pool"); "proposals" (N, post_nms_top_n, 4) with
 * "proposals.count" (N, 1); "box_roi_pool" (rows, C, R, R) and "box_roi_pool.level" (rows: the
 * LevelMapper's index into '0'..'3', 0 for C4); "box_features" (after fc7), "class_logits",
 * "box_regression" (rows: the proposals of image 0, then of image 1, ...). */
mi_tensor mi_rcnn_forward(const mi_rcnn *r, nn_ctx *c, const mi_tensor *x);

#endif
