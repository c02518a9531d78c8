"""The training core runs on a GPU node with no display: importing it never pulls in Qt or napari."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

FORBIDDEN = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "vispy", "superqt")


def test_importing_every_training_module_imports_no_gui_module() -> None:
    # A fresh interpreter: this test session has napari loaded already.
    probe = textwrap.dedent(
        f"""
        import importlib, json, pkgutil, sys
        import medsegdiff_training
        imported = ["medsegdiff_training"]
        for module in pkgutil.walk_packages(medsegdiff_training.__path__, "medsegdiff_training."):
            if module.name.endswith("__main__"):
                continue  # running it would start the CLI
            importlib.import_module(module.name)
            imported.append(module.name)
        forbidden = {FORBIDDEN!r}
        leaked = sorted(
            name for name in sys.modules if name.split(".")[0] in forbidden
        )
        print(json.dumps({{"imported": imported, "leaked": leaked}}))
        """
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "medsegdiff_training.cli" in report["imported"]
    assert report["leaked"] == [], f"importing medsegdiff_training imported {report['leaked']}"


def test_listing_models_devices_and_corrections_imports_no_torch(tmp_path) -> None:
    """What a GUI shows on opening (versions, selection, devices, store count, fine-tune plan): no torch."""
    probe = textwrap.dedent(
        f"""
        import json, sys
        from medsegdiff_training.adaptation import plan_finetune
        from medsegdiff_training.corrections import CorrectionsStore
        from medsegdiff_training.device import DEVICE_CHOICES
        from medsegdiff_training.registry import ModelRegistry
        registry = ModelRegistry({str(tmp_path / "models")!r})
        listed = [version.name for version in registry.versions()]
        report = {{
            "versions": listed,
            "selected": registry.selected(),
            "devices": list(DEVICE_CHOICES),
            "corrections": len(CorrectionsStore({str(tmp_path / "store")!r})),
            "plan": plan_finetune("default", {str(tmp_path / "store")!r}, registry=registry).describe(),
            "torch": "torch" in sys.modules,
        }}
        print(json.dumps(report))
        """
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["versions"][:2] == ["default", "drishti-disc-cup"] and report["selected"] == "default"
    assert report["devices"] == ["auto", "cuda", "mps", "cpu"] and report["corrections"] == 0
    assert report["plan"] == "binary, grey, as the parent"  # the fine-tune dialog's line
    assert report["torch"] is False
