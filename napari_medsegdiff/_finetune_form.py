"""The fine-tune dialog's options as a magicgui form: parent, budget, device, original data.

The dialog (:mod:`._finetune_dialog`) keeps what is not a form -- the store and the plan it
shows, the progress, Start and Cancel -- and builds its :class:`FinetuneOptions` from
:meth:`FinetuneForm.options`.
"""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, SpinBox

from medsegdiff_training.finetune_options import FinetuneOptions
from medsegdiff_training.sampling_defaults import DEVICE_CHOICES
from medsegdiff_training.train_config import DEFAULT_FINETUNE_CONFIG

from ._models import known_device_choices, model_choices, set_device_choices


class FinetuneForm(Container):
    """``parent_model``, ``steps``, ``minutes`` (0: no limit), ``device``, ``mix_original`` and the
    ``original_images`` / ``original_masks`` folders (empty: those the parent's checkpoint names)."""

    def __init__(self, parent_version: str | None = None) -> None:
        choices = model_choices()
        names = [name for _, name in choices]
        self.parent_model = ComboBox(
            label="Parent model",
            choices=choices,
            value=parent_version if parent_version in names else names[0],
        )
        self.steps = SpinBox(
            label="Steps (at most)", min=1, max=1_000_000, value=DEFAULT_FINETUNE_CONFIG.steps or 300
        )
        self.minutes = FloatSpinBox(label="Time budget", min=0, max=24 * 60, step=1.0, value=0)
        self.minutes.native.setSpecialValueText("no limit")
        self.minutes.native.setSuffix(" min")
        # offered unchecked until torch is loaded (opening a dialog must not load it on the GUI
        # thread); the fine-tune's own process refuses an unusable device with a clear message
        self.device = ComboBox(label="Device", choices=list(DEVICE_CHOICES), value="auto")
        set_device_choices(self.device, known_device_choices())
        self.mix_original = CheckBox(
            text="mix in the parent's original training data",
            value=False,
            tooltip="Half of every batch from the parent's own training images, so it does not forget "
            "them. Leave the folders empty to use the ones the parent's checkpoint names.",
        )
        self.original_images = FileEdit(label="Original images", mode="d", value="")
        self.original_masks = FileEdit(label="Original masks", mode="d", value="")
        for folder in (self.original_images, self.original_masks):
            folder.line_edit.value = ""
            folder.line_edit.native.setPlaceholderText("the folder the parent's checkpoint names")
            folder.enabled = False
        super().__init__(
            widgets=[
                self.parent_model,
                self.steps,
                self.minutes,
                self.device,
                self.mix_original,
                self.original_images,
                self.original_masks,
            ],
            labels=True,
        )
        self.margins = (0, 0, 0, 0)
        self.mix_original.changed.connect(self._mix_changed)

    def _mix_changed(self, mix: bool) -> None:
        self.original_images.enabled = self.original_masks.enabled = bool(mix)

    @staticmethod
    def _folder(field: FileEdit) -> Path | None:
        text = str(field.line_edit.value).strip()
        return Path(text) if text else None

    def options(self, store: str) -> FinetuneOptions:
        """The fine-tune the form asks for, on the corrections in ``store``."""
        mix = bool(self.mix_original.value)
        return FinetuneOptions(
            parent=str(self.parent_model.value),
            store=store,
            mix_original=mix,
            original_images=self._folder(self.original_images) if mix else None,
            original_masks=self._folder(self.original_masks) if mix else None,
        ).replace(
            steps=int(self.steps.value),
            minutes=float(self.minutes.value) or None,
            device=str(self.device.value),
        )
