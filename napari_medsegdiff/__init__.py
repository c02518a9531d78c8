"""napari plugin for MedSegDiff: segment, correct, export and fine-tune from the viewer.

The napari side only: widgets, menu commands, readers/writers and sample data, declared in
the npe2 manifest ``napari.yaml``. The model, samplers and training live in
:mod:`medsegdiff_training`, which never imports Qt or napari.
"""

__version__ = "0.1.0"
