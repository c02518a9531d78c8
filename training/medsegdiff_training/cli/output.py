"""What the ``medsegdiff`` command writes: result lines, notes, encodings, warnings, library noise.

- :func:`out` writes a result line on stdout, :func:`note` a line for the user on stderr.

- stdout writes file names as the bytes they are (``surrogateescape``), so a name that is
  not UTF-8 prints instead of crashing after the work is done; stderr never fails on one.
- Warnings of the training core (``logging`` under ``medsegdiff_training``) are one line
  each on stderr: ``medsegdiff: warning: ...``.
- Log lines and Python warnings of the file readers (nibabel, tifffile, Pillow) are
  silenced: what matters from them arrives as the command's own one-line error.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

PROG = "medsegdiff"
LIBRARY_LOGGERS = ("nibabel", "nibabel.global", "tifffile", "PIL")
_MARK = "_medsegdiff_cli_handler"


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{PROG}: warning: " + " ".join(record.getMessage().split())


def _stream_errors() -> None:
    for stream, errors in ((sys.stdout, "surrogateescape"), (sys.stderr, "backslashreplace")):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors=errors)
            except (ValueError, OSError):  # a stream that cannot change (already written, closed)
                pass


def _core_warnings_to_stderr() -> None:
    logger = logging.getLogger("medsegdiff_training")
    for handler in list(logger.handlers):
        if getattr(handler, _MARK, False):
            logger.removeHandler(handler)  # one handler, on today's stderr (tests swap it)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    handler.setLevel(logging.WARNING)
    setattr(handler, _MARK, True)
    logger.addHandler(handler)
    logger.propagate = False


@contextmanager
def command_output() -> Iterator[None]:
    """Set up stdout, stderr and logging for one command; Python warnings are restored after."""
    _stream_errors()
    _core_warnings_to_stderr()
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"(nibabel|tifffile|PIL)(\..*)?$")
        yield


def out(line: str = "") -> None:
    """One result line on stdout, flushed (a caller reading it as it comes sees it at once)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def note(line: str) -> None:
    """One line for the user on stderr (stdout stays clean for results and ``--json``)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def number(value: float | None, digits: int = 3) -> str:
    """A score for a table: ``digits`` decimals, or ``n/a`` when there is none."""
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "n/a"
