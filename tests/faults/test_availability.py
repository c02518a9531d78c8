"""Class 1: one broken registry version never takes the others down."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medsegdiff_training.registry import ModelRegistry

SAMPLING = ("--steps", "1", "--ensemble", "1", "--device", "cpu")
DEEP = "[" * 50_000 + "]" * 50_000

BROKEN_RECORDS = {
    "record-list": "[1, 2]",
    "record-null": "null",
    "record-text": '"a version"',
    "metrics-list": '{"metrics": [0.9]}',
    "parent-number": '{"parent": 5}',
    "created-object": '{"created": {"when": "now"}}',
    "record-deep": '{"metrics": {"a": ' + DEEP + "}}",
    "record-bad-utf8": b'{"description": "\xff\xfe"}',
    "record-empty": "",
}

BROKEN_CONFIGS = {
    "config-list": "[]",
    "config-size-text": {"image_size": "big"},
    "config-groups-zero": {"groups": 0},
    "config-deep": None,  # written raw below
}


def _break_version(registry: ModelRegistry, tmp_path: Path, name: str, content, make_checkpoint) -> None:
    registry.add(make_checkpoint(tmp_path / f"ckpt-{name}"), name=name)
    folder = registry.root / name
    if name in BROKEN_RECORDS:
        (folder / "version.json").write_bytes(content if isinstance(content, bytes) else content.encode())
        return
    config = json.loads((folder / "config.json").read_text())
    if content == "[]":
        (folder / "config.json").write_text("[]")
    elif content is None:
        (folder / "config.json").write_text('{"format": "medsegdiff-checkpoint", "model": ' + DEEP + "}")
    else:
        config["model"].update(content)
        (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("name", [*BROKEN_RECORDS, *BROKEN_CONFIGS])
def test_a_broken_version_is_listed_as_broken_and_the_others_still_work(
    name, registry, tmp_path, run_cli, make_checkpoint
):
    _break_version(registry, tmp_path, name, {**BROKEN_RECORDS, **BROKEN_CONFIGS}[name], make_checkpoint)
    listing = run_cli("models", "list", "--registry", registry.root)
    assert listing.code == 0 and "Traceback" not in listing.err, listing.err
    lines = {line[2:].split()[0]: line for line in listing.out.splitlines() if line.strip()}
    assert "BROKEN" in lines[name] and "BROKEN" not in lines["good"]
    as_json = run_cli("models", "list", "--json", "--registry", registry.root)
    versions = {v["name"]: v for v in json.loads(as_json.out)["versions"]}
    assert versions[name]["broken"] and versions["good"]["broken"] is None
    info = run_cli("info", "--registry", registry.root)
    assert info.code == 0 and "good" in info.out, info.err
    shown = run_cli("models", "show", "good", "--registry", registry.root)
    assert shown.code == 0, shown.err
    refused = run_cli("info", "--model", name, "--registry", registry.root)
    assert "broken" in refused.one_line_error()


@pytest.mark.parametrize("name", ["record-list", "config-size-text"])
def test_predict_and_evaluate_with_other_versions_work_beside_a_broken_one(
    name, registry, tmp_path, run_cli, image_file, make_checkpoint
):
    _break_version(registry, tmp_path, name, {**BROKEN_RECORDS, **BROKEN_CONFIGS}[name], make_checkpoint)
    for model in ("good", "default"):
        done = run_cli(
            "predict", image_file, "--out", tmp_path / f"out-{model}", "--model", model,
            "--registry", registry.root, *SAMPLING,
        )  # fmt: skip
        assert done.code == 0 and (tmp_path / f"out-{model}" / "square.png").is_file(), done.err
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "square.png").write_bytes(image_file.read_bytes())
    scored = run_cli(
        "evaluate", "--images", image_file.parent, "--masks", masks, "--model", "good",
        "--registry", registry.root, "--json", *SAMPLING,
    )  # fmt: skip
    assert scored.code == 0 and json.loads(scored.out)["images"] == 1, scored.err
    refused = run_cli(
        "predict", image_file, "--out", tmp_path / "o", "--model", name, "--registry", registry.root
    )
    assert "broken" in refused.one_line_error()


def test_the_plugins_model_list_skips_a_broken_version(tmp_path, monkeypatch, make_checkpoint):
    from napari_medsegdiff._models import model_choices

    monkeypatch.setenv("MEDSEGDIFF_HOME", str(tmp_path))  # the plugin's registry: tmp_path / "models"
    home_registry = ModelRegistry(tmp_path / "models")
    home_registry.add(make_checkpoint(tmp_path / "c1"), name="fine")
    home_registry.add(make_checkpoint(tmp_path / "c2"), name="damaged")
    (home_registry.root / "damaged" / "version.json").write_text("[]")
    (home_registry.root / "registry.json").write_text('{"selected": ["not", "a", "name"]}')
    names = [name for _, name in model_choices()]
    assert "fine" in names and "damaged" not in names and names[0] == "default"


def test_the_registry_folder_deleted_while_running_leaves_the_shipped_models(
    tmp_path, monkeypatch, make_checkpoint
):
    import shutil

    from napari_medsegdiff._models import model_choices

    monkeypatch.setenv("MEDSEGDIFF_HOME", str(tmp_path))
    registry = ModelRegistry(tmp_path / "models")
    registry.add(make_checkpoint(tmp_path / "c1"), name="fine")
    assert "fine" in [name for _, name in model_choices()]
    shutil.rmtree(tmp_path / "models")
    names = [name for _, name in model_choices()]
    assert "fine" not in names and "default" in names
    assert ModelRegistry(tmp_path / "models").selected() == "default"
