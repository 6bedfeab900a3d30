#!/usr/bin/env python3
"""Generate the golden fixtures for tests/preprocess_golden.rs and tests/decode.rs.

Every input is synthetic (gradients, noise, edges, constants, colours). For each input the
reference results come from opencv-python (pinned 4.12):
  - <name>.cv2gray.png  cv2.imread(path, cv2.IMREAD_GRAYSCALE)   (when the input is not 8-bit grey)
  - <name>.pre.png      the full preprocessing contract (kneeprep.preprocess) on that grey image
plus separate references for cv2.resize (INTER_LINEAR / INTER_AREA) and cv2.equalizeHist.
manifest.json lists every comparison. Run from the repository root:

    .venv/bin/python scripts/make_preprocess_fixtures.py
"""

import io
import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from kneeprep import CROP_BOTTOM, CROP_TOP, SIZE, preprocess  # the cv2 reference pipeline

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "preprocess"


# ----------------------------------------------------------------------------------------------
# Synthetic images

rng = np.random.default_rng(20241127)


def gradient(w, h):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    v = 255 * (x / max(w - 1, 1) * 0.6 + y / max(h - 1, 1) * 0.4) + 20 * np.sin(x / 9.0) * np.cos(y / 13.0)
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)


def noise(w, h):
    return rng.integers(0, 256, (h, w), dtype=np.uint8)


def noise_band(w, h):
    """A gradient with noise in the rows around the crop band (noise elsewhere is discarded)."""
    img = gradient(w, h)
    img[CROP_TOP - 10 : CROP_BOTTOM + 10] = noise(w, CROP_BOTTOM - CROP_TOP + 20)
    return img


def checker(w, h, cell=7):
    y, x = np.mgrid[0:h, 0:w]
    board = ((x // cell + y // cell) % 2) * 170 + 40
    board[:, w // 3 : w // 3 + 2] = 255  # thin bright line
    board[h // 2 :, :] = 255 - board[h // 2 :, :]  # hard horizontal edge
    return board.astype(np.uint8)


def blobs(w, h):
    """Smooth anatomy-like shapes with sharp edges: compresses well, exercises INTER_AREA."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    v = 60 + 0.05 * x
    for cx, cy, r, a in [(0.3, 0.4, 0.2, 120), (0.7, 0.6, 0.25, 90), (0.5, 0.5, 0.08, -50)]:
        d = np.hypot(x - cx * w, y - cy * h) / (r * min(w, h))
        v += a * np.exp(-(d**2))
    v[(x > 0.45 * w) & (x < 0.55 * w) & (y > 0.2 * h)] += 40  # a bar with hard edges
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)


def colours(w, h):
    """Saturated and mixed colours (R, G, B order)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127 + 127 * np.sin(x / 11.0)
    g = 127 + 127 * np.cos(y / 7.0)
    b = 255 * ((x + y) % 64 < 32)
    rgb = np.stack([r, g, b], axis=-1)
    rgb[: h // 8] = rng.integers(0, 256, (h // 8, w, 3))  # a noisy band
    rgb[h // 2 : h // 2 + 10, :, :] = 128  # grey rows: R = G = B
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Writers for PNG variants that cv2/Pillow cannot produce directly


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png(path, pixels, color_type, extra_chunks=(), interlaced=False):
    """Minimal PNG writer (8-bit samples), optionally Adam7-interlaced."""
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, w, -1)
    if interlaced:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        raw = b""
        for x0, y0, dx, dy in passes:
            sub = rows[y0::dy, x0::dx]
            if sub.size:
                raw += b"".join(b"\x00" + r.tobytes() for r in sub)
    else:
        raw = b"".join(b"\x00" + r.tobytes() for r in rows)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 1 if interlaced else 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
    for kind, payload in extra_chunks:
        data += png_chunk(kind, payload)
    data += png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b"")
    path.write_bytes(data)


def exif_orientation(value):
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


# ----------------------------------------------------------------------------------------------


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    manifest = []

    def save(name, img):
        params = [cv2.IMWRITE_PNG_COMPRESSION, 9] if name.endswith(".png") else []
        assert cv2.imwrite(str(OUT / name), img, params), name
        return name

    def add_input(filename, decode_exact=True, plain=False):
        """Record decode + full-pipeline references for an input file written to OUT.

        plain: an 8-bit grey PNG that cv2 reads back unchanged, so it is its own reference."""
        path = OUT / filename
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        assert gray is not None, filename
        stem = filename.rsplit(".", 1)[0]
        if plain:
            assert np.array_equal(gray, cv2.imread(str(path), cv2.IMREAD_UNCHANGED)), filename
            gray_name = filename
        else:
            gray_name = save(f"{stem}.cv2gray.png", gray)
        manifest.append({"kind": "decode", "input": filename, "expected": gray_name, "exact": decode_exact})
        manifest.append({"kind": "preprocess", "input": gray_name, "expected": save(f"{stem}.pre.png", preprocess(gray))})
        return gray

    def add_resize(src_name, src, size, method, crop=None):
        """crop = (x, y, w, h): resize that region of the input instead of all of it."""
        flag = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA}[method]
        stem = src_name.rsplit(".", 1)[0]
        entry = {"kind": f"resize_{method}", "input": src_name, "size": list(size)}
        if crop:
            x, y, w, h = crop
            src = src[y : y + h, x : x + w]
            stem += f".crop_{x}_{y}_{w}x{h}"
            entry["crop"] = list(crop)
        out = cv2.resize(src, size, interpolation=flag)
        entry["expected"] = save(f"{stem}.{method}_{size[0]}x{size[1]}.png", out)
        manifest.append(entry)

    def add_eqhist(src_name, src):
        stem = src_name.rsplit(".", 1)[0]
        name = save(f"{stem}.eqhist.png", cv2.equalizeHist(src))
        manifest.append({"kind": "equalize_hist", "input": src_name, "expected": name})

    # 8-bit grey PNG inputs: every size path of the contract.
    grey_inputs = {
        "grad_224x224.png": gradient(224, 224),  # the training path: identity resize
        "noise_224x224.png": noise_band(224, 224),  # noise where the crop keeps it
        "const_224x224.png": np.full((224, 224), 137, np.uint8),  # equalizeHist leaves it alone
        "const_97x61.png": np.full((61, 97), 3, np.uint8),
        "noise_97x61.png": noise(97, 61),  # enlarged with INTER_LINEAR
        "checker_223x301.png": checker(223, 301),  # one side < 224: INTER_LINEAR
        "blobs_1000x800.png": blobs(1000, 800),  # INTER_AREA, fractional ratio
        "checker_448x448.png": checker(448, 448, cell=5),  # INTER_AREA, exact 2x
        "checker_672x896.png": checker(672, 896),  # INTER_AREA, exact 3x and 4x
        "narrow_40x600.png": gradient(40, 600) // 2 + checker(40, 600, cell=3) // 2,  # narrow: INTER_LINEAR
        "grad_224x500.png": gradient(224, 500),  # width unchanged, INTER_AREA on height
    }
    for name, img in grey_inputs.items():
        save(name, img)
        add_input(name, plain=True)

    # Resize references beyond the pipeline's own sizes: up, down, odd, exact 2x both ways.
    band = (0, CROP_TOP, SIZE, CROP_BOTTOM - CROP_TOP)
    for name in ["noise_224x224.png", "grad_224x224.png"]:
        add_resize(name, grey_inputs[name], (SIZE, SIZE), "linear", crop=band)  # the training stretch
    for name, sizes in {
        "noise_224x224.png": [(112, 112), (50, 37), (13, 250)],
        "noise_97x61.png": [(224, 224), (194, 122), (48, 30), (5, 3), (97, 200)],
        "checker_223x301.png": [(224, 224), (100, 77), (446, 602), (224, 223)],
        "blobs_1000x800.png": [(224, 224), (71, 333)],
        "narrow_40x600.png": [(224, 224), (3, 17)],
    }.items():
        for size in sizes:
            add_resize(name, grey_inputs[name], size, "linear")
    for name, sizes in {
        "blobs_1000x800.png": [(224, 224), (333, 271), (17, 13)],
        "checker_448x448.png": [(224, 224), (112, 112), (149, 149)],
        "checker_672x896.png": [(224, 224), (168, 224)],
        "grad_224x500.png": [(224, 224)],
        "noise_97x61.png": [(224, 224), (97, 30)],  # enlarging: OpenCV's bilinear emulation
    }.items():
        for size in sizes:
            add_resize(name, grey_inputs[name], size, "area")
    for name in ["grad_224x224.png", "const_224x224.png", "checker_223x301.png", "noise_97x61.png", "narrow_40x600.png"]:
        add_eqhist(name, grey_inputs[name])

    # Decoding variants: what cv2.imread(..., IMREAD_GRAYSCALE) gives for each.
    g16 = (gradient(160, 120).astype(np.uint16) * 257 + rng.integers(0, 256, (120, 160))).astype(np.uint16)
    save("gray16_160x120.png", g16)
    add_input("gray16_160x120.png")

    rgb = colours(256, 240)
    Image.fromarray(rgb, "RGB").save(OUT / "rgb_256x240.png")
    add_input("rgb_256x240.png")

    rgba = np.dstack([colours(150, 131), gradient(150, 131)[::-1]])
    Image.fromarray(rgba, "RGBA").save(OUT / "rgba_150x131.png")
    add_input("rgba_150x131.png")

    la = np.dstack([gradient(120, 90), noise(120, 90)])
    Image.fromarray(la, "LA").save(OUT / "gray_alpha_120x90.png")
    add_input("gray_alpha_120x90.png")

    Image.fromarray(colours(150, 100), "RGB").quantize(50).save(OUT / "palette_150x100.png")
    add_input("palette_150x100.png")

    Image.fromarray((checker(64, 48) > 128).astype(np.uint8) * 255).convert("1").save(OUT / "bilevel_64x48.png")
    add_input("bilevel_64x48.png")

    c16 = (colours(80, 60).astype(np.uint16) * 257 + rng.integers(0, 256, (60, 80, 3))).astype(np.uint16)
    save("rgb16_80x60.png", c16[..., ::-1])  # cv2 writes BGR order
    add_input("rgb16_80x60.png")

    # Colour with a declared gamma: libpng mixes the channels in linear light.
    write_png(OUT / "rgb_srgb_120x90.png", colours(120, 90), 2, [(b"sRGB", b"\x00")])
    add_input("rgb_srgb_120x90.png")
    write_png(OUT / "rgb_gama18_90x70.png", colours(90, 70), 2, [(b"gAMA", struct.pack(">I", 55556))])
    add_input("rgb_gama18_90x70.png")
    write_png(OUT / "rgb_gama1_90x70.png", colours(90, 70), 2, [(b"gAMA", struct.pack(">I", 100000))])
    add_input("rgb_gama1_90x70.png")
    indexed = Image.fromarray(colours(60, 40), "RGB").quantize(40)
    palette = bytes(indexed.getpalette()[: 3 * 40])
    write_png(OUT / "palette_srgb_60x40.png", np.array(indexed), 3, [(b"sRGB", b"\x00"), (b"PLTE", palette)])
    add_input("palette_srgb_60x40.png")

    write_png(OUT / "interlaced_gray_101x77.png", checker(101, 77, cell=3), 0, interlaced=True)
    add_input("interlaced_gray_101x77.png")
    write_png(OUT / "interlaced_rgb_37x29.png", colours(37, 29), 2, interlaced=True)
    add_input("interlaced_rgb_37x29.png")

    # EXIF orientation is applied by cv2.imread (6: rotate 90° clockwise; 5: transpose).
    Image.fromarray(checker(60, 40)).save(OUT / "exif6_60x40.png", exif=exif_orientation(6))
    add_input("exif6_60x40.png")
    Image.fromarray(gradient(64, 48)).save(OUT / "exif5_64x48.jpg", exif=exif_orientation(5), quality=92)
    add_input("exif5_64x48.jpg", decode_exact=False)

    # JPEG: the IDCT differs from libjpeg's, so decode is compared within ±1.
    cv2.imwrite(str(OUT / "color_200x160.jpg"), colours(200, 160)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    add_input("color_200x160.jpg", decode_exact=False)
    cv2.imwrite(str(OUT / "gray_257x263.jpg"), blobs(257, 263), [cv2.IMWRITE_JPEG_QUALITY, 85])
    add_input("gray_257x263.jpg", decode_exact=False)
    buf = io.BytesIO()
    Image.fromarray(colours(150, 120)).save(buf, "JPEG", quality=80, progressive=True)
    (OUT / "progressive_150x120.jpg").write_bytes(buf.getvalue())
    add_input("progressive_150x120.jpg", decode_exact=False)

    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"{len(manifest)} comparisons, {len(list(OUT.iterdir()))} files, {total / 1024:.0f} KiB in {OUT}")


if __name__ == "__main__":
    main()
