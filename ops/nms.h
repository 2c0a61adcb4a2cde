/* ops/nms.h - non-maximum suppression and the orderings around it, with torchvision 0.14's exact
 * ordering and tie-breaking (torchvision/csrc/ops/cpu/nms_kernel.cpp and ops/boxes.py), so that a
 * detector returns the same boxes in the same order as torchvision's. */
#ifndef MI_NMS_H
#define MI_NMS_H

#include <stddef.h>
#include <stdint.h>

/* ops.nms: boxes visited in descending score order (a stable sort: equal scores keep index
 * order; NaN scores first, as torch sorts), box j suppressed by a kept box i when IoU(i, j) >
 * iou_thresh, IoU computed in float in the kernel's order (inter / (area_i + area_j - inter)).
 * Writes the kept indices in that order to keep (capacity n) and returns their count. scratch: at
 * least mi_nms_scratch_bytes(n). The threshold is a double because torchvision compares the
 * float IoU with a double: 0.7 and 0.7f decide differently for an IoU between them. */
int64_t mi_nms(int64_t *keep, const float (*boxes)[4], const float *scores, int64_t n, double iou_thresh,
               void *scratch);
size_t  mi_nms_scratch_bytes(int64_t n);

/* ops.batched_nms: NMS independently per category idx[i], results merged in descending score
 * order. torchvision chooses its implementation by size and the two can differ in the last bit of
 * an IoU; both are here and chosen the same way: more than 4000 box coordinates (n > 1000) ->
 * per-category NMS ("vanilla"), else the coordinate trick (boxes offset by idx * (max coordinate
 * + 1), one NMS). scratch: at least mi_batched_nms_scratch_bytes(n). The vanilla path ends with an
 * unstable sort in torch (scores[keep].sort(descending=True)), so among kept boxes of equal score
 * in different categories torch's order is an accident of libstdc++'s introsort; ours keeps index
 * order there. Same kept set always; same order whenever the kept scores are distinct. */
int64_t mi_batched_nms(int64_t *keep, const float (*boxes)[4], const float *scores, const int64_t *idx,
                       int64_t n, double iou_thresh, void *scratch);
size_t  mi_batched_nms_scratch_bytes(int64_t n);

/* torch.topk(v, k) along one row, largest first: the indices of the k largest values in
 * descending order (k <= n; NaN counts as largest, as in torch), equal values in ascending index
 * order. That tie rule is ours: torch 1.13's CPU topk uses std::partial_sort or std::nth_element
 * + std::sort, which are not stable, and returns equal values in no particular index order (so
 * with ties at the k-th value it may also pick different indices). Same values always; same
 * indices whenever the values are distinct. */
void    mi_topk(int64_t *idx, const float *v, int64_t n, int64_t k, void *scratch);
size_t  mi_topk_scratch_bytes(int64_t n);

#endif
