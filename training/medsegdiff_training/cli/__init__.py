"""The ``medsegdiff`` command line: train, finetune, predict, evaluate, models, info,
corrections, simulate-annotation.

One module per subcommand (``train.py``, ``finetune.py``, ...: its options and the
function that runs it), the options several share in ``common.py``,
``sampling_options.py`` and ``training_options.py``, what it writes in ``output.py`` and
``progress.py``; ``app.py`` holds the table of subcommands and :func:`main`.

Also runs as ``python -m medsegdiff_training`` and under ``torchrun`` (``train`` and
``finetune`` then use every process). A mistake the user can make ends in one line on
stderr and exit code 1; a cancelled run (SIGINT, SIGTERM) exits with 130.

Examples
--------
::

    medsegdiff train --images ../shared/data/ddti/images --masks ../shared/data/ddti/masks \\
        --split-csv ../shared/data/ddti/split.csv --split train --config cpu --minutes 30 \\
        --out runs/ddti --register ddti-30min
    medsegdiff evaluate --images ../shared/data/ddti/images --masks ../shared/data/ddti/masks \\
        --split-csv ../shared/data/ddti/split.csv --split test --model ddti-30min --json
"""

from .app import SUBCOMMANDS, build_parser, command_of, main

__all__ = ["SUBCOMMANDS", "build_parser", "command_of", "main"]
