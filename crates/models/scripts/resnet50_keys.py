#!/usr/bin/env python3
"""Write torchvision's `resnet50()` state-dict keys and shapes, one `name shape`
per line, to `tests/data/resnet50_keys.txt` (or the path given as argument).

With torchvision installed the list comes from the model itself:

    torchvision.models.resnet50().state_dict()

Without it (torch is too large to install where the file was generated), the
same list is produced by a pure-Python mirror of torchvision's
`torchvision/models/resnet.py` module tree: `conv1`, `bn1`, `layer1..layer4`
of `Bottleneck` blocks ([3, 4, 6, 3], expansion 4; `conv1`/`bn1`, `conv2`/
`bn2`, `conv3`/`bn3`, and `downsample.0` (1x1 conv) / `downsample.1` (batch
norm) in the first block of each stage), then `fc`. Each `BatchNorm2d`
contributes `weight`, `bias`, `running_mean`, `running_var` and the 0-d
`num_batches_tracked`. Both paths emit the keys in `state_dict()` order.
"""

import math
import sys
from pathlib import Path


def from_torchvision():
    import torchvision  # noqa: PLC0415

    sd = torchvision.models.resnet50().state_dict()
    return [(k, list(v.shape)) for k, v in sd.items()]


def mirror():
    keys = []

    def conv(name, cout, cin, k):
        keys.append((f"{name}.weight", [cout, cin, k, k]))

    def bn(name, c):
        for p in ("weight", "bias", "running_mean", "running_var"):
            keys.append((f"{name}.{p}", [c]))
        keys.append((f"{name}.num_batches_tracked", []))

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    inplanes, expansion = 64, 4
    for stage, (planes, blocks) in enumerate(zip([64, 128, 256, 512], [3, 4, 6, 3]), 1):
        stride = 1 if stage == 1 else 2
        for j in range(blocks):
            p = f"layer{stage}.{j}"
            conv(f"{p}.conv1", planes, inplanes, 1)
            bn(f"{p}.bn1", planes)
            conv(f"{p}.conv2", planes, planes, 3)
            bn(f"{p}.bn2", planes)
            conv(f"{p}.conv3", planes * expansion, planes, 1)
            bn(f"{p}.bn3", planes * expansion)
            if j == 0 and (stride != 1 or inplanes != planes * expansion):
                conv(f"{p}.downsample.0", planes * expansion, inplanes, 1)
                bn(f"{p}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    keys.append(("fc.weight", [1000, 2048]))
    keys.append(("fc.bias", [1000]))
    return keys


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent.parent / "tests/data/resnet50_keys.txt"
    try:
        keys = from_torchvision()
        source = "torchvision"
    except ImportError:
        keys = mirror()
        source = "mirror of torchvision/models/resnet.py"
    assert len(keys) == 320, len(keys)
    params = sum(
        math.prod(s)
        for k, s in keys
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert params == 25_557_032, params
    out.write_text("".join(f"{k} [{','.join(map(str, s))}]\n" for k, s in keys))
    print(f"wrote {len(keys)} keys ({params} parameters) from {source} to {out}")


if __name__ == "__main__":
    main()
