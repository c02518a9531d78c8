"""Named exceptions for mistakes a user can make.

Every error a user can cause is raised as a subclass of :class:`MedSegDiffError` with a
message that says what was wrong and what to do. The GUI shows the message as a napari
notification, the CLI as one line and a non-zero exit.
"""

from __future__ import annotations

# The CLI's exit codes: done, a user's mistake, cancelled (SIGINT / SIGTERM).
EXIT_OK, EXIT_USER_ERROR, EXIT_CANCELLED = 0, 1, 130


class MedSegDiffError(Exception):
    """Base class of every user-facing error of napari-medsegdiff."""


class InvalidImageError(MedSegDiffError, ValueError):
    """The image cannot be segmented as given (NaN, wrong shape, wrong dtype...)."""


class InvalidMaskError(MedSegDiffError, ValueError):
    """A mask or label map does not fit the image or the model."""


class CheckpointError(MedSegDiffError):
    """A checkpoint is missing, corrupt, unsafe (pickle) or does not match its config."""


class ConfigError(MedSegDiffError, ValueError):
    """A model or training configuration is invalid."""


class DatasetError(MedSegDiffError):
    """A dataset folder is missing, empty or has no matching image/mask pairs."""


class RegistryError(MedSegDiffError):
    """A model version is unknown, protected, or the registry is unusable."""


class CorrectionsError(MedSegDiffError):
    """The corrections store cannot be read or written (missing folder, disk full...)."""


class DeviceError(MedSegDiffError):
    """The requested compute device is not available."""


class Cancelled(MedSegDiffError):
    """Long work stopped because the caller cancelled it."""


class PromptError(MedSegDiffError, ValueError):
    """A box or point prompt, or a file of them, is unusable (bad CSV, box outside the image...)."""
