"""The viewer process's CPU share: threads for its sampling workers and its fine-tune processes.

The rules are the core's (:mod:`medsegdiff_training.threads`); this module only remembers
which fine-tune processes this viewer started and the threads it gave each, because the
sampling workers (Segment, the queue's pre-segmentation) must leave those cores alone while
they run. Fine-tunes start and end on the GUI thread; workers ask from their own threads.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_finetunes: dict[int, int] = {}  # id(fine-tune process object) -> its threads


def start_finetune(key: object) -> dict[str, str]:
    """Give a fine-tune process started now its share; returns the variables for its environment.

    The share is the fine-tune's part of what this process may use (measured, or
    ``$MEDSEGDIFF_THREADS`` when the user set it) beside the sampling workers.
    """
    from medsegdiff_training.threads import CpuLoad, choose_threads, finetune_environment, split_for_finetune

    ours = choose_threads("auto")
    threads = split_for_finetune(ours.load or CpuLoad(float(ours.threads))).finetune
    with _lock:
        _finetunes[id(key)] = threads
    return finetune_environment(threads)


def end_finetune(key: object) -> None:
    """The fine-tune process of ``key`` has ended (or never started): its cores are free."""
    with _lock:
        _finetunes.pop(id(key), None)


def finetune_threads() -> int:
    """Threads held by this viewer's running fine-tune processes."""
    with _lock:
        return sum(_finetunes.values())


def use_sampling_threads() -> int:
    """Set torch's threads for the calling worker thread, beside any running fine-tune; returns them."""
    from medsegdiff_training.threads import apply_threads, choose_threads

    return apply_threads(choose_threads("auto", reserved=finetune_threads())).threads
