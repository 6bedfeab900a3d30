"""Adds the int8 variant for ARM (`int8-arm`) to a models folder, made from its fp32 file.

tract runs ONNX `QLinearConv` on its integer kernels on aarch64 (SMLAL on a Pi 4's Cortex-A72,
SDOT on a Pi 5's A76), where they do much less work than its float kernels; on the x86 CPUs
measured they were slower than fp32 (1.9x with AVX-512 VNNI and AMX, far more with AVX2 alone), so
the card marks the file `arch: aarch64` and other CPUs do not offer it. The shipped int8 file (QDQ)
runs on float kernels everywhere in tract.

The form: the pointwise convolutions as `QLinearConv` with per-tensor symmetric s8 weights and
activations (the form whose requantisation tract fuses into its kernel), calibrated with MinMax on
a grade-stratified sample of the fit part of train. In fp32 stay the depthwise convolutions (tract
has no integer path for them), the head after the feature map (Grad-CAM reads its weights) and the
k pointwise convolutions that, quantized alone, move the logits most. k is chosen on the selection
slice: the best grade agreement with fp32 (the mean logits of the image and its mirror, as the
appliance grades), the smaller k on a tie. val is only reported.

    .venv/bin/python scripts/export_int8_arm.py [--models models] [--k 4,8,12,16]

Then, as after every card change: scripts/operating_point.py (the OA call's ROC for the new
variant), scripts/make_model_fixtures.py and scripts/sign-models.sh RELEASE_KEY.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export import (calibration_images, calibration_reader, head_nodes, ort_logits, sha256,  # noqa: E402
                    train_slices, view_logits)

VARIANT = "int8-arm"
ARCH = "aarch64"
CALIBRATION_IMAGES = 300
RANKING_CALIBRATION = 100  # images calibrating each one-convolution model while ranking
RANKING_SAMPLE = 64  # images whose logits rank the convolutions


def quantize(fp32, out, images, keep_fp32=(), only=None):
    """The form above: every Conv node (or only those in `only`) but those in `keep_fp32`."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(str(fp32), str(out), calibration_reader(images), quant_format=QuantFormat.QOperator,
                    per_channel=False, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["Conv"], nodes_to_quantize=only or [],
                    nodes_to_exclude=list(keep_fp32), calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})


def rank_convolutions(fp32, convs, images):
    """`convs` ordered by how far quantizing each alone moves the logits (mean absolute
    difference on a sample of calibration images), most first, with those distances."""
    sample = images[:RANKING_SAMPLE]
    ref = ort_logits(fp32, sample)
    moved = {}
    with tempfile.TemporaryDirectory() as tmp:
        one = Path(tmp) / "one.onnx"
        for conv in convs:
            quantize(fp32, one, images[:RANKING_CALIBRATION], only=[conv])
            moved[conv] = float(np.abs(ort_logits(one, sample) - ref).mean())
            print(f"  {conv}: quantized alone, logits move {moved[conv]:.4f}", flush=True)
    return sorted(convs, key=lambda c: -moved[c]), moved


def main():
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", type=Path, default=here.parent / "models")
    p.add_argument("--data", type=Path, default=here.parent.parent / "shared/data/kneeKL224")
    p.add_argument("--cache", type=Path, default=here.parent / "runs/cache")
    p.add_argument("--k", default="4,8,12,16", help="numbers of pointwise convolutions kept in fp32 to try")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args()

    import onnx
    from train import load_split, summarize

    card_path = args.models / "card.json"
    card = json.loads(card_path.read_text())
    fp32 = args.models / card["models"]["fp32"]["file"]
    out = args.models / f"{card['name']}.{VARIANT}.onnx"
    model = onnx.load(fp32)
    head, _ = head_nodes(model)
    depthwise = [n.name for n in model.graph.node if n.op_type == "Conv"
                 and any(a.name == "group" and a.i > 1 for a in n.attribute)]
    pointwise = [n.name for n in model.graph.node if n.op_type == "Conv" and n.name not in head + depthwise]
    print(f"{len(pointwise)} pointwise convolutions to quantize, {len(depthwise)} depthwise stay fp32", flush=True)

    (x_fit, y_fit), (x_sel, y_sel) = train_slices(args.data, args.cache, card["training"]["selection_slice"]["seed"])
    images, counts = calibration_images(x_fit, y_fit, CALIBRATION_IMAGES, args.seed)
    ranked, moved = rank_convolutions(fp32, pointwise, images)

    sel_fp32 = view_logits(fp32, x_sel)
    tried = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in [int(k) for k in args.k.split(",")]:
            path = Path(tmp) / f"k{k}.onnx"
            quantize(fp32, path, images, head + depthwise + ranked[:k])
            q = view_logits(path, x_sel)
            tried[k] = dict(selection_grade_agreement=float((q.argmax(1) == sel_fp32.argmax(1)).mean()),
                            selection_mean_abs_logit_diff=float(np.abs(q - sel_fp32).mean()),
                            selection_accuracy=float((q.argmax(1) == y_sel).mean()),
                            bytes=path.stat().st_size)
            print(f"{k} pointwise convolutions in fp32: {tried[k]}", flush=True)
    k = max(tried, key=lambda k: (tried[k]["selection_grade_agreement"], -k))
    quantize(fp32, out, images, head + depthwise + ranked[:k])
    print(f"kept {k} in fp32: wrote {out}")

    xv, yv, _, _ = load_split(args.data, "val", args.cache)
    val_fp32, val_q = view_logits(fp32, xv), view_logits(out, xv)
    agreement = float((val_q.argmax(1) == val_fp32.argmax(1)).mean())
    print(f"val: {VARIANT} gives fp32's grade on {agreement:.4f} of {len(yv)} images (onnxruntime)")
    quantized = sum(n.op_type == "QLinearConv" for n in onnx.load(out).graph.node)
    card["models"][VARIANT] = dict(
        file=out.name, sha256=sha256(out), bytes=out.stat().st_size, arch=ARCH,
        format=f"ONNX QOperator: {quantized} pointwise convolutions as QLinearConv, per-tensor symmetric "
               f"s8 weights and activations; depthwise convolutions, {k} pointwise ones and the head in fp32",
        calibration=dict(split="train (fit part)", images=int(len(images)), per_grade=counts),
        fp32_convolutions=ranked[:k], logits_moved_when_quantized_alone=moved,
        kept_in_fp32_tried=tried,
        val_grade_agreement_with_fp32=agreement,
        val_onnxruntime=summarize(val_q, yv, card["temperature"]))
    card_path.write_text(json.dumps(card, indent=1) + "\n")
    print(f"wrote {card_path}: now scripts/operating_point.py, scripts/make_model_fixtures.py, "
          "scripts/sign-models.sh RELEASE_KEY")


if __name__ == "__main__":
    main()
