"""Pillow's decode + RandomResizedCrop(224) + flip, and resize 256 + center-crop 224, on
the JPEGs `cargo bench -p bigbatch-data --bench data` writes, one thread, in images/s.

    python3 crates/data/benches/pil_decode.py [DIR]   # default $TMPDIR/bigbatch-bench-jpegs

The crop geometry is torchvision's `RandomResizedCrop.get_params` (scale (0.08, 1),
ratio (3/4, 4/3), 10 attempts, center fallback), written out so torchvision is not
needed; the resize is PIL's bilinear with antialiasing, as torchvision uses on PIL images.
"""
import math
import os
import random
import sys
import tempfile
import time

from PIL import Image


def rrc_box(width, height, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = rng.randint(0, height - h)
            j = rng.randint(0, width - w)
            return j, i, w, h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def train(path, rng):
    with Image.open(path) as img:
        img = img.convert("RGB")
        j, i, w, h = rrc_box(img.width, img.height, rng)
        out = img.resize((224, 224), Image.BILINEAR, box=(j, i, j + w, i + h))
        if rng.random() < 0.5:
            out = out.transpose(Image.FLIP_LEFT_RIGHT)
        return out


def evaluate(path, _rng):
    with Image.open(path) as img:
        img = img.convert("RGB")
        w, h = img.size
        if w <= h:
            size = (256, int(256 * h / w))
        else:
            size = (int(256 * w / h), 256)
        img = img.resize(size, Image.BILINEAR)
        left = int(round((size[0] - 224) / 2.0))
        top = int(round((size[1] - 224) / 2.0))
        return img.crop((left, top, left + 224, top + 224))


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else os.path.join(tempfile.gettempdir(), "bigbatch-bench-jpegs")
    paths = sorted(os.path.join(directory, f) for f in os.listdir(directory) if f.endswith(".jpg"))
    rng = random.Random(0)
    for name, fn in [("decode_rrc224_flip", train), ("decode_resize256_crop224", evaluate)]:
        for _ in range(2):  # warm-up
            for p in paths:
                fn(p, rng)
        rounds, start = 0, time.perf_counter()
        while time.perf_counter() - start < 3.0:
            for p in paths:
                fn(p, rng)
            rounds += 1
        elapsed = time.perf_counter() - start
        print(f"pillow {Image.__version__} {name}: {rounds * len(paths) / elapsed:.0f} images/s (1 thread)")


if __name__ == "__main__":
    main()
