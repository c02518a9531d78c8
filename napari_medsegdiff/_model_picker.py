"""The widget's Model row: which model segments what, and what each one's Dice was measured on.

The first choice, *automatic*, uses the registry's two roles: the model selected for whole
images (``medsegdiff models select NAME``) when the image is segmented whole, and the one for
box prompts (``--for-boxes``, else the shipped ``general`` model when there is one) when
boxes or points are given. Any other choice uses that one version for both. The line under
the picker names the models in use and gives each one's score with what it was measured on
(``Dice 0.882 on 30 held-out DDTI training images``), so that numbers read side by side can be
compared. Reading the registry here touches its JSON files only (no torch).
"""

from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QComboBox, QLabel, QVBoxLayout, QWidget

from ._models import AUTOMATIC, UNTRAINED, automatic_label, automatic_meaning, score_lines


class ModelPicker(QWidget):
    """A combo box of versions (``automatic`` first) and a line about the models in use."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.box = QComboBox()
        self.box.addItem("reading the model registry…", None)
        # long version names never widen the dock; the line below and the tooltips say it all
        self.box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.box.setMinimumContentsLength(12)
        self.details = QLabel()
        self.details.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.box)
        layout.addWidget(self.details)
        self.roles: tuple[str, str] = ("", "")
        self._scores: dict[str, tuple[str, str]] = {}
        self.box.currentIndexChanged.connect(self._describe)
        self.box.currentIndexChanged.connect(lambda *_: self.changed.emit())

    def fill(self, choices: list[tuple[str, str]], roles: tuple[str, str], keep: str | None = None) -> None:
        """Offer ``choices`` ((label, version)) after *automatic* (``roles``: the whole-image and
        the box model); keep ``keep`` chosen when it is still offered, else *automatic*."""
        names = [name for _, name in choices]
        self.roles = roles
        self._scores = score_lines(sorted({*names, *roles} - {UNTRAINED}))
        self.box.blockSignals(True)
        self.box.clear()
        if names != [UNTRAINED]:  # with no trained model at all there is nothing to choose between
            self.box.addItem(automatic_label(*roles), AUTOMATIC)
            self.box.setItemData(0, automatic_meaning(*roles), Qt.ItemDataRole.ToolTipRole)
        for label, name in choices:
            self.box.addItem(label, name)
            self.box.setItemData(
                self.box.count() - 1, self._scores.get(name, ("", ""))[1], Qt.ItemDataRole.ToolTipRole
            )
        index = self.box.findData(keep) if keep else -1
        self.box.setCurrentIndex(max(index, 0))
        self.box.blockSignals(False)
        self._describe()

    def chosen(self) -> str | None:
        """The picker's choice: a version name, ``automatic``, or None while it is being filled."""
        data = self.box.currentData()
        return None if data is None else str(data)

    def whole_image_version(self) -> str:
        """The version a whole-image run uses."""
        chosen = self.chosen()
        if chosen in (AUTOMATIC, None):
            return self.roles[0] or UNTRAINED
        return chosen

    def box_version(self) -> str:
        """The version a run with box or point prompts uses."""
        chosen = self.chosen()
        if chosen in (AUTOMATIC, None):
            return self.roles[1] or UNTRAINED
        return chosen

    def _score(self, name: str) -> str:
        label = self._scores.get(name, ("", ""))[0]
        return f"{name} ({label})" if label else name

    def _describe(self, *_: object) -> None:
        chosen = self.chosen()
        if chosen is None:
            self.details.setText("")
            return
        whole, boxes = self.whole_image_version(), self.box_version()
        if chosen == UNTRAINED:
            text = "An untrained model: its masks are noise (for trying the tool only)."
        elif whole == boxes:
            text = f"Whole images and boxes: {self._score(whole)}."
        else:
            text = f"Whole images: {self._score(whole)}.\nBoxes and points: {self._score(boxes)}."
        self.details.setText(text)
        self.details.setToolTip(
            "\n".join(self._scores[name][1] for name in dict.fromkeys((whole, boxes)) if name in self._scores)
        )
