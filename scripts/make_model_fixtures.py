"""Reference outputs of the shipped models for synthetic images, computed with onnxruntime on the
OpenCV preprocessing: the Rust side (tract, x86 and aarch64 under qemu) is tested against them.

    .venv/bin/python scripts/make_model_fixtures.py        # rerun whenever models/ changes

Also writes a tiny per-channel QDQ model with distinct scales per channel and its expected output,
which proves that tract reads per-axis quantization parameters.
Writes tests/fixtures/model/: synth_*.png, expected.json, per_channel.onnx, per_channel.json.
"""
import hashlib
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import kneeprep  # noqa: E402

ROOT = HERE.parent
OUT = ROOT / "tests/fixtures/model"


def knee_like(rng, size=256):
    """Two bright bone ends with a dark joint gap between them, blurred, with noise."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    gap_y = 0.5 + rng.uniform(-0.05, 0.05)
    gap = rng.uniform(0.01, 0.08)
    tilt = rng.uniform(-0.1, 0.1)
    width = rng.uniform(0.25, 0.4)
    edge = gap_y + tilt * (x - 0.5)
    femur = (y < edge - gap / 2) & (np.abs(x - 0.5) < width + 0.15 * (edge - y))
    tibia = (y > edge + gap / 2) & (np.abs(x - 0.5) < width + 0.1 * (y - edge))
    img = 50 + 130 * femur + 120 * tibia + rng.normal(0, 12, (size, size))
    spurs = rng.integers(0, 4)
    for _ in range(spurs):  # osteophyte-like bumps at the joint margins
        cx = 0.5 + rng.choice([-1, 1]) * (width + rng.uniform(0, 0.05))
        img += 90 * np.exp(-(((x - cx) / 0.02) ** 2 + ((y - edge) / 0.03) ** 2))
    img = cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (0, 0), rng.uniform(1, 3))
    return img


def model_outputs(session, gray, mirrored=False):
    pre = kneeprep.preprocess(gray)
    pre = pre[:, ::-1] if mirrored else pre
    x = np.repeat((pre.astype(np.float32) / 255)[None, ..., None], 3, axis=-1)
    features, logits = session.run(["features", "logits"], {"image": x})
    return features[0], logits[0]


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def model_fixtures(card):
    sessions = {k: ort.InferenceSession(str(ROOT / "models" / m["file"]), providers=["CPUExecutionProvider"])
                for k, m in card["models"].items()}
    rng = np.random.default_rng(7)
    kept, expected = 0, {}
    while kept < 6:
        gray = knee_like(rng)
        outs = {k: model_outputs(s, gray) for k, s in sessions.items()}
        probs = {k: softmax(o[1] / card["temperature"]) for k, o in outs.items()}
        # What the appliance reports with the card's flip_average: mean logits of image and mirror.
        mean_logits = {k: (outs[k][1] + model_outputs(s, gray, mirrored=True)[1]) / 2 for k, s in sessions.items()}
        flip = {k: softmax(z / card["temperature"]) for k, z in mean_logits.items()}
        margins = [np.sort(p)[-1] - np.sort(p)[-2] for p in [*probs.values(), *flip.values()]]
        if len({int(p.argmax()) for p in probs.values()}) != 1 or len({int(p.argmax()) for p in flip.values()}) != 1 \
                or min(margins) < 0.15:
            continue  # near a decision boundary: a few quantisation steps could flip it
        name = f"synth_{kept}.png"
        cv2.imwrite(str(OUT / name), gray)
        expected[name] = {k: dict(grade=int(probs[k].argmax()), probabilities=probs[k].tolist(),
                                  logits=outs[k][1].tolist(),
                                  features_mean=float(outs[k][0].mean()),
                                  pooled_head=outs[k][0].mean(axis=(0, 1))[:8].tolist(),
                                  flip_average=dict(grade=int(flip[k].argmax()), probabilities=flip[k].tolist()))
                          for k in sessions}
        kept += 1
    shas = {k: m["sha256"] for k, m in card["models"].items()}
    (OUT / "expected.json").write_text(json.dumps(dict(model_sha256=shas, images=expected), indent=1) + "\n")


def per_channel_fixture():
    """Conv with s8 weights dequantized per output channel (axis 0) with distinct scales."""
    rng = np.random.default_rng(3)
    w = rng.integers(-100, 100, (4, 2, 3, 3)).astype(np.int8)
    scale = np.array([0.01, 0.1, 1.0, 0.003], np.float32)
    zero = np.zeros(4, np.int8)
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], axis=0),
             helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "per_channel", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 5])],
                              [numpy_helper.from_array(w, "w_q"), numpy_helper.from_array(scale, "w_scale"),
                               numpy_helper.from_array(zero, "w_zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = OUT / "per_channel.onnx"
    onnx.save(model, path)
    x = rng.normal(size=(1, 2, 5, 5)).astype(np.float32)
    y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    (OUT / "per_channel.json").write_text(json.dumps(dict(x=x.ravel().tolist(), y=y.ravel().tolist(),
                                                          x_shape=list(x.shape), y_shape=list(y.shape))) + "\n")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    card = json.loads((ROOT / "models/card.json").read_text())
    for k, m in card["models"].items():
        actual = hashlib.sha256((ROOT / "models" / m["file"]).read_bytes()).hexdigest()
        assert actual == m["sha256"], f"{m['file']} does not match card.json"
    per_channel_fixture()
    model_fixtures(card)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
