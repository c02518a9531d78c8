"""Issue 28, class 2: the registry never changes what runs without a word.

A damaged ``registry.json``, a selected version whose folder is gone, a version folder
without ``version.json`` and the selection of a broken version are each said: what is wrong
and what is used instead (one warning line in the CLI, a message the plugin shows).
"""

from __future__ import annotations

import shutil

import pytest

from medsegdiff_training.errors import RegistryError
from medsegdiff_training.registry import ModelRegistry

SAMPLING = ("--steps", "1", "--ensemble", "1", "--device", "cpu")


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("medsegdiff: warning: ")]


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"selected": 5}', b"\xff\xfe", b""])
def test_a_damaged_registry_file_is_said_with_what_is_used_instead(content, registry, run_cli):
    registry.select("good")
    (registry.root / "registry.json").write_bytes(content)
    listing = run_cli("models", "list", "--registry", registry.root)
    assert listing.code == 0
    (warning,) = _warnings(listing.err)
    assert "registry.json" in warning and "'default'" in warning and "models select" in warning
    assert ModelRegistry(registry.root).selection_warning() == warning.removeprefix("medsegdiff: warning: ")


def test_predict_says_which_model_it_runs_when_the_selection_is_damaged(
    registry, run_cli, image_file, tmp_path
):
    registry.select("good")
    (registry.root / "registry.json").write_text("{torn")
    outcome = run_cli(
        "predict", image_file, "--out", tmp_path / "out", "--registry", registry.root, *SAMPLING
    )
    assert outcome.code == 0, outcome.err
    (warning,) = _warnings(outcome.err)
    assert "'default'" in warning and "Segmenting 1 file(s) with default" in outcome.err


def test_a_selected_version_whose_folder_is_gone_is_said(registry, run_cli):
    registry.select("good")
    shutil.rmtree(registry.root / "good")
    for command in (("models", "list"), ("models", "show"), ("info",)):
        outcome = run_cli(*command, "--registry", registry.root)
        assert outcome.code == 0, outcome.err
        (warning,) = _warnings(outcome.err)
        assert "'good'" in warning and "'default'" in warning and "gone" in warning


def test_a_version_folder_without_its_record_is_listed_as_broken(
    registry, run_cli, make_checkpoint, tmp_path
):
    # a checkpoint copied into the registry by hand: it used to vanish from every listing
    shutil.copytree(make_checkpoint(tmp_path / "by-hand"), registry.root / "by-hand")
    listing = run_cli("models", "list", "--registry", registry.root)
    lines = {line[2:].split()[0]: line for line in listing.out.splitlines() if line.strip()}
    assert "BROKEN" in lines["by-hand"] and "version.json" in lines["by-hand"]
    assert "BROKEN" not in lines["good"]
    assert run_cli("models", "delete", "by-hand", "--registry", registry.root).code == 0
    assert not (registry.root / "by-hand").exists()


def test_a_broken_version_cannot_be_selected(registry, run_cli):
    (registry.root / "good" / "config.json").write_text("[]")
    line = run_cli("models", "select", "good", "--registry", registry.root).one_line_error()
    assert "'good'" in line and "broken" in line.lower()
    assert ModelRegistry(registry.root).selected() == "default"  # the selection is unchanged
    with pytest.raises(RegistryError, match="broken"):
        registry.select("good")
