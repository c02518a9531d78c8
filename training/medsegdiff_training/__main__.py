"""``python -m medsegdiff_training`` (and ``torchrun -m medsegdiff_training``): the CLI."""

import sys

from .launch import main

sys.exit(main())
