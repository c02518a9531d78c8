"""The pixel limit every reader checks before decoding (decompression bombs): one rule for
the image readers (:mod:`.io`) and DICOM (:mod:`.dicom`)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DatasetError

ENV_MAX_PIXELS = "MEDSEGDIFF_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's DecompressionBombError threshold (2 x MAX_IMAGE_PIXELS)


def max_pixels() -> int:
    """The largest pixel (voxel) count a reader decodes: ``$MEDSEGDIFF_MAX_PIXELS`` or the default."""
    value = os.environ.get(ENV_MAX_PIXELS, "").strip()
    if not value:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(float(value))
    except ValueError:
        limit = 0
    if limit < 1:
        raise DatasetError(f"{ENV_MAX_PIXELS}={value!r} is not a positive number of pixels.")
    return limit


def check_pixels(path: Path, shape: tuple[int, ...]) -> None:
    """Refuse a file whose declared shape holds more pixels than :func:`max_pixels`."""
    count = 1
    for size in shape:
        count *= max(int(size), 0)
    limit = max_pixels()
    if count > limit:
        raise DatasetError(
            f"{path} declares {' x '.join(str(int(s)) for s in shape)} = {count:,} pixels, more than "
            f"the limit of {limit:,} (a protection against decompression bombs); if you trust the file, "
            f"raise the limit, e.g. export {ENV_MAX_PIXELS}={count}."
        )
