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

# Any input size: ResNet-50 on a non-square batch (logits and every stage), and ResNet-18 as a
# C2-C5 backbone (torchvision's own IntermediateLayerGetter, as its detection models use it) on
# another, from a blob without the fc head.
from torchvision.models._utils import IntermediateLayerGetter  # noqa: E402

for arch, seed, shape in (("resnet50", 1, (1, 3, 256, 320)), ("resnet18", 0, (2, 3, 96, 160))):
    torch.manual_seed(seed)
    m = getattr(torchvision.models, arch)(weights=None, num_classes=26 if arch == "resnet18" else 1000)
    mi_ref.export.randomize_batchnorm(m, torch.Generator().manual_seed(seed + 100))
    m.eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed + 300))
    body = IntermediateLayerGetter(m, {"layer1": "C2", "layer2": "C3", "layer3": "C4", "layer4": "C5"})
    acts = {"input": x, "logits": m(x)}
    for k, v in body(x).items():
        acts["features." + k] = v
    mi_ref.save(f"{arch}_{shape[2]}x{shape[3]}_ref.safetensors", acts)
    if arch == "resnet18":  # the same weights without the head: a backbone blob
        sd = {k: v for k, v in m.state_dict().items() if not k.startswith("fc.")}
        meta = mi_ref.export.blob_metadata(arch, 26, input_size=224, model_version="test-1")
        del meta["num_classes"]
        meta.pop("labels", None)
        mi_ref.write_independent(os.path.join(d, "resnet18_backbone.safetensors"), sd, meta)

# A blob that says resnet50 but holds the first ResNet-18 tensors: the loader must name the first
# tensor whose shape differs (layer1.0.conv1 is 3x3 in a BasicBlock, 1x1 in a Bottleneck).
torch.manual_seed(0)
m = torchvision.models.resnet18(weights=None)
sd = {k: v for k, v in m.state_dict().items()
      if k.startswith(("conv1.", "bn1.")) or k == "layer1.0.conv1.weight"}
mi_ref.write_independent(os.path.join(d, "resnet50_claims_18.safetensors"), sd,
                         mi_ref.export.blob_metadata("resnet50", 1000, model_version="test-1"))
