"""napari plugin for MedSegDiff: segment, correct, export and fine-tune from the viewer.

The napari side only: widgets, menu commands, readers/writers and sample data, declared in
the npe2 manifest ``napari.yaml``. The model, samplers and training live in
:mod:`medsegdiff_training`, which never imports Qt or napari.
"""

from importlib.metadata import PackageNotFoundError, version

try:  # written once, in medsegdiff_training/__init__.py; the build puts it in the metadata
    __version__ = version("napari-medsegdiff")
except PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "unknown"
