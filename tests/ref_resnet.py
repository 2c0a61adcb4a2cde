"""tests/ref_resnet.py - torchvision ResNet-18 / ResNet-50 references for tests/test_resnet.c.

Random weights (seeded) with randomized BatchNorm running statistics and affine parameters, so
folding BN into the convolutions is really exercised. The blob is written by
mi_ref.write_independent (not our exporter) with torchvision's own state_dict names, including
the I64 num_batches_tracked buffers. The named activations are taken from torchvision's own
modules, in the order of ResNet._forward_impl."""
import json
import os

import torch
import torchvision

import mi_ref

d = mi_ref.out_dir()
for arch, classes, batch, seed in (("resnet18", 26, 2, 0), ("resnet50", 1000, 1, 1)):
    torch.manual_seed(seed)
    m = getattr(torchvision.models, arch)(weights=None, num_classes=classes)
    mi_ref.export.randomize_batchnorm(m, torch.Generator().manual_seed(seed + 100))
    m.eval()
    meta = mi_ref.export.blob_metadata(arch, classes, input_size=224, model_version="test-1")
    mi_ref.write_independent(os.path.join(d, f"{arch}_rand.safetensors"), m.state_dict(), meta)

    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(seed + 200))
    acts = {"input": x}
    h = m.maxpool(m.relu(m.bn1(m.conv1(x))))
    acts["stem"] = h
    for name in ("layer1", "layer2", "layer3", "layer4"):
        h = getattr(m, name)(h)
        acts[name] = h
    h = m.avgpool(h)
    acts["pool"] = h
    acts["fc"] = m.fc(torch.flatten(h, 1))
    assert torch.equal(acts["fc"], m(x)), "stage-by-stage forward must equal torchvision's forward"
    mi_ref.save(f"{arch}_ref.safetensors", acts, {"max_abs_logit": json.dumps(acts["fc"].abs().max().item())})
