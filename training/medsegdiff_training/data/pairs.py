"""Finding image/mask pairs in a dataset folder, optionally filtered by a split CSV.

A dataset is a folder of images and a folder of masks matched by file stem, with an
optional CSV ``name,split`` (the layout of ``shared/data/ddti`` and ``drishti_roi``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetError
from .io import IMAGE_SUFFIXES, file_stem, file_suffix


@dataclass(frozen=True)
class Pair:
    """One image and its mask, matched by ``name`` (the shared file stem)."""

    name: str
    image: Path
    mask: Path


def _index(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DatasetError(f"The {what} folder {folder} does not exist.")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and file_suffix(path) in IMAGE_SUFFIXES and not path.name.startswith("."):
            files.setdefault(file_stem(path), path)
    return files


def read_split_csv(path: str | Path) -> dict[str, str]:
    """Read a ``name,split`` CSV into {name: split}; the header row is optional."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"The split file {path} does not exist.")
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if rows and [cell.strip().lower() for cell in rows[0][:2]] == ["name", "split"]:
        rows = rows[1:]
    if not rows or any(len(row) < 2 for row in rows):
        raise DatasetError(f"{path} must have two columns, name and split, on every row.")
    return {row[0].strip(): row[1].strip() for row in rows}


def find_pairs(
    images: str | Path,
    masks: str | Path,
    split_csv: str | Path | None = None,
    split: str | None = None,
) -> list[Pair]:
    """Match images and masks by stem; keep only ``split`` when a split CSV is given.

    Raises :class:`DatasetError` when a folder is missing or nothing matches.
    """
    image_files, mask_files = _index(Path(images), "images"), _index(Path(masks), "masks")
    names = sorted(set(image_files) & set(mask_files))
    if split_csv is not None and split is not None:
        splits = read_split_csv(split_csv)
        known = set(splits.values())
        if split not in known:
            raise DatasetError(f"Split {split!r} is not in {split_csv} (it has {', '.join(sorted(known))}).")
        names = [n for n in names if splits.get(n) == split]
    if not names:
        raise DatasetError(
            f"No matching image/mask pairs in {images} and {masks}"
            + (f" for split {split!r}" if split else "")
            + " (images and masks are matched by file name without suffix)."
        )
    return [Pair(name, image_files[name], mask_files[name]) for name in names]
