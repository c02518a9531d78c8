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
