"""Sample images: thyroid ultrasound (three DDTI test-split crops), a fundus photograph and a
brain MRI FLAIR slice (one LGG test-split slice)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLES = Path(__file__).parent / "sample_data"
CITATION = "DDTI (Pedraza et al., SPIE 9287, 2015), test split; see sample_data/CITATION.md"
BRAIN_MRI = "lgg_test_TCGA_CS_5393_19990606_10.png"
BRAIN_MRI_CITATION = (
    "TCGA-LGG FLAIR slice via Buda et al., Computers in Biology and Medicine 109:218-225, 2019, "
    "test split; non-commercial research use only; see sample_data/CITATION.md"
)


def _read(name: str) -> np.ndarray:
    from PIL import Image

    with Image.open(SAMPLES / name) as picture:
        return np.asarray(picture.convert("L"))


def ultrasound() -> list[tuple[np.ndarray, dict, str]]:
    """The first DDTI thyroid ultrasound sample (grayscale, 300x300)."""
    return [
        (
            _read("ddti_test_106_2.png"),
            {"name": "thyroid ultrasound", "metadata": {"citation": CITATION}},
            "image",
        )
    ]


def ultrasound_all() -> list[tuple[np.ndarray, dict, str]]:
    """All three DDTI samples as separate layers."""
    names = sorted(p.name for p in SAMPLES.glob("ddti_test_*.png"))
    return [
        (_read(n), {"name": f"ultrasound {n[10:-4]}", "metadata": {"citation": CITATION}}, "image")
        for n in names
    ]


def fundus() -> list[tuple[np.ndarray, dict, str]]:
    """scikit-image's retina photograph (RGB, 1411x1411), the whole picture."""
    from skimage import data

    retina = data.retina()
    return [(retina, {"name": "fundus photograph", "rgb": True}, "image")]


def brain_mri() -> list[tuple[np.ndarray, dict, str]]:
    """One brain MRI FLAIR slice with a lower-grade glioma (grayscale, 256x256), from the test
    split that the shipped ``lgg-flair`` model never trained on."""
    return [
        (
            _read(BRAIN_MRI),
            {"name": "brain MRI FLAIR", "metadata": {"citation": BRAIN_MRI_CITATION}},
            "image",
        )
    ]
