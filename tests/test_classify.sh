#!/bin/sh
# tests/test_classify.sh - `medinfer classify` end to end against torchvision (tests/classify_e2e.py):
# logits on a .npy and on an image through the blob's preprocessing, thread-count determinism,
# provenance fields, and bad inputs that fail clearly without losing the good results.
exec "${PYTHON:-/usr/bin/python3}" "$(dirname "$0")/classify_e2e.py"
