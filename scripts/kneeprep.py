"""The seed's preprocessing contract, done with OpenCV: the reference the Rust side is tested against.

8-bit gray -> 224x224 (INTER_AREA when both sides >= 224, else INTER_LINEAR) -> rows 60..164
-> 224x224 (INTER_LINEAR) -> equalizeHist. Returns uint8; the network input is this /255, 3 channels.
"""
import cv2
import numpy as np

SIZE = 224
CROP_TOP, CROP_BOTTOM = 60, 164  # the seed's "crop 60 px top and bottom" of the 224x224 image
PREPROCESSING_ID = "crop60-eqhist-v1"


def preprocess(gray: np.ndarray) -> np.ndarray:
    assert gray.dtype == np.uint8 and gray.ndim == 2, "8-bit grayscale expected"
    h, w = gray.shape
    if (w, h) != (SIZE, SIZE):
        interp = cv2.INTER_AREA if w >= SIZE and h >= SIZE else cv2.INTER_LINEAR
        gray = cv2.resize(gray, (SIZE, SIZE), interpolation=interp)
    crop = gray[CROP_TOP:CROP_BOTTOM, :]
    stretched = cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    return cv2.equalizeHist(stretched)


def load(path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"cannot read {path}")
    return preprocess(img)
