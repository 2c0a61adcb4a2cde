/* nn/rcnn.h - Faster R-CNN as torchvision 0.14's FasterRCNN runs it in eval mode
 * (models/detection/: GeneralizedRCNNTransform, AnchorGenerator, RPNHead, RegionProposalNetwork,
 * MultiScaleRoIAlign, TwoMLPHead, FastRCNNPredictor, RoIHeads), on a ResNet-18/50 "C4" backbone
 * (conv1..layer3, stride 16, one feature map). tools/rcnn_ref.py builds the same model from the
 * same blob metadata; its docstring lists the keys. Internal: integrators use include/medinfer.h
 * (a session's "detections" output, read with mi_session_detections). */
#ifndef MI_NN_RCNN_H
#define MI_NN_RCNN_H

#include "nn/ctx.h"
#include "weights/safetensors.h"

typedef struct mi_rcnn mi_rcnn;

#define MI_RCNN_MAX_ANCHORS 64
#define MI_RCNN_MAX_CHANNELS 4

/* What the blob's metadata configures (torchvision's defaults where a key is absent). */
typedef struct {
    int    in_c;                                   /* conv1's input channels, given by the caller */
    int    min_size, max_size;                     /* GeneralizedRCNNTransform */
    float  mean[MI_RCNN_MAX_CHANNELS], std[MI_RCNN_MAX_CHANNELS];
    float  cell[MI_RCNN_MAX_ANCHORS][4];           /* anchors at one position, centred on 0 */
    int    ncell;
    int    pre_nms, post_nms;                      /* RegionProposalNetwork (eval) */
    float  rpn_score;
    double rpn_nms, box_nms;                       /* double: torchvision's NMS compares with a double */
    int    roi_out, roi_sampling;                  /* MultiScaleRoIAlign */
    float  box_score;                              /* RoIHeads */
    int    dets;
} mi_rcnn_config;

/* Reads and checks every configuration key; errors name the blob, the key and what is wrong. */
mi_status mi_rcnn_config_from_blob(mi_rcnn_config *c, const mi_weights *w, int in_channels);

/* Reads the configuration from the blob's metadata and every tensor by torchvision's state_dict
 * names (backbone.body.*, rpn.head.*, roi_heads.box_head.*, roi_heads.box_predictor.*), checking
 * presence and shape. Convolutions are packed for an image of in_h x in_w before the transform's
 * resize. */
mi_status mi_rcnn_load(mi_rcnn **out, const mi_weights *w, int64_t in_h, int64_t in_w);
void      mi_rcnn_free(mi_rcnn *r);
int       mi_rcnn_num_classes(const mi_rcnn *r);     /* including the background class 0 */
int       mi_rcnn_in_channels(const mi_rcnn *r);
int       mi_rcnn_max_detections(const mi_rcnn *r);  /* box_detections_per_img */

/* FasterRCNN.forward on a batch x (N, C, H, W) of images of one size, in eval mode. Writes
 * "detections" (N, D, 6): per image up to D = box_detections_per_img rows (x1, y1, x2, y2,
 * score, label) in the pixels of x, best first in torchvision's order, then zero rows; and
 * "detections.count" (N, 1). Marks (nn_mark) the stages torchvision has: "transform" (the
 * normalized, resized, zero-padded batch), "features" (C4), "rpn.objectness", "rpn.deltas",
 * "proposals" (N, post_nms_top_n, 4) with "proposals.count" (N, 1), "box_features" (after fc7),
 * "class_logits", "box_regression" (rows: the proposals of image 0, then of image 1, ...). */
mi_tensor mi_rcnn_forward(const mi_rcnn *r, nn_ctx *c, const mi_tensor *x);

#endif
