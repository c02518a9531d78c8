"""What a correction records about the prompts it was segmented from: one format, checked.

A correction exported from a box- or point-prompted run keeps its prompts in the ``extra``
of its manifest line (``docs/corrections-store.md``)::

    "extra": {"prompts": {
        "prompts": [{"slice": z, "box": [x0, y0, x1, y1]} or {"slice": z, "point": [x, y]}, ...],
        "boxes": [{"slice": z, "box": [x0, y0, x1, y1]}, ...],   # the boxes segmented
        "crop_rule": {...}, "labels": "objects" or "classes"}}

:func:`box_record` is the one writer of a box (``PromptedSegmentation.prompts_record`` and
the plugin); :func:`read_box_records` the one reader (fine-tuning's crops);
:func:`record_content_problem` the one check (``CorrectionsStore.add``, ``corrections check``
and every read of the store, which leaves a malformed entry out and says so).
"""

from __future__ import annotations

import math
from typing import Any

from .errors import InvalidImageError
from .prompts import Box

LABEL_MEANINGS = ("objects", "classes")


def box_record(box: Box, slice_index: int = 0) -> dict[str, Any]:
    """A box as a correction records it: ``{"slice": z, "box": [x0, y0, x1, y1]}``.

    Examples
    --------
    >>> box_record(Box(10, 20, 50, 60))
    {'slice': 0, 'box': [10.0, 20.0, 50.0, 60.0]}
    """
    return {"slice": int(slice_index), "box": box.to_list()}


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _numbers(value: Any, count: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == count
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "an object", list: "a list", str: "a string"}
    return names.get(type(value), type(value).__name__)


def _box_problem(item: Any, where: str, slices: int | None) -> str | None:
    if not isinstance(item, dict):
        return f'{where} is {_kind(item)}, not an object {{"slice", "box"}}'
    if not _whole(item.get("slice")) or item["slice"] < 0:
        return f"{where} has no whole slice number (slice = {item.get('slice')!r:.40})"
    if slices is not None and item["slice"] >= slices:
        return f"{where} names slice {item['slice']}, but the volume has {slices} slices"
    if "point" in item and "box" not in item:
        return None if _numbers(item["point"], 2) else f"{where}: the point is not two finite numbers"
    if not _numbers(item.get("box"), 4):
        return f"{where}: the box is not four finite numbers [x0, y0, x1, y1]"
    try:
        Box(*item["box"])
    except InvalidImageError as error:
        return f"{where}: {error}"
    return None


def _prompts_problem(prompts: Any, slices: int | None) -> str | None:
    if not isinstance(prompts, dict):
        return f"extra.prompts is {_kind(prompts)}, not an object"
    for key in ("prompts", "boxes"):
        items = prompts.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            return f"extra.prompts.{key} is {_kind(items)}, not a list"
        for number, item in enumerate(items):
            problem = _box_problem(item, f"extra.prompts.{key}[{number}]", slices)
            if problem is not None:
                return problem
    if prompts.get("labels") not in (None, *LABEL_MEANINGS):
        return f"extra.prompts.labels is {prompts.get('labels')!r:.40}, not 'objects' or 'classes'"
    if not isinstance(prompts.get("crop_rule", {}), (dict, type(None))):
        return f"extra.prompts.crop_rule is {_kind(prompts['crop_rule'])}, not an object"
    return None


def record_content_problem(record: dict[str, Any]) -> str | None:
    """What is malformed in a correction record's ``extra`` (its prompts) or ``labels_present``.

    ``None`` when nothing is. A volume's boxes must name one of its slices (from
    ``labels_shape``).

    Examples
    --------
    >>> record_content_problem({"extra": {"prompts": [[0, 0, 5, 5]]}})
    'extra.prompts is a list, not an object'
    >>> record_content_problem({"labels_present": [1, 2], "extra": {}}) is None
    True
    """
    present = record.get("labels_present", [])
    if not isinstance(present, list) or not all(_whole(v) and v >= 0 for v in present):
        return f"labels_present is {present!r:.60}, not a list of whole labels"
    extra = record.get("extra")
    if extra is None:
        return None
    if not isinstance(extra, dict):
        return f"extra is {_kind(extra)}, not an object"
    if extra.get("prompts") is None:
        return None
    shape = record.get("labels_shape")
    volume = record.get("layout") == "volume" and isinstance(shape, list) and shape and _whole(shape[0])
    return _prompts_problem(extra["prompts"], int(shape[0]) if volume and shape else None)


def read_box_records(record: dict[str, Any]) -> list[tuple[int, Box]]:
    """(slice, box) of every box a correction record's prompts hold (checked records only)."""
    prompts = (record.get("extra") or {}).get("prompts") or {}
    return [
        (int(item["slice"]), Box(*(float(v) for v in item["box"]))) for item in prompts.get("boxes") or []
    ]
