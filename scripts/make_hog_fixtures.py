"""Write synthetic 64x64 HOG golden fixtures computed with OpenCV.

Usage: python3 scripts/make_hog_fixtures.py  (needs numpy and opencv-python-headless==4.12.0.88)
Writes tests/fixtures/hog/hog-<name>.png and tests/fixtures/hog/hog-golden.json.
All images are drawn here; no radiograph is used.
"""
import json
import os

import cv2
import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "hog")


def images():
    y, x = np.mgrid[0:64, 0:64].astype(np.float64)
    yield "ramp", np.clip(x * 3 + y, 0, 255).astype(np.uint8)
    yield "radial", np.clip(255 - np.hypot(x - 30, y - 35) * 6, 0, 255).astype(np.uint8)
    yield "noise", np.random.default_rng(7).integers(0, 256, (64, 64), dtype=np.uint8)
    yield "constant", np.full((64, 64), 128, np.uint8)
    joint = np.full((64, 64), 40, np.uint8)
    cv2.ellipse(joint, (20, 18), (14, 16), 0, 0, 360, 200, -1)
    cv2.ellipse(joint, (44, 18), (14, 16), 0, 0, 360, 210, -1)
    cv2.rectangle(joint, (8, 36), (56, 63), 190, -1)
    cv2.line(joint, (30, 0), (34, 63), 90, 2)
    yield "joint", cv2.GaussianBlur(joint, (5, 5), 1.2)


def main():
    os.makedirs(OUT, exist_ok=True)
    hog = cv2.HOGDescriptor((64, 64), (16, 16), (8, 8), (8, 8), 9)
    golden = {
        "opencv": cv2.__version__,
        "params": {
            "win_sigma": hog.getWinSigma(),
            "gamma_correction": bool(hog.gammaCorrection),
            "l2hys_threshold": hog.L2HysThreshold,
            "signed_gradient": bool(hog.signedGradient),
        },
        "descriptors": {},
    }
    for name, img in images():
        cv2.imwrite(os.path.join(OUT, f"hog-{name}.png"), img)
        d = hog.compute(img, (64, 64), (0, 0)).ravel()
        golden["descriptors"][name] = [float(v) for v in d]
    with open(os.path.join(OUT, "hog-golden.json"), "w") as f:
        json.dump(golden, f)


if __name__ == "__main__":
    main()
