"""The notification text for an error raised while working for the annotator.

The segmentation widget, the queue's background pre-segmenter and anything else that shows
an error caught from the core words it here, once.
"""

from __future__ import annotations


def user_message(error: BaseException) -> str:
    """One line for the annotator: a user error's own message, otherwise its type and text.

    A GPU out of memory says what to do about it.
    """
    text = str(error) or type(error).__name__
    if "out of memory" in text.lower():
        return (
            "The GPU ran out of memory. Use fewer ensemble members, or choose 'cpu' as the device. "
            f"({text.splitlines()[0]})"
        )
    from medsegdiff_training.errors import MedSegDiffError

    return text if isinstance(error, MedSegDiffError) else f"{type(error).__name__}: {text}"
