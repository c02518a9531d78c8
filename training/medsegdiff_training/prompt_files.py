"""Box prompts from files: ``predict --boxes`` and ``evaluate --boxes`` / ``--boxes-from-masks``.

A boxes file is a CSV with the header ``image,x0,y0,x1,y1``: ``image`` is the input's file
name, the coordinates are pixels (x = column, y = row; x1 and y1 exclusive), one row per
object. The objects of an image get label ids 1..n in file order. Each image's boxes run
``batch_size`` at a time (:mod:`.prompted`: memory bounded whatever their number), and a
cancel stops between two batches.

``--boxes-from-masks`` takes one box per connected component of each expert mask, at most
:data:`MAX_MASK_BOXES` of them (the largest), of at least :data:`MIN_COMPONENT_PIXELS`
pixels: a noisy mask's thousands of specks would otherwise each become a prompt. What is
left out is said in a warning.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .data.io import file_stem, read_array, read_mask
from .data.pairs import Pair
from .data.writers import write_label_map
from .errors import Cancelled, DatasetError, InvalidImageError, PromptError
from .evaluation import EvaluationReport
from .inference import SamplingSettings, Segmenter
from .metrics import score, summarise_scores
from .prediction import output_path
from .preprocess import check_label_map
from .prompted import DEFAULT_PROMPT_BATCH, segment_prompts
from .prompts import Box, inscribed_ellipse

BOXES_HEADER = ["image", "x0", "y0", "x1", "y1"]
MAX_MASK_BOXES = 50  # boxes per image that --boxes-from-masks makes at most (the largest components)
MIN_COMPONENT_PIXELS = 5  # smaller mask components make no box (specks of a noisy mask)


def read_boxes_csv(path: str | Path) -> dict[str, list[Box]]:
    """Read a boxes CSV into {image file name: boxes in file order}.

    Raises :class:`PromptError` naming the file and line of anything malformed.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> file = pathlib.Path(tempfile.mkdtemp()) / "boxes.csv"
    >>> _ = file.write_text("image,x0,y0,x1,y1\\na.png,10,20,50,60\\na.png,0,0,5,5\\n")
    >>> read_boxes_csv(file)["a.png"][0]
    Box(x0=10.0, y0=20.0, x1=50.0, y1=60.0)
    """
    path = Path(path)
    if path.is_dir():
        raise PromptError(
            f"The boxes file {path} is a folder; give the CSV file inside it (image,x0,y0,x1,y1)."
        )
    if not path.is_file():
        raise PromptError(f"The boxes file {path} does not exist.")
    try:
        with open(path, newline="", encoding="utf-8-sig") as stream:
            rows = list(csv.reader(stream))
    except (UnicodeDecodeError, csv.Error) as error:
        raise PromptError(f"{path} is not a readable CSV file ({error}).") from None
    if not rows or [cell.strip().lower() for cell in rows[0]] != BOXES_HEADER:
        found = ",".join(rows[0]) if rows else "an empty file"
        raise PromptError(f"{path}: the first line must be the header image,x0,y0,x1,y1; found {found}.")
    boxes: dict[str, list[Box]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 5:
            raise PromptError(f"{path} line {line}: expected 5 fields image,x0,y0,x1,y1, found {len(row)}.")
        name = row[0].strip()
        if not name:
            raise PromptError(f"{path} line {line}: the image name is empty.")
        try:
            values = [float(cell) for cell in row[1:]]
        except ValueError:
            raise PromptError(f"{path} line {line}: the coordinates {row[1:]} are not all numbers.") from None
        try:
            boxes.setdefault(name, []).append(Box(*values))
        except InvalidImageError as error:
            raise PromptError(f"{path} line {line}: {error}") from None
    if not boxes:
        raise PromptError(f"{path} holds a header but no boxes.")
    return boxes


def boxes_for(boxes: dict[str, list[Box]], path: Path) -> list[Box] | None:
    """The boxes of an input file: by file name, else by stem (``a`` matches ``a.png``)."""
    return boxes.get(path.name, boxes.get(file_stem(path)))


def check_box_names(boxes: dict[str, list[Box]], files: Sequence[Path]) -> None:
    """Raise :class:`PromptError` when the boxes name an image that is not among ``files``."""
    known = {p.name for p in files} | {file_stem(p) for p in files}
    unknown = sorted(set(boxes) - known)
    if unknown:
        raise PromptError(
            f"The boxes file names {len(unknown)} image(s) that are not among the inputs, "
            f"e.g. {unknown[0]!r}."
        )


def check_boxes_cover(boxes: dict[str, list[Box]], images: Sequence[Path], source: str) -> list[str]:
    """Warnings about the images ``boxes`` (read from ``source``) has no boxes for.

    :class:`PromptError` when it names none of ``images`` at all: every image would be
    predicted empty and scored 0, a wrong answer in place of an error.
    """
    missing = [path for path in images if not boxes_for(boxes, path)]
    if images and len(missing) == len(images):
        raise PromptError(
            f"The boxes file {source} names none of the {len(images)} image(s) being evaluated "
            f"(it names e.g. {next(iter(boxes))!r}; the images are named like {images[0].name!r})."
        )
    if missing:
        return [
            f"{len(missing)} of the {len(images)} images have no boxes in {source} and are scored as "
            f"predicted empty, e.g. {missing[0].name}"
        ]
    return []


def mask_boxes(mask: np.ndarray) -> tuple[list[Box], str | None]:
    """The ``--boxes-from-masks`` boxes of a 2D mask and, when components were left out, why.

    One box per 8-connected component of at least :data:`MIN_COMPONENT_PIXELS` pixels, the
    :data:`MAX_MASK_BOXES` largest of them, in raster order of their first pixel.
    """
    from scipy import ndimage

    components, count = ndimage.label(np.asarray(mask) > 0, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(components.ravel(), minlength=count + 1)[1:]
    kept = np.flatnonzero(sizes >= MIN_COMPONENT_PIXELS)
    if len(kept) > MAX_MASK_BOXES:
        kept = np.sort(kept[np.argsort(-sizes[kept], kind="stable")[:MAX_MASK_BOXES]])
    found = ndimage.find_objects(components)
    boxes = [Box(found[i][1].start, found[i][0].start, found[i][1].stop, found[i][0].stop) for i in kept]
    if len(kept) == count:
        return boxes, None
    return boxes, (
        f"the mask has {count} components; box prompts were made for {len(kept)} of them (the largest, "
        f"at most {MAX_MASK_BOXES}, of at least {MIN_COMPONENT_PIXELS} pixels)"
    )


def predict_files_with_boxes(
    segmenter: Segmenter,
    files: Sequence[Path],
    boxes: dict[str, list[Box]],
    out_dir: Path,
    settings: SamplingSettings = SamplingSettings(),  # noqa: B008 - frozen, never mutated
    *,
    label_format: str = "auto",
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    batch_size: int = DEFAULT_PROMPT_BATCH,
) -> tuple[list[Path], list[Path]]:
    """Segment each prompted 2D image into ``out_dir``: (label files written, inputs without boxes).

    Label files hold the object ids (1..n, also in PNG). Every image name in ``boxes`` must
    be among ``files`` (a typo would otherwise go unseen).
    """
    check_box_names(boxes, files)
    prompted = [(p, boxes_for(boxes, p)) for p in files]
    skipped = [p for p, found in prompted if not found]
    todo = [(p, found) for p, found in prompted if found]
    targets = [output_path(p, out_dir, label_format) for p, _ in todo]
    for (path, _), target in zip(todo, targets, strict=True):  # said before anything is segmented
        if path.is_dir():
            raise PromptError(f"{path} is a folder (a DICOM series?): box prompts take 2D image files.")
        if target.suffix.lower() == ".dcm":
            raise PromptError(
                "predict --boxes writes label maps, not DICOM SEG: give --format tiff, nifti or png "
                f"for {path.name}."
            )
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise DatasetError(f"{existing[0]} exists already; use --overwrite or another --out.")
    written: list[Path] = []
    for index, ((path, image_boxes), target) in enumerate(zip(todo, targets, strict=True)):
        if cancel is not None and cancel():
            break
        image = read_array(path)
        if image.ndim == 3 and image.shape[-1] not in (3, 4):
            raise PromptError(f"{path} is a volume; box prompts take 2D images.")
        try:
            result = segment_prompts(
                segmenter, image, image_boxes, settings, batch_size=batch_size, cancel=cancel
            )
        except InvalidImageError as error:
            raise PromptError(f"{path.name}: {error}") from None
        except Cancelled:
            break
        written.append(write_label_map(target, result.labels, binary_as_255=False))
        if progress is not None:
            progress(index + 1, len(todo))
    return written, skipped


def evaluate_pairs_with_boxes(
    segmenter: Segmenter,
    pairs: Sequence[Pair],
    boxes: dict[str, list[Box]] | None = None,
    settings: SamplingSettings = SamplingSettings(),  # noqa: B008 - frozen, never mutated
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    batch_size: int = DEFAULT_PROMPT_BATCH,
    boxes_source: str = "the boxes file",
) -> EvaluationReport:
    """Score box-prompted segmentation; ``boxes=None`` takes one box per component of each mask.

    An image without boxes is predicted empty (said in the report's warnings; boxes that
    name none of the images are a :class:`PromptError`). Each image also gets
    ``ellipse_dice``: the ellipse inscribed in each box, no model (the trivial baseline
    box prompts must beat).
    """
    num_classes = segmenter.config.num_classes
    per_image: list[dict[str, Any]] = []
    warnings = [] if boxes is None else check_boxes_cover(boxes, [p.image for p in pairs], boxes_source)
    for index, pair in enumerate(pairs):
        if cancel is not None and cancel():
            break
        image = read_array(pair.image)
        truth = check_label_map(read_mask(pair.mask), num_classes)
        if boxes is None:
            image_boxes, left_out = mask_boxes(truth)
            warnings += [] if left_out is None else [f"{pair.name}: {left_out}"]
        else:
            image_boxes = boxes_for(boxes, pair.image) or []
        if image_boxes:
            try:
                found = segment_prompts(
                    segmenter, image, image_boxes, settings, batch_size=batch_size, cancel=cancel
                )
            except Cancelled:
                break
            labels = found.labels
        else:
            labels = np.zeros(truth.shape, np.int32)
        scores = score(labels, truth, num_classes)
        ellipse = inscribed_ellipse(image_boxes, truth.shape) > 0
        scores["ellipse_dice"] = score(ellipse.astype(np.uint8), truth > 0, 2)["dice"]
        per_image.append({"name": pair.name, "objects": len(image_boxes), **scores})
        if progress is not None:
            progress(index + 1, len(pairs))
    summary = summarise_scores([{k: v for k, v in s.items() if k != "name"} for s in per_image])
    return EvaluationReport(summary, per_image, settings.to_dict(), warnings)
