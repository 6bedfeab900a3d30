#!/usr/bin/env python3
"""Compare the Rust preprocessing with cv2 on real radiographs of the dataset (not run in CI).

Runs `kneescreen preprocess IN OUT.png` on N images of a dataset folder and compares each output
with the cv2 reference pipeline (kneeprep.preprocess). Outputs are written to
a temporary folder and deleted: no image derived from the dataset is kept.

    cargo build --release
    .venv/bin/python scripts/check_preprocess_dataset.py            # 50 images of kneeKL224/val
    .venv/bin/python scripts/check_preprocess_dataset.py -n 0       # all of them

Exit status 0 when every output is identical to cv2's, 1 otherwise.
"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kneeprep import preprocess  # noqa: E402  (the cv2 reference)

ROOT = Path(__file__).resolve().parent.parent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", type=Path, default=ROOT / "target" / "release" / "kneescreen")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "kneeKL224" / "val")
    parser.add_argument("-n", type=int, default=50, help="number of images, spread over the folder (0: all)")
    args = parser.parse_args()

    files = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    if not files:
        sys.exit(f"no images under {args.data}")
    if 0 < args.n < len(files):
        step = len(files) / args.n
        files = [files[int(i * step)] for i in range(args.n)]

    mismatched_images = mismatched_pixels = max_diff = failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.png"
        for path in files:
            run = subprocess.run([str(args.bin), "preprocess", str(path), str(out)], capture_output=True, text=True)
            if run.returncode != 0 or not out.exists():
                failures += 1
                print(f"FAILED {path.name}: {run.stderr.strip()}")
                continue
            got = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
            out.unlink()
            want = preprocess(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
            if got is None or got.shape != want.shape or got.dtype != np.uint8:
                failures += 1
                print(f"FAILED {path.name}: output is not a {want.shape[1]}x{want.shape[0]} 8-bit grey PNG")
                continue
            diff = np.abs(got.astype(np.int16) - want.astype(np.int16))
            if diff.any():
                mismatched_images += 1
                mismatched_pixels += int(np.count_nonzero(diff))
                max_diff = max(max_diff, int(diff.max()))
                print(f"differs {path.name}: {np.count_nonzero(diff)} pixels, max {diff.max()}")

    print(
        f"{len(files)} images: {len(files) - mismatched_images - failures} identical, "
        f"{mismatched_images} differing ({mismatched_pixels} pixels, max |diff| {max_diff}), {failures} failed"
    )
    sys.exit(0 if mismatched_images == 0 and failures == 0 else 1)


if __name__ == "__main__":
    main()
