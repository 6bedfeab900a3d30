"""Write the synthetic golden fixtures for src/cam.rs and src/metrics.rs.

Everything here is drawn from a seeded random generator or drawn geometrically; no X-ray data is
involved. References come from independent implementations: numpy's analytic Grad-CAM formula,
OpenCV's bilinear resize, scipy's connected-component labelling and scikit-learn's metrics.

    .venv/bin/python scripts/make_cam_metrics_fixtures.py
"""

import json
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    mean_absolute_error,
    precision_recall_fscore_support,
    recall_score,
)

ROOT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
CAM = ROOT / "cam"
METRICS = ROOT / "metrics"
F32 = np.float32
GRADES = list(range(5))


def floats(a):
    """float32 values as JSON numbers that parse back to exactly the same float32."""
    return np.asarray(a, dtype=F32).astype(np.float64).ravel().tolist()


def write_json(path, obj):
    path.write_text(json.dumps(obj, separators=(",", ":")) + "\n")


def write_rgb_png(path, rgb):
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def head_case(rng):
    """A random head and feature map, with numpy's analytic Grad-CAM for every class.

    The dimensions are smaller than the model's (the maths is dimension-generic) to keep the
    fixture small."""
    height, width, inputs, hidden, classes = 7, 7, 96, 32, 5
    # Post-ReLU features are non-negative, with many exact zeros as in the real network.
    a = np.maximum(rng.normal(0.3, 1.0, (height, width, inputs)), 0).astype(F32)
    w1 = (rng.normal(0, 1, (inputs, hidden)) / np.sqrt(inputs)).astype(F32)
    b1 = rng.normal(0, 0.3, hidden).astype(F32)
    w2 = (rng.normal(0, 1, (hidden, classes)) / np.sqrt(hidden)).astype(F32)
    b2 = rng.normal(0, 0.1, classes).astype(F32)

    a64, w1_64, w2_64 = a.astype(np.float64), w1.astype(np.float64), w2.astype(np.float64)
    g = a64.mean(axis=(0, 1))
    pre = g @ w1_64 + b1
    mask = (pre > 0).astype(np.float64)
    logits = np.maximum(pre, 0) @ w2_64 + b2
    assert 0 < mask.sum() < hidden, "want both active and inactive hidden units"
    assert np.abs(pre).min() > 1e-3, "a hidden unit sits on the ReLU kink"

    gradients, alphas, cams = [], [], []
    for c in range(classes):
        grad = w1_64 @ (mask * w2_64[:, c])
        alpha = grad / (height * width)
        cam = np.maximum(np.einsum("ijk,k->ij", a64, alpha), 0)
        gradients.append(grad.tolist())
        alphas.append(alpha.tolist())
        cams.append(cam.ravel().tolist())
    assert any(0 < (np.array(c) > 0).sum() < height * width for c in cams), "want clipped cells"

    return {
        "height": height,
        "width": width,
        "inputs": inputs,
        "hidden": hidden,
        "classes": classes,
        "features": floats(a),
        "w1": floats(w1),
        "b1": floats(b1),
        "w2": floats(w2),
        "b2": floats(b2),
        "pooled": g.tolist(),
        "logits": logits.tolist(),
        "gradients": gradients,
        "channel_weights": alphas,
        "cams": cams,
    }


def upsampled(grid, width, height):
    """OpenCV's half-pixel-centre bilinear resize, normalised by the grid maximum."""
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_LINEAR) / grid.max()


def upsample_cases(rng):
    cases = []
    # 7x7 like the CAM grid: integer upscale, non-integer non-square upscale, and a downscale
    # (not by exactly 2, where OpenCV switches to area averaging). Then a non-square grid.
    grid7 = rng.random((7, 7)).astype(F32)
    grid53 = rng.random((3, 5)).astype(F32)
    for grid, (w, h) in [(grid7, (56, 56)), (grid7, (45, 30)), (grid7, (5, 3)), (grid53, (17, 11))]:
        cases.append(
            {
                "grid_width": grid.shape[1],
                "grid_height": grid.shape[0],
                "grid": floats(grid),
                "width": w,
                "height": h,
                "values": upsampled(grid, w, h).astype(np.float64).ravel().tolist(),
            }
        )
    return cases


def jet(v):
    """The colormap of cam.rs, step for step in float32 so the bytes agree exactly."""
    v = np.clip(v, F32(0), F32(1)).astype(F32)
    channels = [np.clip(F32(1.5) - np.abs(F32(4) * v - F32(c)), F32(0), F32(1)) * F32(255) for c in (3, 2, 1)]
    return np.stack([np.floor(ch + F32(0.5)) for ch in channels], axis=-1).astype(F32)


def overlay_case(rng):
    """Synthetic 'X-ray' (gradient with a bright disc), a heatmap, the blend and the ROI."""
    height, width, alpha = 40, 48, F32(0.4)
    yy, xx = np.mgrid[0:height, 0:width]
    disc = ((xx - 30) ** 2 + (yy - 18) ** 2 < 100) * 120
    xray = np.clip(20 + 3 * xx + disc, 0, 255).astype(np.uint8)

    grid = np.zeros((7, 7), F32)
    grid[2:4, 4:6] = [[0.8, 1.0], [0.6, 0.9]]  # main hot spot
    grid[5, 1] = 0.7  # a smaller separate one
    grid += F32(0.05) * rng.random((7, 7)).astype(F32)
    heat = upsampled(grid, width, height).astype(F32)

    blended = (F32(1) - alpha) * xray.astype(F32)[..., None] + alpha * jet(heat)
    over = np.floor(blended + F32(0.5)).astype(np.uint8)

    mask = heat >= F32(0.5)
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    outlined = over.copy()
    outlined[mask & ~interior] = (255, 0, 255)

    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    sizes = ndimage.sum(mask, labels, range(1, count + 1))
    assert count >= 2 and sorted(sizes)[-1] > sorted(sizes)[-2], "want one clearly largest region"
    largest = labels == 1 + int(np.argmax(sizes))
    ys, xs = np.nonzero(largest)

    cv2.imwrite(str(CAM / "xray.png"), xray)
    write_rgb_png(CAM / "overlay.png", over)
    write_rgb_png(CAM / "overlay_roi.png", outlined)
    return {
        "width": width,
        "height": height,
        "alpha": float(alpha),
        "threshold": 0.5,
        "heat": floats(heat),
        "roi": {
            "x": int(xs.min()),
            "y": int(ys.min()),
            "width": int(xs.max() - xs.min() + 1),
            "height": int(ys.max() - ys.min() + 1),
            "area_fraction": float(largest.sum() / largest.size),
        },
    }


def metrics_case(name, truth, pred):
    truth, pred = np.asarray(truth), np.asarray(pred)
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, pred, labels=GRADES, zero_division=0
    )
    tb, pb = (truth >= 2).astype(int), (pred >= 2).astype(int)
    # labels=GRADES everywhere: kappa weights must be grade distances even if a grade is absent.
    return {
        "name": name,
        "truth": truth.tolist(),
        "pred": pred.tolist(),
        "accuracy": accuracy_score(truth, pred),
        "qwk": cohen_kappa_score(truth, pred, labels=GRADES, weights="quadratic", replace_undefined_by=0.0),
        "mae": mean_absolute_error(truth, pred),
        "binary_accuracy": accuracy_score(tb, pb),
        "sensitivity": recall_score(tb, pb, labels=[0, 1], pos_label=1, zero_division=0),
        "specificity": recall_score(tb, pb, labels=[0, 1], pos_label=0, zero_division=0),
        "confusion": confusion_matrix(truth, pred, labels=GRADES).tolist(),
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": np.asarray(support, dtype=int).tolist(),
    }


def near(rng, truth, spread):
    """Predictions that are mostly close to the truth."""
    return np.clip(truth + np.round(rng.normal(0, spread, len(truth))).astype(int), 0, 4)


def metrics_cases(rng):
    uniform = rng.integers(0, 5, 200)
    skewed = rng.choice(5, 300, p=[0.55, 0.2, 0.12, 0.09, 0.04])
    no_three = rng.choice([0, 1, 2, 4], 120)
    no_three_pred = near(rng, no_three, 0.6)
    no_three_pred[no_three_pred == 3] = 4
    never_predicts_four = near(rng, skewed[:150], 0.8)
    never_predicts_four[never_predicts_four == 4] = 3
    return [
        metrics_case("uniform random", uniform, rng.integers(0, 5, 200)),
        metrics_case("uniform, close predictions", uniform, near(rng, uniform, 0.7)),
        metrics_case("skewed towards KL0", skewed, near(rng, skewed, 0.9)),
        metrics_case("grade 3 never appears", no_three, no_three_pred),
        metrics_case("grade 4 never predicted", skewed[:150], never_predicts_four),
        metrics_case("perfect", skewed[:50], skewed[:50]),
        metrics_case("single grade, undefined kappa", [2] * 10, [2] * 10),
        metrics_case("one image", [3], [1]),
    ]


def main():
    CAM.mkdir(parents=True, exist_ok=True)
    METRICS.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20240611)
    write_json(CAM / "head.json", head_case(rng))
    write_json(CAM / "upsample.json", upsample_cases(rng))
    write_json(CAM / "overlay.json", overlay_case(rng))
    write_json(METRICS / "cases.json", metrics_cases(rng))


if __name__ == "__main__":
    main()
