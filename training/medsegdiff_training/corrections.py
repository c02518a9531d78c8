"""The corrections store: what annotators fixed, kept for fine-tuning.

The napari plugin writes one entry per export; fine-tuning reads the store as a dataset.
The store is append-only and crash-safe: an entry's folder is written under a hidden
name and renamed into place, and only then is its line appended to ``manifest.jsonl``. An
entry is complete when its folder holds its files; a damaged manifest line is reported and
its entry recovered from the folder (:mod:`.corrections_check`), and hidden partial folders
left by killed writers are removed by the next writer. The exact on-disk format is in
``docs/corrections-store.md``::

    <store>/
        manifest.jsonl                 one JSON object per line, one line per entry
        entries/
            20261124-230112-3f9a01c2/  one entry
                image.tif              the image as shown (2D, 2D + channels, or a volume)
                labels.tif             the corrected label map
                prediction.tif         the model's original label map (optional)
                entry.json             the same record as the manifest line
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .atomic import append_line, stale_partials
from .config import ModelConfig, PreprocessConfig
from .corrections_check import (
    ENTRIES,
    ENTRY_FILE,
    StoreReport,
    entry_file,
    entry_folder,
    remove_stale_partials,
    repair_store,
    scan_store,
    unreadable_entries,
)
from .data.io import read_array
from .data.writers import label_dtype
from .errors import CorrectionsError, DatasetError, InvalidImageError, InvalidMaskError
from .paths import default_corrections_root
from .prompt_records import read_box_records, record_content_problem
from .prompts import Box, CropRule

if TYPE_CHECKING:  # the dataset (and torch) only when training from the store
    from .data.dataset import SegmentationDataset

MANIFEST = "manifest.jsonl"
IMAGE_FILE, LABELS_FILE, PREDICTION_FILE = "image.tif", "labels.tif", "prediction.tif"
STORE_FORMAT = "medsegdiff-corrections"
STORE_FORMAT_VERSION = 1
_log = logging.getLogger(__name__)


@dataclass
class CorrectionEntry:
    """One exported correction: its id, its folder and its manifest record."""

    id: str
    path: Path
    manifest: dict[str, Any]

    @property
    def created(self) -> str:
        return str(self.manifest.get("created", ""))

    @property
    def fraction_changed(self) -> float | None:
        return self.manifest.get("fraction_changed")


def _layout(image: np.ndarray, labels: np.ndarray) -> tuple[str, int | None]:
    """How ``image`` relates to ``labels``: ("2d" | "volume", channel axis or None)."""
    if labels.ndim == 2:
        if image.shape == labels.shape:
            return "2d", None
        if image.ndim == 3 and image.shape[:2] == labels.shape and image.shape[2] <= 4:
            return "2d", 2
        if image.ndim == 3 and image.shape[1:] == labels.shape and image.shape[0] <= 4:
            return "2d", 0
    elif labels.ndim == 3 and image.shape == labels.shape:
        return "volume", None
    raise InvalidMaskError(
        f"The labels have shape {labels.shape} but the image has {image.shape}: the label map must "
        "cover the image pixel for pixel (a 2D image, a 2D image with up to 4 channels, or a volume "
        "of the same shape)."
    )


def _check_finite(image: np.ndarray) -> None:
    """:class:`InvalidImageError` for NaN or infinite pixels, or values beyond float32 (as training reads)."""
    if not np.issubdtype(image.dtype, np.floating):
        return
    with np.errstate(over="ignore"):
        bad = int((~np.isfinite(image.astype(np.float32, copy=False))).sum())
    if bad:
        raise InvalidImageError(
            f"The image has {bad} NaN or infinite pixels (or values beyond float32's ±3.4e38): it could not "
            "be trained on; replace or rescale them before exporting."
        )


def _manifest_record(
    entry_id: str,
    image: np.ndarray,
    labels: np.ndarray,
    has_prediction: bool,
    layout: str,
    channel_axis: int | None,
) -> dict[str, Any]:
    """The manifest line of a new entry, as far as its arrays tell (docs/corrections-store.md);
    :meth:`CorrectionsStore.add` fills in where it came from."""
    return {
        "format": STORE_FORMAT,
        "format_version": STORE_FORMAT_VERSION,
        "id": entry_id,
        "folder": f"{ENTRIES}/{entry_id}",
        "files": {
            "image": IMAGE_FILE,
            "labels": LABELS_FILE,
            "prediction": PREDICTION_FILE if has_prediction else None,
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "layout": layout,
        "channel_axis": channel_axis,
        "shape": list(image.shape),
        "labels_shape": list(labels.shape),
        "image_dtype": str(image.dtype),
        "labels_present": sorted(int(v) for v in np.unique(labels) if v != 0),
        "empty_confirmed": bool(not labels.any()),
    }


def _write_tiff(path: Path, array: np.ndarray) -> None:
    import tifffile

    # minisblack keeps every array exactly as given (no RGB guessing)
    tifffile.imwrite(path, array, photometric="minisblack", compression="zlib")


class CorrectionsStore:
    """An append-only folder of corrections; see the module docstring.

    Examples
    --------
    >>> import tempfile
    >>> store = CorrectionsStore(tempfile.mkdtemp())
    >>> image = np.random.rand(40, 40); labels = np.zeros((40, 40), np.uint8); labels[10:20, 10:20] = 1
    >>> entry = store.add(image, labels, prediction=np.zeros_like(labels), model_version="default")
    >>> len(store), entry.manifest["fraction_changed"]
    (1, 0.0625)
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_corrections_root()
        self._warned: tuple[int, str] | None = None

    def __repr__(self) -> str:
        return f"CorrectionsStore({str(self.root)!r})"

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    # -- writing ---------------------------------------------------------------------

    def add(
        self,
        image: np.ndarray,
        labels: np.ndarray,
        prediction: np.ndarray | None = None,
        *,
        source_path: str | None = None,
        image_layer: str | None = None,
        labels_layer: str | None = None,
        scale: list[float] | None = None,
        translate: list[float] | None = None,
        affine: list[list[float]] | None = None,
        model_version: str | None = None,
        sampler_settings: dict | None = None,
        allow_empty: bool = False,
        extra: dict | None = None,
    ) -> CorrectionEntry:
        """Store one correction and return its entry; never overwrites an earlier one.

        ``labels`` must cover ``image`` pixel for pixel. An empty label map is refused
        unless ``allow_empty`` says the image truly shows nothing to segment.
        """
        image, labels = np.asarray(image), np.asarray(labels)
        if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool) or image.ndim not in (2, 3):
            raise InvalidImageError(
                f"A correction's image must be a 2D or 3D numeric array, got {image.dtype} {image.shape}."
            )
        _check_finite(image)  # refused now, not when a fine-tune reads it
        if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
            raise InvalidMaskError(f"A label map holds integers; got dtype {labels.dtype}.")
        if labels.size and labels.min() < 0:
            raise InvalidMaskError("A label map holds non-negative labels; found a negative one.")
        layout, channel_axis = _layout(image, labels)
        if not labels.any() and not allow_empty:
            raise InvalidMaskError(
                "The label map is empty. If the image truly shows nothing to segment, confirm it is a "
                "true negative (allow_empty) before exporting; otherwise paint the labels first."
            )
        fraction_changed = None
        if prediction is not None:
            prediction = np.asarray(prediction)
            if prediction.shape != labels.shape:
                raise InvalidMaskError(
                    f"The prediction has shape {prediction.shape} but the labels have {labels.shape}."
                )
            fraction_changed = float(np.mean(prediction.astype(np.int64) != labels.astype(np.int64)))
        entry_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        record = _manifest_record(entry_id, image, labels, prediction is not None, layout, channel_axis)
        record.update(
            source_path=source_path,
            image_layer=image_layer,
            labels_layer=labels_layer,
            scale=None if scale is None else [float(s) for s in scale],
            translate=None if translate is None else [float(t) for t in translate],
            affine=None if affine is None else np.asarray(affine, dtype=float).tolist(),
            model_version=model_version,
            sampler_settings=sampler_settings,
            fraction_changed=fraction_changed,
            extra=extra or {},
        )
        try:
            line = json.dumps(record, sort_keys=True)
        except TypeError as error:
            raise CorrectionsError(f"The correction's metadata cannot be stored as JSON: {error}") from None
        if (malformed := record_content_problem(json.loads(line))) is not None:  # as readers will see it
            raise CorrectionsError(f"The correction's record cannot be stored: {malformed}.")
        self._write_entry(entry_id, record, image, labels, prediction)
        self._append(line)
        return CorrectionEntry(entry_id, self.root / ENTRIES / entry_id, record)

    def _write_entry(
        self,
        entry_id: str,
        record: dict[str, Any],
        image: np.ndarray,
        labels: np.ndarray,
        prediction: np.ndarray | None,
    ) -> None:

        entries = self.root / ENTRIES
        staging: Path | None = None
        try:
            entries.mkdir(parents=True, exist_ok=True)
            remove_stale_partials(stale_partials(entries))  # left by killed writers
            # the writer's pid in the name tells a later writer whether this one is gone
            staging = Path(tempfile.mkdtemp(prefix=f".{entry_id}.partial-{os.getpid()}-", dir=entries))
            _write_tiff(staging / IMAGE_FILE, image.astype(np.uint8) if image.dtype == bool else image)
            _write_tiff(staging / LABELS_FILE, labels.astype(label_dtype(labels)))
            if prediction is not None:
                _write_tiff(staging / PREDICTION_FILE, prediction.astype(label_dtype(prediction)))
            (staging / ENTRY_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))
            os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide the entry from other users
            os.rename(staging, entries / entry_id)
        except OSError as error:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            raise CorrectionsError(
                f"Could not write the correction into {self.root} ({error.strerror or error}); "
                "free some disk space or choose another corrections folder. Earlier corrections are unharmed."
            ) from None

    def _append(self, line: str) -> None:
        try:
            append_line(self.manifest_path, line.encode())
        except OSError as error:
            raise CorrectionsError(
                f"Could not record the correction in {self.manifest_path} ({error.strerror or error}); "
                "free some disk space and export again. Earlier corrections are unharmed."
            ) from None

    # -- reading ---------------------------------------------------------------------

    def entries(self) -> list[CorrectionEntry]:
        """Complete entries, oldest first; damage is logged as warnings, never a silent loss.

        A damaged manifest line is reported with its line number and the entry it named is
        recovered from its folder when that folder is complete (see :meth:`check`).
        """
        report = self.check()
        if report.problems:
            key = (len(report.problems), report.problems[0])
            if key != self._warned:  # once per state of the damage, not on every read
                self._warned = key
                _log.warning("%s", self.damage_message(report))
        return self._entries_of(report)

    def _entries_of(self, report: StoreReport) -> list[CorrectionEntry]:
        return [
            CorrectionEntry(record["id"], self.root / ENTRIES / record["id"], record)
            for record in report.records
        ]

    def damage_message(self, report: StoreReport | None = None) -> str | None:
        """One line naming the store's damage and what to run; ``None`` when it is sound."""
        report = report if report is not None else self.check()
        if not report.problems:
            return None
        shown = report.problems[:10]
        more = len(report.problems) - len(shown)
        return (
            f"The corrections store {self.root} is damaged (run 'medsegdiff corrections repair'): "
            + "; ".join(shown)
            + (f"; and {more} more" if more else "")
        )

    def check(self, verify_files: bool = False) -> StoreReport:
        """Every usable entry and every problem of the store, without changing anything.

        ``verify_files`` also decodes every entry's TIFFs (slow): an unreadable one (a
        truncated ``image.tif``) is then a problem, its entry not counted as usable.
        """
        report = scan_store(self.root, self.manifest_path)
        if verify_files:
            unreadable_entries(self.root, report)
        return report

    def repair(self) -> tuple[StoreReport, Path | None]:
        """Rebuild the manifest from the entry folders; returns (report, the damaged original kept aside)."""
        return repair_store(self.root, self.manifest_path)

    def __len__(self) -> int:
        return len(self.entries())

    def read(self, entry: CorrectionEntry) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The entry's image, labels and (when stored) the model's prediction."""
        folder = entry_folder(self.root, entry.id)  # never a folder outside entries/
        try:
            image = read_array(entry_file(folder, IMAGE_FILE))
            labels = read_array(entry_file(folder, LABELS_FILE))
            prediction_path = entry_file(folder, PREDICTION_FILE)
            prediction = read_array(prediction_path) if prediction_path.is_file() else None
        except (DatasetError, CorrectionsError) as error:
            raise CorrectionsError(
                f"The correction {entry.id} in {self.root} cannot be read: {error}"
            ) from None
        return image, labels, prediction

    def training_pairs(
        self, entries: list[CorrectionEntry] | None = None
    ) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """2D (name, image, labels) pairs: volumes give their labelled slices (axis 0)."""
        pairs = []
        for entry in self.entries() if entries is None else entries:
            image, labels, _ = self.read(entry)
            layout = entry.manifest.get("layout", "2d")
            if layout == "volume":
                empty_confirmed = bool(entry.manifest.get("empty_confirmed"))
                for z in range(labels.shape[0]):
                    if labels[z].any() or empty_confirmed:
                        pairs.append((f"{entry.id}[{z}]", image[z], labels[z]))
            else:
                if entry.manifest.get("channel_axis") == 0:
                    image = np.moveaxis(image, 0, -1)
                pairs.append((entry.id, image, labels))
        return pairs

    def as_dataset(
        self,
        model_config: ModelConfig,
        preprocess: PreprocessConfig | None = None,
        entries: list[CorrectionEntry] | None = None,
        crop_rule: CropRule | None = None,
    ) -> SegmentationDataset:
        """The store (or some of its ``entries``) as a training dataset at the model's size.

        With ``crop_rule``, a correction whose manifest line records the prompts it was
        segmented from (``extra.prompts.boxes``) gives one sample per recorded box: the
        crop that rule cuts around it, as a box prompt is cut (a volume's boxes go to their
        slice). Corrections without prompts are used whole.
        """
        from .data.dataset import SegmentationDataset

        preprocess = preprocess or PreprocessConfig()
        chosen = self.entries() if entries is None else entries
        boxes = prompt_boxes(chosen) if crop_rule is not None else {}
        pairs = self.training_pairs(chosen)
        for name in sorted(set(boxes) - {pair[0] for pair in pairs}):  # said, never dropped silently
            _log.warning("The correction %s records prompt boxes for a slice without labels: not used", name)
        samples = []
        for name, image, labels in pairs:
            try:
                samples += _samples(name, image, labels, boxes.get(name), crop_rule, model_config, preprocess)
            except (InvalidImageError, InvalidMaskError) as error:  # which correction, not only what
                raise type(error)(f"The correction {name} in {self.root}: {error}") from None
        return SegmentationDataset(samples)


def _samples(
    name: str,
    image: np.ndarray,
    labels: np.ndarray,
    boxes: list[Box] | None,
    crop_rule: CropRule | None,
    model_config: ModelConfig,
    preprocess: PreprocessConfig,
) -> list[Any]:
    """One training pair's samples: the whole pair, or one crop per recorded box."""
    from .data.dataset import whole_sample
    from .data.roi_crops import crop_sample
    from .preprocess import as_channels_first, check_label_map

    if crop_rule is None or not boxes:
        return [whole_sample(name, image, labels, model_config, preprocess)]
    array = as_channels_first(image, model_config.image_channels)
    label_map = check_label_map(labels, model_config.num_classes, image_shape=array.shape[-2:])
    return [
        crop_sample(
            f"{name}:box{number}", array, label_map, crop_rule.window(box), model_config, preprocess, box=box
        )
        for number, box in enumerate(boxes, start=1)
    ]


def prompt_boxes(entries: list[CorrectionEntry]) -> dict[str, list[Box]]:
    """The prompt boxes each correction records, by training-pair name (``id``, or ``id[z]`` per slice).

    Boxes are ``extra.prompts.boxes`` of the manifest line: ``{"slice", "box": [x0, y0, x1, y1]}``
    in image pixels; a 2D entry takes all of its boxes, a volume's go to their slice.
    """
    found: dict[str, list[Box]] = {}
    for entry in entries:
        volume = entry.manifest.get("layout", "2d") == "volume"
        for slice_index, box in read_box_records(entry.manifest):  # the store's entries are checked
            found.setdefault(f"{entry.id}[{slice_index}]" if volume else entry.id, []).append(box)
    return found
