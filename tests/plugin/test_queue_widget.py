"""The MedSegDiff queue widget in a real viewer: pre-segmented images, accept, resume, fine-tune."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import synthetic_image

pytestmark = pytest.mark.gui
WAIT_MS = 60_000


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    for index in range(6):
        image = np.roll(synthetic_image(48), int(rng.integers(-8, 8)), axis=1)
        Image.fromarray(image).save(images / f"img{index}.png")
    return images


def dock_queue(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-medsegdiff", "MedSegDiff queue")
    qtbot.waitUntil(lambda: widget.model_version == "tiny", timeout=WAIT_MS)
    return viewer, widget


def wait_presegmented(qtbot, widget) -> None:
    qtbot.waitUntil(
        lambda: (
            widget.queue.current is not None and widget.presegmenter.result(widget.queue.current) is not None
        ),
        timeout=WAIT_MS,
    )


def paint_and_accept(qtbot, viewer, widget, index: int, use_key: bool) -> None:
    from napari.utils.key_bindings import coerce_keybinding

    from napari_medsegdiff._queue_widget import KEYS

    wait_presegmented(qtbot, widget)
    labels = widget.labels_layer.data
    labels[2 + index : 12 + index, 2:12] = 1  # the annotator's correction
    widget.labels_layer.refresh()
    if use_key:
        viewer.keymap[coerce_keybinding(KEYS["accept"])](viewer)
    else:
        widget.accept_button.click()


def test_a_folder_is_presegmented_accepted_with_provenance_and_resumed(
    make_napari_viewer, qtbot, tiny_model, folder, medsegdiff_home
):
    from medsegdiff_training.corrections import CorrectionsStore

    viewer, widget = dock_queue(make_napari_viewer, qtbot)
    widget.open_folder(folder)
    assert Path(widget.queue.current).name == "img0.png"
    wait_presegmented(qtbot, widget)  # the first image is segmented on opening, off the GUI thread
    first = widget.presegmenter.result(widget.queue.current)
    assert first.model_version == "tiny"
    np.testing.assert_array_equal(widget.labels_layer.data, first.result.labels)
    assert widget.labels_layer.data.shape == (48, 48) and "Image 1 of 6" in widget.where_label.text()
    for index in range(3):
        paint_and_accept(qtbot, viewer, widget, index, use_key=index == 1)
    assert widget.counts_label.text() == "accepted 3 · skipped 0 · remaining 3"
    store = CorrectionsStore(medsegdiff_home / "corrections")
    entries = store.entries()
    assert len(entries) == 3
    for position, entry in enumerate(entries, start=1):
        _, labels, prediction = store.read(entry)
        assert labels[2 + position - 1 : 12 + position - 1, 2:12].all()  # the painted change was kept
        queue = entry.manifest["extra"]["queue"]
        assert queue["position"] == position and queue["queue_id"] == widget.queue.queue_id
        assert queue["seconds"] >= 0
        assert queue["fraction_changed_from_presegmentation"] == pytest.approx(
            float(np.mean(labels != prediction))
        )
        assert queue["fraction_changed_from_presegmentation"] > 0
        assert entry.manifest["source_path"] is None or entry.manifest["model_version"] == "tiny"
    assert len(widget.plot.changed) == 3
    viewer.close()

    viewer, widget = dock_queue(make_napari_viewer, qtbot)
    widget.open_folder(folder)
    assert Path(widget.queue.current).name == "img3.png"  # resumed at the 4th
    assert "Image 4 of 6" in widget.where_label.text()
    assert widget.counts_label.text() == "accepted 3 · skipped 0 · remaining 3"


def test_skip_previous_and_the_keys(make_napari_viewer, qtbot, tiny_model, folder):
    from napari.utils.key_bindings import coerce_keybinding

    from napari_medsegdiff._queue_widget import KEYS

    viewer, widget = dock_queue(make_napari_viewer, qtbot)
    for key in KEYS.values():
        assert coerce_keybinding(key) in viewer.keymap
        assert key in " ".join(
            b.toolTip() for b in (widget.accept_button, widget.skip_button, widget.previous_button)
        )
    widget.open_folder(folder)
    paint_and_accept(qtbot, viewer, widget, 0, use_key=False)
    viewer.keymap[coerce_keybinding(KEYS["skip"])](viewer)
    assert Path(widget.queue.current).name == "img2.png"
    assert widget.counts_label.text() == "accepted 1 · skipped 1 · remaining 4"
    viewer.keymap[coerce_keybinding(KEYS["previous"])](viewer)
    assert Path(widget.queue.current).name == "img1.png"
    widget.previous()
    assert Path(widget.queue.current).name == "img0.png"
    # back on an accepted image: what was accepted is shown
    assert widget.labels_layer.data[2:12, 2:12].all()


def test_most_uncertain_first_follows_the_scores(make_napari_viewer, qtbot, tiny_model, folder):
    viewer, widget = dock_queue(make_napari_viewer, qtbot)
    widget.order_box.setCurrentIndex(widget.order_box.findData("uncertain"))
    widget.open_folder(folder)
    qtbot.waitUntil(
        lambda: all(widget.queue.score(i) is not None for i in widget.queue.items), timeout=WAIT_MS
    )
    scores = {item: widget.queue.score(item) for item in widget.queue.items}
    first = widget.queue.current
    expected = sorted(
        (item for item in widget.queue.items if item != first),
        key=lambda item: (-scores[item], widget.queue.items.index(item)),
    )
    paint_and_accept(qtbot, viewer, widget, 0, use_key=False)
    assert widget.queue.current == expected[0]
    assert f"uncertainty {scores[expected[0]]:.3f}" in widget.where_label.text()
    assert widget.queue.pending() == expected


def better_child(version: str):
    """A fine-tune's done event for ``version``, its held-out Dice above its parent's."""
    from medsegdiff_training.finetune_events import FinetuneDone

    return FinetuneDone(
        version=version, parent="tiny", path="", steps=2, validation_dice_before=0.4,
        validation_dice_after=0.6, adaptation={}, seconds=None, cpu_seconds=None,
    )  # fmt: skip


@pytest.mark.slow
def test_finetuning_every_n_accepted_makes_a_version_and_switching_resegments_the_rest(
    make_napari_viewer, qtbot, tiny_model, folder
):
    from medsegdiff_training.registry import ModelRegistry

    viewer, widget = dock_queue(make_napari_viewer, qtbot)
    widget.finetune_check.setChecked(True)
    widget.finetune_every.setValue(2)
    widget.finetune_minutes.setValue(0.1)
    widget.open_folder(folder)
    paint_and_accept(qtbot, viewer, widget, 0, use_key=False)
    assert widget.finetune is None
    paint_and_accept(qtbot, viewer, widget, 1, use_key=False)
    assert widget.finetune is not None and widget.finetune.is_running()
    # the session's request, as the fine-tune process's command line parses it back
    from medsegdiff_training.cli import build_parser
    from medsegdiff_training.finetune_options import finetune_argv, options_from_args

    options = widget.finetune.options
    assert options_from_args(build_parser().parse_args(["finetune", *finetune_argv(options)])) == options
    assert (options.parent, options.store, options.config.steps) == ("tiny", widget.store.root, None)
    assert options.config.minutes == pytest.approx(0.1)
    with qtbot.waitSignal(widget.finetune.done, timeout=240_000) as done:
        pass
    version = done.args[0].version
    versions = {v.name: v for v in ModelRegistry().versions()}
    assert versions[version].parent == "tiny"
    # two corrections: nothing held out to compare, so the queue keeps its model
    assert widget.model_version == "tiny" and "kept tiny" in widget.finetune_label.text()

    # a child that beats its parent on held-out corrections: the queue switches to it and
    # re-segments the images not yet seen, leaving the one on screen as it is
    wait_presegmented(qtbot, widget)
    on_screen = widget.queue.current
    widget.labels_layer.data[30:40, 30:40] = 1
    edited = np.array(widget.labels_layer.data)
    widget.session.finetuned(better_child(version), 2)
    assert widget.model_version == version and widget.queue.model_version == version
    upcoming = [item for item in widget.queue.pending() if item != on_screen][:2]
    qtbot.waitUntil(lambda: all(widget.presegmenter.result(i) is not None for i in upcoming), timeout=WAIT_MS)
    assert all(widget.presegmenter.result(i).model_version == version for i in upcoming)
    np.testing.assert_array_equal(widget.labels_layer.data, edited)
    assert widget.plot.dice[-1] == (2, 0.4, 0.6)
    paint_and_accept(qtbot, viewer, widget, 2, use_key=False)
    assert widget.presegmenter.result(widget.queue.current).model_version == version


def test_the_slices_of_an_opened_volume_are_a_queue(make_napari_viewer, qtbot, tiny_model, medsegdiff_home):
    from medsegdiff_training.corrections import CorrectionsStore

    viewer, widget = dock_queue(make_napari_viewer, qtbot)
    viewer.add_image(np.stack([synthetic_image(40)] * 4), name="scan")
    assert widget.volume_box.findText("scan") >= 0
    widget.open_volume("scan")
    assert widget.queue.items == ["scan[0]", "scan[1]", "scan[2]", "scan[3]"]
    paint_and_accept(qtbot, viewer, widget, 0, use_key=False)
    entry = CorrectionsStore(medsegdiff_home / "corrections").entries()[0]
    assert entry.manifest["shape"] == [40, 40] and entry.manifest["extra"]["queue"]["item"] == "scan[0]"


def test_mistakes_are_notifications(make_napari_viewer, qtbot, tiny_model, tmp_path, notifications):
    viewer, widget = dock_queue(make_napari_viewer, qtbot)
    widget.accept()
    widget.open_folder(tmp_path / "missing")
    widget.open_volume("nothing")
    messages = [message for severity, message in notifications() if severity == "error"]
    assert any("open a folder first" in m for m in messages)
    assert any("does not exist" in m for m in messages)
    assert any("no volume layer" in m for m in messages)


def test_the_model_picker_rereads_the_registry_when_opened(
    make_napari_viewer, qtbot, tiny_model, medsegdiff_home
):
    """A version made elsewhere (the main widget's fine-tune, the CLI) is offered without re-docking."""
    from medsegdiff_training.registry import ModelRegistry

    _, widget = dock_queue(make_napari_viewer, qtbot)
    listed = [widget.model_box.itemData(i) for i in range(widget.model_box.count())]
    assert "tiny-2" not in listed
    ModelRegistry().add(medsegdiff_home / "tiny-checkpoint", name="tiny-2")
    widget.model_box.showPopup()
    widget.model_box.hidePopup()
    listed = [widget.model_box.itemData(i) for i in range(widget.model_box.count())]
    assert "tiny-2" in listed and widget.model_version == "tiny"  # offered, the choice kept


def test_a_vanished_file_is_said_and_skipped_when_the_queue_reopens(
    make_napari_viewer, qtbot, tiny_model, folder, notifications
):
    viewer, widget = dock_queue(make_napari_viewer, qtbot)
    widget.open_folder(folder)
    widget.queue.skip(widget.queue.current)  # on img1 now
    (folder / "img1.png").unlink()
    widget.open_folder(folder)
    assert Path(widget.queue.current).name == "img2.png"
    warnings = [message for severity, message in notifications() if severity == "warning"]
    assert any("img1.png" in m and "gone" in m for m in warnings), notifications()


# A script that closes the viewer while the queue is pre-segmenting, then ends, as a user's
# script (or napari quitting) does: the job must not outlive its widget and abort the process.
CLOSE_MID_PRESEGMENTATION = """
import sys, time
import napari
from qtpy.QtWidgets import QApplication
viewer = napari.Viewer(show=False)
_, widget = viewer.window.add_plugin_dock_widget("napari-medsegdiff", "MedSegDiff queue")
app = QApplication.instance()
while widget.model_version != "slow":
    app.processEvents(); time.sleep(0.01)
widget.open_folder(sys.argv[1])
while not widget.presegmenter.is_busy():
    app.processEvents(); time.sleep(0.01)
viewer.close()
print("closed while busy", flush=True)
"""


def test_closing_the_viewer_mid_presegmentation_does_not_abort_the_process(medsegdiff_home, folder):
    import os
    import subprocess
    import sys

    from medsegdiff_training.checkpoint import save_checkpoint
    from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
    from medsegdiff_training.model import MedSegDiffUNet
    from medsegdiff_training.registry import ModelRegistry

    # the 96x96 'cpu' network: a job of seconds, so the viewer surely closes in the middle of one
    model = save_checkpoint(
        medsegdiff_home / "slow", MedSegDiffUNet(named_config("cpu")), DiffusionConfig(), PreprocessConfig()
    )
    ModelRegistry().add(model, name="slow")
    ModelRegistry().select("slow")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", CLOSE_MID_PRESEGMENTATION, str(folder)],
        capture_output=True,
        env=environment,
        timeout=600,
        check=False,
    )
    err = done.stderr.decode(errors="replace")
    assert b"closed while busy" in done.stdout, err
    assert done.returncode == 0, err  # was -6 (SIGABRT): "WorkerBaseSignals has been deleted"
    assert "has been deleted" not in err and "Traceback" not in err, err
