"""napari finds the plugin's manifest (kept at the repository root) however it is installed.

The editable install reads ``napari_medsegdiff/napari.yaml``, a symbolic link to the root
``napari.yaml``; a built wheel must hold the manifest's content as a plain file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

PLUGIN_NAME = "napari-medsegdiff"
WIDGET_COMMAND = "napari-medsegdiff.segment_widget"


def _build_wheel(source: Path, destination: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(destination), str(source)],
        check=True,
    )  # fmt: skip
    (wheel,) = destination.glob("*.whl")
    return wheel


def test_editable_install_finds_the_root_manifest(repository_root: Path) -> None:
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution(PLUGIN_NAME)
    manifest.validate_imports()

    assert manifest.name == PLUGIN_NAME
    assert manifest.display_name == "MedSegDiff"
    assert WIDGET_COMMAND in {command.id for command in manifest.contributions.commands or []}
    root_manifest = PluginManifest.from_file(repository_root / "napari.yaml")
    assert manifest.contributions == root_manifest.contributions


def test_npe2_validate_command_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", PLUGIN_NAME], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_wheel_holds_the_manifest_and_npe2_reads_it(repository_root: Path, tmp_path: Path) -> None:
    wheel = _build_wheel(repository_root, tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        packed_manifest = archive.read("napari_medsegdiff/napari.yaml")
        entry_points = archive.read("napari_medsegdiff-0.1.0.dist-info/entry_points.txt").decode()
        packed = set(archive.namelist())
    assert packed_manifest == (repository_root / "napari.yaml").read_bytes()
    samples = {
        f"napari_medsegdiff/sample_data/{p.name}"
        for p in (repository_root / "napari_medsegdiff" / "sample_data").iterdir()
    }
    assert "napari_medsegdiff/sample_data/lgg_test_TCGA_CS_5393_19990606_10.png" in samples
    assert sorted(samples - packed) == []  # every sample image and its citation ship
    assert "napari-medsegdiff = napari_medsegdiff:napari.yaml" in entry_points

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
    )
    # In a fresh interpreter with the wheel's folder first on the path (and the checkout not on
    # it), npe2 must resolve the entry point to the installed copy and validate it.
    probe = textwrap.dedent(
        """
        import json, sys
        import napari_medsegdiff
        from npe2 import PluginManifest
        manifest = PluginManifest.from_distribution("napari-medsegdiff")
        manifest.validate_imports()
        print(json.dumps({
            "package": napari_medsegdiff.__file__,
            "name": manifest.name,
            "commands": [c.id for c in manifest.contributions.commands or []],
        }))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(found["package"]).is_relative_to(target)
    assert found["name"] == PLUGIN_NAME
    assert WIDGET_COMMAND in found["commands"]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to list the tracked files")
def test_training_wheel_holds_every_tracked_file(repository_root: Path, tmp_path: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "medsegdiff_training"],
        cwd=repository_root / "training",
        capture_output=True,
        text=True,
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    tracked = {line for line in listed.stdout.splitlines() if (repository_root / "training" / line).is_file()}
    wheel = _build_wheel(repository_root / "training", tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        packed = set(archive.namelist())
    assert tracked, "no tracked files under training/medsegdiff_training"
    assert sorted(tracked - packed) == []
