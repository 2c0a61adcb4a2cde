#!/bin/sh
# no-sanitize: the C suites it reruns already run under the sanitizers; the scalar ResNet-50 under ASan only costs minutes
# tests/test_isa.sh - the whole ResNet, Faster R-CNN, V-Net and lesion segmentation (depth estimator,
# depth-guided U-Net; the small configurations, not the 192 defaults) parity suites again with the ISA capped
# (MI_ISA), so the AVX2 kernels, the portable C GEMM kernels (ops/conv_portable.c) and the scalar
# references are proven on full networks, not only the widest ISA this CPU has. Each run must match torchvision and print which ISA it used.
dir=$(dirname "${MI_BIN:-build/medinfer}")/tests
[ -x "$dir/test_resnet" ] || { echo "no $dir/test_resnet"; exit 1; }
status=0
for isa in avx2 portable ref; do
    out=$(MI_ISA=$isa CK_FORK=yes "$dir/test_resnet" 2>&1)
    echo "$out" | grep -E "isa|Checks"
    echo "$out" | grep -q "^100%: Checks" || { echo "MI_ISA=$isa: parity failed"; echo "$out"; status=1; }
    want=$isa
    # a CPU without AVX2 runs the portable kernels under MI_ISA=avx2
    grep -q avx2 /proc/cpuinfo 2>/dev/null || [ $isa != avx2 ] || want=portable
    echo "$out" | grep "layer4" | grep -q "isa $want" || { echo "MI_ISA=$isa did not select $want"; status=1; }
    out=$(MI_ISA=$isa CK_FORK=yes "$dir/test_rcnn" 2>&1)
    echo "$out" | grep -E "detections|Checks"
    echo "$out" | grep -q "^100%: Checks" || { echo "MI_ISA=$isa: detector parity failed"; echo "$out"; status=1; }
    echo "$out" | grep "features" | grep -q "isa $want" || { echo "MI_ISA=$isa did not select $want (detector)"; status=1; }
    out=$(MI_ISA=$isa CK_FORK=yes "$dir/test_vnet" 2>&1)
    echo "$out" | grep -E "seg|Checks"
    echo "$out" | grep -q "^100%: Checks" || { echo "MI_ISA=$isa: V-Net parity failed"; echo "$out"; status=1; }
    echo "$out" | grep "vnet3d .*dec.1" | grep -q "isa $want" || { echo "MI_ISA=$isa did not select $want (V-Net)"; status=1; }
    out=$(MI_ISA=$isa CK_FORK=yes CK_RUN_CASE=lesionseg "$dir/test_lesionseg" 2>&1)
    echo "$out" | grep -E "depth_b +depth|seg_b +seg|Checks"
    echo "$out" | grep -q "^100%: Checks" || { echo "MI_ISA=$isa: lesion segmentation parity failed"; echo "$out"; status=1; }
    echo "$out" | grep "depth_b .*local.encdec" | grep -q "isa $want" || { echo "MI_ISA=$isa did not select $want (depthnet)"; status=1; }
done
exit $status
