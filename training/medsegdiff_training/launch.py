"""The ``medsegdiff`` entry point: a SIGTERM handler first, then everything else.

Importing torch takes a second or more; a SIGTERM arriving meanwhile would kill the
process with the default action (exit 143, no word). Installing the handler before any
import turns it into the same clean cancellation as Ctrl-C: "Interrupted." and exit 130.
"""

from __future__ import annotations

import signal
import sys

EXIT_CANCELLED = 130


def main() -> int:
    """Run the CLI (``medsegdiff_training.cli.main``) with SIGTERM handled from the first moment."""
    try:
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # raises KeyboardInterrupt
    except ValueError:  # not the main thread: nothing to install
        pass
    try:
        from .cli import main as cli_main

        return cli_main()
    except KeyboardInterrupt:  # before cli.main could handle it (during the imports)
        sys.stderr.write("Interrupted.\n")
        return EXIT_CANCELLED


if __name__ == "__main__":
    sys.exit(main())
