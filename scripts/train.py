"""Train the KL grader: MobileNetV2 (ImageNet, TF-Slim weights) + the seed's head, on kneeKL224.

    scripts/train.py --recipe improved --out runs/improved

Writes into --out: model.keras, train.log, history.json, metrics.json (selection slice and val),
curves.png, confusion_val.png. Model selection uses only a patient-disjoint slice of train; val is
reported, never used for a decision. The official test split is not read.
"""
import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

RECIPES = {
    # The seed: /255 straight into MobileNetV2, balanced class weights, phase 2 from layer 100.
    "seed": dict(rescale=False, flip=False, label_smoothing=0.0, class_weight="balanced",
                 unfreeze_from=100, p1_epochs=30, p1_lr=1e-3, p2_epochs=20, p2_lr=1e-5,
                 patience=5, freeze_bn=False),
    # Same architecture; the input range the ImageNet weights expect, mirror-image knees,
    # label smoothing, milder class weights, the whole backbone fine-tuned at a higher rate with
    # batch-norm statistics frozen (Keras 3 runs a nested model's batch norm in training mode
    # during fit even when it was called with training=False; with a higher rate the moving
    # statistics then lag the weights and the selection slice degrades while train improves).
    "improved": dict(rescale=True, flip=True, label_smoothing=0.1, class_weight="sqrt",
                     unfreeze_from=0, p1_epochs=30, p1_lr=1e-3, p2_epochs=12, p2_lr=1e-4,
                     patience=4, freeze_bn=True),
    # "improved", with the smoothing mass given to the neighbouring grades only (KL grades are
    # ordered: calling KL2 a KL1 should cost less than calling it a KL4) and a longer schedule
    # (the improved run was still getting better on the selection slice at its last epoch).
    "ordinal": dict(rescale=True, flip=True, label_smoothing=0.1, ordinal_smoothing=True,
                    class_weight="sqrt", unfreeze_from=0, p1_epochs=30, p1_lr=1e-3, p2_epochs=30,
                    p2_lr=1e-4, patience=5, freeze_bn=True),
    # "improved", with batch norm trained instead of frozen: the batch statistics of knee X-rays
    # replace ImageNet's, and a momentum of 0.9 instead of 0.999 keeps the moving statistics close
    # to the changing weights (the lag that made the seed's fine-tuning collapse).
    "bn_trained": dict(rescale=True, flip=True, label_smoothing=0.1, class_weight="sqrt",
                       unfreeze_from=0, p1_epochs=30, p1_lr=1e-3, p2_epochs=24, p2_lr=1e-4,
                       patience=5, freeze_bn=False, bn_momentum=0.9),
    # "improved" (the shipped recipe), with the seed's augmentation (rotation, zoom and brightness of
    # the already equalised image) replaced by `site_augment`: what changes between sites and the
    # appliance's own crops (framing, digitiser tone curve, contrast, sharpening, noise, JPEG),
    # applied to the 224x224 source image, before the preprocessing contract.
    "robust": dict(rescale=True, flip=True, label_smoothing=0.1, class_weight="sqrt",
                   unfreeze_from=0, p1_epochs=30, p1_lr=1e-3, p2_epochs=12, p2_lr=1e-4,
                   patience=4, freeze_bn=True, source_augment=True),
    # "robust" as a continuation of the shipped network instead of a fresh start: the shipped fp32
    # ONNX file's weights are loaded back into the Keras network (`load_shipped`), phase 1 is
    # skipped (the head is already trained) and phase 2 goes on with site augmentation at a third
    # of the rate, for at most 8 epochs.
    "robust_continued": dict(rescale=True, flip=True, label_smoothing=0.1, class_weight="sqrt",
                             unfreeze_from=0, p1_epochs=0, p1_lr=1e-3, p2_epochs=8, p2_lr=3e-5,
                             patience=3, freeze_bn=True, source_augment=True, from_shipped=True),
}
PRETRAINED = "mobilenet_v2_1.0_imagenet/mobilenet_v2_1.0_224_no_top.h5"
GRADES = 5


def parse_args():
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(here / "../../shared/data/kneeKL224"))
    p.add_argument("--pretrained", default=str(here / "../../shared/pretrained" / PRETRAINED))
    p.add_argument("--recipe", choices=sorted(RECIPES), default="improved")
    p.add_argument("--out", required=True)
    p.add_argument("--cache", default=str(here / "../runs/cache"), help="preprocessed-image cache")
    p.add_argument("--seed", type=int, default=42, help="the training's randomness (initial draws, order, augmentation)")
    p.add_argument("--split-seed", type=int, default=42,
                   help="the selection slice's draw: keep 42 so that runs are compared on the same knees")
    p.add_argument("--selection-fraction", type=float, default=0.15)
    p.add_argument("--max-p2-epochs", type=int, help="override the recipe's phase-2 epochs")
    p.add_argument("--shipped", default=str(here / "../models/kneekl-mnv2.fp32.onnx"),
                   help="the fp32 ONNX file a from_shipped recipe starts from")
    p.add_argument("--limit", type=int, help="smoke test: only this many images of fit, selection and val, "
                                             "and at most 3 phase-2 steps per epoch")
    return p.parse_args()


def setup_logging(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        handlers=[logging.FileHandler(out / "train.log"), logging.StreamHandler(sys.stdout)])


def load_split(data: Path, split: str, cache: Path):
    """All images of a split, preprocessed by the contract (cached as uint8), labels and patient ids."""
    import kneeprep

    cache.mkdir(parents=True, exist_ok=True)
    cached = cache / f"{split}.npz"
    if cached.exists():
        z = np.load(cached)
        return z["x"], z["y"], z["patients"], z["names"]
    xs, ys, patients, names = [], [], [], []
    for grade in range(GRADES):
        for f in sorted((data / split / str(grade)).glob("*.png")):
            xs.append(kneeprep.load(f))
            ys.append(grade)
            patients.append(f.name[:7])
            names.append(f"{grade}/{f.name}")
    x, y = np.stack(xs), np.array(ys, np.int64)
    patients, names = np.array(patients), np.array(names)
    np.savez(cached, x=x, y=y, patients=patients, names=names)
    return x, y, patients, names


def load_sources(data: Path, split: str, cache: Path, names):
    """The 224x224 source images of a split (before the preprocessing contract), in load_split's order."""
    import cv2

    cached = cache / f"{split}-source.npz"
    if cached.exists():
        z = np.load(cached)
        assert (z["names"] == names).all()
        return z["x"]
    x = np.stack([cv2.imread(str(data / split / n), cv2.IMREAD_GRAYSCALE) for n in names])
    assert x.shape[1:] == (224, 224), "kneeKL224 sources are 224x224 8-bit gray"
    np.savez(cached, x=x, names=names)
    return x


def selection_split(y, patients, fraction, seed):
    """Patient-disjoint, grade-stratified slice of train for early stopping and model selection."""
    from sklearn.model_selection import StratifiedGroupKFold

    folds = StratifiedGroupKFold(n_splits=round(1 / fraction), shuffle=True, random_state=seed)
    fit_idx, sel_idx = next(folds.split(np.zeros(len(y)), y, groups=patients))
    assert not set(patients[fit_idx]) & set(patients[sel_idx])
    return fit_idx, sel_idx


def class_weights(y, mode):
    counts = np.bincount(y, minlength=GRADES).astype(np.float64)
    if mode == "none":
        w = np.ones(GRADES)
    else:
        w = len(y) / (GRADES * counts)  # sklearn's 'balanced'
        if mode == "sqrt":
            w = np.sqrt(w)
    return {i: float(v) for i, v in enumerate(w)}


def soft_targets(recipe):
    """Row g: the training target for true grade g. Label smoothing spreads its mass over all
    other grades (Keras' rule: eps/GRADES everywhere) or, ordinally, over the adjacent grades only."""
    eps = recipe["label_smoothing"]
    if not recipe.get("ordinal_smoothing"):
        return (1 - eps) * np.eye(GRADES) + eps / GRADES
    t = np.zeros((GRADES, GRADES))
    for g in range(GRADES):
        near = [n for n in (g - 1, g + 1) if 0 <= n < GRADES]
        t[g, g] = 1 - eps
        t[g, near] = eps / len(near)
    return t


def build(recipe, pretrained):
    """Backbone + the seed's head. Returns (full model, backbone, head layers)."""
    import keras
    from keras import layers

    inp = keras.Input((224, 224, 3), name="image")  # the contract: equalized gray / 255, 3 channels
    x = layers.Rescaling(2.0, offset=-1.0, name="to_minus1_1")(inp) if recipe["rescale"] else inp
    backbone = keras.applications.MobileNetV2(input_shape=(224, 224, 3), alpha=1.0, include_top=False,
                                              weights=pretrained)
    backbone.trainable = False
    features = backbone(x, training=False)  # not enough to freeze batch norm in Keras 3: see freeze_bn
    head = [layers.GlobalAveragePooling2D(name="gap"), layers.Dense(128, activation="relu", name="fc1"),
            layers.Dropout(0.3, name="dropout"), layers.Dense(GRADES, name="logits")]
    z = features
    for layer in head:
        z = layer(z)
    return keras.Model(inp, z, name="kneekl"), backbone, head


def load_shipped(model, backbone, head, onnx_path):
    """Loads a network exported by scripts/export.py back into `build`'s Keras network.

    The export folds each frozen batch norm into the convolution before it (weight x scale, plus a
    bias). Batch norm stayed at the ImageNet values in training (freeze_bn), so the ImageNet
    statistics already in `backbone` give each scale back: the kernel is the folded one divided by
    it, and the folded bias must equal beta - mean x scale (checked). Convolutions pair up in graph
    order, the two dense layers by shape; the logits are checked against onnxruntime by the caller.
    """
    import keras
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(onnx_path).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    gemms = [n for n in graph.node if n.op_type == "Gemm"]
    layers = backbone.layers
    keras_convs = [i for i, l in enumerate(layers) if isinstance(l, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))]
    assert len(convs) == len(keras_convs), (len(convs), len(keras_convs))
    for node, i in zip(convs, keras_convs):
        conv, bn = layers[i], layers[i + 1]
        assert isinstance(bn, keras.layers.BatchNormalization), bn.name
        w, b = inits[node.input[1]], inits[node.input[2]]
        gamma, beta, mean, var = bn.get_weights()
        scale = gamma / np.sqrt(var + bn.epsilon)
        assert np.allclose(b, beta - mean * scale, atol=1e-4, rtol=1e-3), f"{conv.name}: batch norm was not frozen"
        if isinstance(conv, keras.layers.DepthwiseConv2D):  # ONNX (C, 1, kh, kw) -> Keras (kh, kw, C, 1)
            kernel = w.transpose(2, 3, 0, 1) / scale[None, None, :, None]
        else:  # ONNX (O, I, kh, kw) -> Keras (kh, kw, I, O)
            kernel = w.transpose(2, 3, 1, 0) / scale[None, None, None, :]
        assert kernel.shape == conv.kernel.shape, (conv.name, kernel.shape, conv.kernel.shape)
        conv.set_weights([kernel.astype(np.float32)])
    dense = [l for l in head if isinstance(l, keras.layers.Dense)]
    assert len(gemms) == len(dense)
    for node, layer in zip(gemms, dense):
        layer.set_weights([inits[node.input[1]], inits[node.input[2]]])


def augmenter(recipe, seed):
    """The seed's augmentation (rotation 10 deg, zoom 0.1, brightness 0.8-1.2), plus flips if asked."""
    import keras
    import tensorflow as tf

    geo = [keras.layers.RandomRotation(10 / 360, fill_mode="constant", seed=seed),
           keras.layers.RandomZoom(0.1, fill_mode="constant", seed=seed + 1)]
    if recipe["flip"]:
        geo.insert(0, keras.layers.RandomFlip("horizontal", seed=seed + 2))
    rng = tf.random.Generator.from_seed(seed)

    def apply(x, y):
        for layer in geo:
            x = layer(x, training=True)
        b = rng.uniform((tf.shape(x)[0], 1, 1, 1), 0.8, 1.2)
        return tf.clip_by_value(x * b, 0.0, 1.0), y

    return apply


# Site augmentation (recipe "robust"): what differs between hospitals' digitisers and export
# pipelines, and between the training crops and the ones the appliance cuts with its joint
# localiser. Each function takes and returns a 224x224 uint8 source image (before the contract's
# crop, stretch and equalisation) and draws from `rng`. The histogram equalisation afterwards cancels
# any monotone grey-level map except where it clips or merges levels, so tone, contrast and
# brightness act through saturation and quantisation; blur, sharpening, noise and JPEG survive it.

def _u8(x):
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def aug_framing(img, rng):
    """Rotation +-7 deg, joint scale 0.85-1.2 and shift +-8 % of the side (a localiser's spread)."""
    import cv2

    scale = np.exp(rng.uniform(np.log(0.85), np.log(1.2)))
    m = cv2.getRotationMatrix2D((111.5, 111.5), rng.uniform(-7, 7), scale)
    m[:, 2] += rng.uniform(-0.08, 0.08, 2) * 224
    return cv2.warpAffine(img, m, (224, 224), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def aug_tone(img, rng):
    """A digitiser's tone curve: gamma 0.7-1.4 and a mild S (or inverse S) curve."""
    x = (img / 255.0) ** np.exp(rng.uniform(np.log(0.7), np.log(1.4)))
    s = x * x * (3 - 2 * x)  # smoothstep: an S-curve through 0 and 1
    return _u8(255 * (x + rng.uniform(-0.5, 0.5) * (s - x)))


def aug_contrast(img, rng):
    """Window width (contrast 0.6-1.4 around the mean) and level (brightness +-30), clipped."""
    x = img.astype(np.float32)
    return _u8((x - x.mean()) * rng.uniform(0.6, 1.4) + x.mean() + rng.uniform(-30, 30))


def aug_sharpness(img, rng):
    """Unsharp masking (a CR reader's edge enhancement) or blur (a softer detector)."""
    import cv2

    x = img.astype(np.float32)
    if rng.random() < 0.5:
        return _u8(x + rng.uniform(0.3, 1.5) * (x - cv2.GaussianBlur(x, (0, 0), rng.uniform(1.0, 2.5))))
    return _u8(cv2.GaussianBlur(x, (0, 0), rng.uniform(0.4, 1.2)))


def aug_noise(img, rng):
    """Additive Gaussian noise, std 2-8 grey levels."""
    return _u8(img + rng.normal(0, rng.uniform(2, 8), img.shape))


def aug_jpeg(img, rng):
    """JPEG compression, quality 50-95."""
    import cv2

    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 96))])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


# (augmentation, probability), in the order an image meets them: positioning, detector, export.
SITE_AUGMENTS = [(aug_framing, 0.9), (aug_tone, 0.5), (aug_contrast, 0.5), (aug_sharpness, 0.4),
                 (aug_noise, 0.3), (aug_jpeg, 0.3)]


def site_augment(img, rng, flip=True):
    """One training view: the source image, mirrored half the time, through SITE_AUGMENTS."""
    if flip and rng.random() < 0.5:
        img = img[:, ::-1]
    img = np.ascontiguousarray(img)
    for fn, p in SITE_AUGMENTS:
        if rng.random() < p:
            img = fn(img, rng)
    return img


def source_augmenter(sources, recipe, seed):
    """tf.data map (indices, labels) -> (contract input of site-augmented sources, labels).
    Image i's k-th draw uses the generator seeded by (seed, i, k): reproducible whatever the order or
    the parallelism of tf.data, and a different view of each image every epoch."""
    import tensorflow as tf
    import kneeprep

    draws = np.zeros(len(sources), np.int64)

    def views(idx):
        out = np.empty((len(idx), 224, 224), np.uint8)
        for j, i in enumerate(idx):
            rng = np.random.default_rng([seed, int(i), int(draws[i])])
            draws[i] += 1
            out[j] = kneeprep.preprocess(site_augment(sources[i], rng, recipe["flip"]))
        return out

    def apply(idx, y):
        x = tf.numpy_function(views, [idx], tf.uint8, stateful=True)
        x = tf.cast(tf.reshape(x, (-1, 224, 224)), tf.float32) / 255.0
        return tf.repeat(x[..., None], 3, axis=-1), y

    return apply


def to_input(x_u8):
    return np.repeat((x_u8.astype(np.float32) / 255.0)[..., None], 3, axis=-1)


def dataset(x_u8, y, batch, shuffle_seed=None, augment=None, weights=None, from_indices=None):
    """Batches of (contract input, label[, weight]). `from_indices`: a map (indices, labels) -> (inputs,
    labels) that makes the inputs itself (source_augmenter) instead of fetching x_u8."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(y)), y))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(y), seed=shuffle_seed, reshuffle_each_iteration=True)
    images = tf.constant(x_u8)

    def fetch(i, label):
        img = tf.cast(tf.gather(images, i), tf.float32) / 255.0
        return tf.repeat(img[..., None], 3, axis=-1), label

    if from_indices is not None:
        ds = ds.batch(batch).map(from_indices)
    else:
        ds = ds.map(fetch).batch(batch)
    if augment:
        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    if weights is not None:
        wt = tf.constant([weights[i] for i in range(GRADES)], tf.float32)
        ds = ds.map(lambda a, b: (a, b, tf.gather(wt, b)))
    return ds.prefetch(2)


def predict_logits(model, x_u8, batch=64):
    return np.concatenate([model.predict_on_batch(to_input(x_u8[i:i + batch])) for i in range(0, len(x_u8), batch)])


def fit_temperature(logits, y):
    from scipy.optimize import minimize_scalar

    def nll(t):
        z = logits / t
        z = z - z.max(1, keepdims=True)
        return float(-(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))).mean())

    return float(minimize_scalar(nll, bounds=(0.3, 5.0), method="bounded").x)


def probabilities(logits, temperature):
    """softmax(logits / temperature) per row: the calibrated probabilities the appliance reports."""
    z = logits / temperature
    p = np.exp(z - z.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def summarize(logits, y, temperature):
    from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix

    p = probabilities(logits, temperature)
    pred = p.argmax(1)
    conf = p.max(1)
    bins = np.minimum((conf * 10).astype(int), 9)
    ece = sum(abs((pred[bins == b] == y[bins == b]).mean() - conf[bins == b].mean()) * (bins == b).mean()
              for b in range(10) if (bins == b).any())
    return dict(n=int(len(y)), accuracy=float(accuracy_score(y, pred)),
                qwk=float(cohen_kappa_score(y, pred, weights="quadratic")),
                mae=float(np.abs(pred - y).mean()), binary_accuracy=float(((pred >= 2) == (y >= 2)).mean()),
                nll=float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean()), ece=float(ece),
                confusion=confusion_matrix(y, pred, labels=list(range(GRADES))).tolist())


def plots(out: Path, history, confusion, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("loss", "val_loss"):
        ax[0].plot(history.get(key, []), label=key)
    for key in ("accuracy", "val_accuracy"):
        ax[1].plot(history.get(key, []), label=key)
    ax[0].set_title("loss (phase 1 then phase 2)")
    ax[1].set_title("accuracy")
    for a in ax:
        a.set_xlabel("epoch")
        a.legend()
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=90)
    plt.close(fig)
    fig, a = plt.subplots(figsize=(5, 4.5))
    cm = np.array(confusion)
    a.imshow(cm / np.maximum(cm.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for i in range(GRADES):
        for j in range(GRADES):
            a.text(j, i, cm[i, j], ha="center", va="center")
    a.set_xlabel("predicted KL")
    a.set_ylabel("true KL")
    a.set_title(title)
    fig.tight_layout()
    fig.savefig(out / "confusion_val.png", dpi=90)
    plt.close(fig)


def main():
    args = parse_args()
    out = Path(args.out)
    setup_logging(out)
    recipe = dict(RECIPES[args.recipe])
    if args.max_p2_epochs is not None:
        recipe["p2_epochs"] = args.max_p2_epochs
    os.environ.setdefault("PYTHONHASHSEED", str(args.seed))
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    logging.info("recipe %s %s seed %d", args.recipe, recipe, args.seed)
    t0 = time.time()
    data = Path(args.data)
    x, y, patients, names = load_split(data, "train", Path(args.cache))
    xv, yv, _, _ = load_split(data, "val", Path(args.cache))
    fit_idx, sel_idx = selection_split(y, patients, args.selection_fraction, args.split_seed)
    if args.limit:
        fit_idx, sel_idx, xv, yv = fit_idx[:args.limit], sel_idx[:args.limit], xv[:args.limit], yv[:args.limit]
    logging.info("train %d (fit %d, selection %d, patient-disjoint), val %d; loaded in %.0fs",
                 len(y), len(fit_idx), len(sel_idx), len(yv), time.time() - t0)
    weights = class_weights(y[fit_idx], recipe["class_weight"])
    logging.info("class weights %s", weights)

    model, backbone, head = build(recipe, args.pretrained)
    if recipe.get("from_shipped"):
        from export import ort_logits

        load_shipped(model, backbone, head, args.shipped)
        probe = to_input(x[sel_idx[:8]])
        gap = np.abs(model.predict_on_batch(probe) - ort_logits(Path(args.shipped), probe)).max()
        assert gap < 1e-3, f"the loaded network differs from {args.shipped} by {gap} in the logits"
        logging.info("started from %s (logits within %.1e of onnxruntime's)", args.shipped, gap)
    targets = tf.constant(soft_targets(recipe), tf.float32)
    loss = keras.losses.CategoricalCrossentropy(from_logits=True)

    def sparse_loss(y_true, y_pred):
        return loss(tf.gather(targets, tf.cast(tf.reshape(y_true, [-1]), tf.int32)), y_pred)

    history = {}

    def record(h):
        for k, v in h.history.items():
            history.setdefault(k, []).extend(float(a) for a in v)

    # Phase 1: frozen backbone, so pooled features are computed once and the head trained on them
    # (skipped when the network starts trained: from_shipped).
    if recipe["p1_epochs"]:
        t1 = time.time()
        pooled_model = keras.Model(model.input, head[0].output)
        f_fit = pooled_model.predict(dataset(x[fit_idx], y[fit_idx], 64), verbose=0)
        f_sel = pooled_model.predict(dataset(x[sel_idx], y[sel_idx], 64), verbose=0)
        head_in = keras.Input((f_fit.shape[1],))
        z = head_in
        for layer in head[1:]:
            z = layer(z)
        head_model = keras.Model(head_in, z)
        head_model.compile(keras.optimizers.Adam(recipe["p1_lr"]), sparse_loss, metrics=["accuracy"])
        cb = [keras.callbacks.EarlyStopping(patience=recipe["patience"], restore_best_weights=True)]
        record(head_model.fit(f_fit, y[fit_idx], validation_data=(f_sel, y[sel_idx]), epochs=recipe["p1_epochs"],
                              batch_size=32, class_weight=weights, callbacks=cb, verbose=2))
        logging.info("phase 1 done in %.0fs", time.time() - t1)

    # Phase 2: fine-tune the backbone from layer `unfreeze_from` at a small learning rate.
    t2 = time.time()
    backbone.trainable = True
    for layer in backbone.layers[: recipe["unfreeze_from"]]:
        layer.trainable = False
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            if recipe["freeze_bn"]:
                layer.trainable = False
            elif "bn_momentum" in recipe:
                layer.momentum = recipe["bn_momentum"]
    model.compile(keras.optimizers.Adam(recipe["p2_lr"]), sparse_loss, metrics=["accuracy"])
    if recipe.get("source_augment"):
        sources = load_sources(data, "train", Path(args.cache), names)[fit_idx]
        train_ds = dataset(x[fit_idx], y[fit_idx], 32, shuffle_seed=args.seed, weights=weights,
                           from_indices=source_augmenter(sources, recipe, args.seed))
    else:
        train_ds = dataset(x[fit_idx], y[fit_idx], 32, shuffle_seed=args.seed, augment=augmenter(recipe, args.seed),
                           weights=weights)
    if args.limit:
        train_ds = train_ds.take(3)
    sel_ds = dataset(x[sel_idx], y[sel_idx], 64)
    ckpt = out / "model.keras"
    cb = [keras.callbacks.EarlyStopping(patience=recipe["patience"], restore_best_weights=True),
          keras.callbacks.ReduceLROnPlateau(factor=0.3, patience=2, min_lr=1e-7),
          keras.callbacks.ModelCheckpoint(ckpt, save_best_only=True),
          keras.callbacks.CSVLogger(out / "phase2.csv")]
    record(model.fit(train_ds, validation_data=sel_ds, epochs=recipe["p2_epochs"], callbacks=cb, verbose=2))
    logging.info("phase 2 done in %.0fs", time.time() - t2)
    model.save(ckpt)

    sel_logits = predict_logits(model, x[sel_idx])
    temperature = fit_temperature(sel_logits, y[sel_idx])
    val_logits = predict_logits(model, xv)
    metrics = dict(recipe=args.recipe, config=recipe, seed=args.seed, split_seed=args.split_seed, temperature=temperature,
                   selection=summarize(sel_logits, y[sel_idx], temperature),
                   selection_uncalibrated=summarize(sel_logits, y[sel_idx], 1.0),
                   val=summarize(val_logits, yv, temperature), wall_seconds=round(time.time() - t0),
                   n_fit=int(len(fit_idx)), n_selection=int(len(sel_idx)))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (out / "history.json").write_text(json.dumps(history))
    plots(out, history, metrics["val"]["confusion"], f"val, recipe {args.recipe}")
    logging.info("temperature %.3f", temperature)
    for part in ("selection", "val"):
        m = metrics[part]
        logging.info("%s: acc %.4f qwk %.4f mae %.4f binary %.4f nll %.4f ece %.4f", part, m["accuracy"],
                     m["qwk"], m["mae"], m["binary_accuracy"], m["nll"], m["ece"])
    logging.info("total %.0fs", time.time() - t0)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
