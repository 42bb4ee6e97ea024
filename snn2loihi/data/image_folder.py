"""ImageNet-style image folders: ``root/<class name>/<image file>``.

Classes are the sub-folders in sorted order (label = index); images (JPEG, PNG, …, read
with Pillow) are converted to RGB and resized to ``size × size`` with bilinear filtering.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import DataError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")


def read_image(path: str, size: int) -> np.ndarray:
    """One image as (3, size, size) float32 in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            rgb = image.convert("RGB").resize((size, size), Image.BILINEAR)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        size_bytes = os.path.getsize(path) if os.path.exists(path) else 0
        raise DataError(path, f"not a readable image ({err}; the file ends at byte {size_bytes})") from None
    return np.asarray(rgb, np.float32).transpose(2, 0, 1) / 255.0


def load_image_folder(root: str, size: int = 32) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All images under ``root``: x (N, 3, size, size) float32, labels (N,) int64, class names."""
    if not os.path.isdir(root):
        raise DataError(root, "no such folder")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not classes:
        raise DataError(root, "no class sub-folders (expected root/<class>/<image>)")
    images, labels = [], []
    for label, name in enumerate(classes):
        folder = os.path.join(root, name)
        for file in sorted(os.listdir(folder)):
            if file.lower().endswith(EXTENSIONS):
                images.append(read_image(os.path.join(folder, file), size))
                labels.append(label)
    if not images:
        raise DataError(root, f"no image files ({', '.join(EXTENSIONS)}) in the class folders")
    return np.stack(images), np.asarray(labels, np.int64), classes
