"""The model registry: a folder of model versions with parent links and a selection.

Layout (the full description is in ``docs/registry.md``)::

    <registry root>/                 $MEDSEGDIFF_HOME/models or the platformdirs data dir
        registry.json                {"format": ..., "selected": "v2-20261124-2301"}
        v1-20261124-2245/            one version = one checkpoint folder ...
            model.safetensors
            config.json
            version.json             ... plus its registry record: parent, created,
                                     description, metrics, data digest
        .staging-*/                  a version being added (hidden, never listed)

The shipped default model lives inside the package (``default_model/``), is listed first
as ``default``; further shipped models (``shipped_models/NAME/``) follow under their folder
names. Shipped models are read-only: they can be neither renamed nor deleted. Every change
is made by writing beside and renaming, so a reader in another process (the napari plugin
while the CLI fine-tunes) never sees half a version or half a ``registry.json``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import process_gone
from .checkpoint_files import CONFIG_FILE, WEIGHTS_FILE, read_checkpoint_config
from .config import DiffusionConfig, PreprocessConfig, named_config
from .errors import CheckpointError, RegistryError
from .paths import default_registry_root
from .registry_records import (
    RESERVED_NAMES,
    ModelVersion,
    broken_version,
    check_version_name,
    read_version_record,
)
from .registry_selection import (
    BOX_MODEL_VERSION,
    DEFAULT_VERSION,
    SELECTION_KEYS,
    UNTRAINED_VERSION,
    read_selection,
)

if TYPE_CHECKING:
    import torch

    from .checkpoint import Checkpoint

# Listing, describing and selecting versions read JSON files only; torch (and the network)
# is imported by the methods that load or check weights, so that listing models is instant.

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
SHIPPED_MODELS_DIR = Path(__file__).resolve().parent / "shipped_models"
REGISTRY_FILE = "registry.json"
VERSION_FILE = "version.json"
REGISTRY_FORMAT = "medsegdiff-registry"
_AUTO_NAME = re.compile(r"^v(\d+)-")
_STAGING = re.compile(r"^\.staging-(\d+)-")
STAGING_SOURCE = "source.json"
_log = logging.getLogger(__name__)


def untrained_model_checkpoint() -> Checkpoint:
    """A clearly labelled, untrained ``cpu`` model (fixed random weights).

    For trying the plugin and the CLI before any trained model exists: its masks are noise.
    """
    import torch

    from .checkpoint import Checkpoint
    from .model import MedSegDiffUNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MedSegDiffUNet(named_config("cpu")).eval()
    metadata = {
        "version": UNTRAINED_VERSION,
        "parent": None,
        "description": "untrained 'cpu' model with random weights: its masks are meaningless",
    }
    return Checkpoint(model, model.config, DiffusionConfig(), PreprocessConfig(), metadata, None)


def _write_json_atomically(path: Path, document: dict[str, Any]) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide the registry from other users
        with os.fdopen(handle, "w") as stream:
            json.dump(document, stream, indent=2, sort_keys=True)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _now() -> str:
    # milliseconds: versions added within one second still list in the order they came
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def _free_path(path: Path) -> Path:
    """``path`` when nothing is there, else the first free ``NAME-recovered[-N]`` beside it."""
    candidates = [path, path.with_name(f"{path.name}-recovered")]
    candidates += [path.with_name(f"{path.name}-recovered-{n}") for n in range(2, 1000)]
    for candidate in candidates:
        if not candidate.exists() and not candidate.is_symlink():
            return candidate
    raise FileExistsError(f"No free place beside {path} to put a recovered checkpoint.")


class ModelRegistry:
    """Model versions in a folder; see the module docstring and ``docs/registry.md``.

    Examples
    --------
    >>> import tempfile
    >>> from medsegdiff_training.checkpoint import save_checkpoint
    >>> from medsegdiff_training.model import MedSegDiffUNet
    >>> registry = ModelRegistry(tempfile.mkdtemp())
    >>> folder = save_checkpoint(tempfile.mkdtemp() + "/ckpt", MedSegDiffUNet(named_config("tiny")),
    ...                          DiffusionConfig(), PreprocessConfig())
    >>> version = registry.add(folder, name="first")
    >>> registry.select("first")
    >>> registry.selected(), registry.load("first").model_config.name
    ('first', 'tiny')
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        default_model: Path | None = DEFAULT_MODEL_DIR,
        shipped_models: Path | None = SHIPPED_MODELS_DIR,
    ) -> None:
        self.root = Path(root) if root is not None else default_registry_root()
        self.default_model = Path(default_model) if default_model is not None else None
        self.shipped_models = Path(shipped_models) if shipped_models is not None else None
        self._warned: str | None = None  # the selection problem logged already (once per state)

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    # -- reading ---------------------------------------------------------------------

    def has_default(self) -> bool:
        """Whether the shipped default model is installed."""
        return self.default_model is not None and (self.default_model / CONFIG_FILE).is_file()

    def shipped(self) -> dict[str, Path]:
        """Name -> folder of every model shipped inside the package, ``default`` first."""
        found: dict[str, Path] = {}
        if self.has_default():
            assert self.default_model is not None
            found[DEFAULT_VERSION] = self.default_model
        if self.shipped_models is not None and self.shipped_models.is_dir():
            for folder in sorted(self.shipped_models.iterdir()):
                if folder.name not in RESERVED_NAMES and (folder / CONFIG_FILE).is_file():
                    found[folder.name] = folder
        return found

    def _shipped_version(self, name: str, folder: Path) -> ModelVersion:
        try:
            document = read_checkpoint_config(folder)
        except CheckpointError as error:
            return broken_version(name, folder, str(error), read_only=True)
        return ModelVersion(
            name=name,
            path=folder,
            parent=None,
            created=str(document.get("created", "")),
            metrics=dict(document.get("metrics") or {}),
            data_digest=(document.get("training") or {}).get("data_digest"),
            read_only=True,
            description=str(document.get("description", "a model shipped with the package")),
            model=dict(document["model"]),
        )

    def _version(self, folder: Path) -> ModelVersion:
        """The version in ``folder``; one whose files are damaged is listed as broken, never raised."""
        if not (folder / VERSION_FILE).is_file():  # not made by add(): a folder copied in by hand
            reason = f"no {VERSION_FILE}: not a registered version (delete it, or register its checkpoint)"
            return broken_version(folder.name, folder, reason, read_only=False)
        try:
            record = read_version_record(folder / VERSION_FILE)
            model = dict(read_checkpoint_config(folder)["model"])
        except (RegistryError, CheckpointError) as error:
            return broken_version(folder.name, folder, str(error), read_only=False)
        return ModelVersion(
            name=folder.name,
            path=folder,
            parent=record.get("parent"),
            created=record.get("created", ""),
            metrics=dict(record.get("metrics") or {}),
            data_digest=record.get("data_digest"),
            read_only=False,
            description=record.get("description", ""),
            model=model,
        )

    def _folders(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        shipped = self.shipped()  # a shipped name hides a user's folder of the same name
        return [
            path
            for path in self.root.iterdir()
            if path.is_dir() and not path.name.startswith(".") and path.name not in shipped
        ]

    def versions(self) -> list[ModelVersion]:
        """Every version: the shipped ones first (``default`` leading), then the others oldest to newest.

        A version whose files are damaged is listed with ``broken`` set to the reason.
        """
        if self.root.is_dir():
            self.recover_staging()  # what a killed add() left, put back or removed
        listed = sorted(
            (self._version(folder) for folder in self._folders()), key=lambda v: (v.created, v.name)
        )
        return [self._shipped_version(name, folder) for name, folder in self.shipped().items()] + listed

    def names(self) -> list[str]:
        return [version.name for version in self.versions()]

    def usable(self) -> list[ModelVersion]:
        """The versions that can be loaded (:meth:`versions` less the broken ones)."""
        return [version for version in self.versions() if version.broken is None]

    def get(self, name: str) -> ModelVersion:
        """The version called ``name``; :class:`RegistryError` when there is none."""
        if name == DEFAULT_VERSION:
            if not self.has_default():
                raise RegistryError(
                    "The shipped default model is not installed in this copy of napari-medsegdiff; "
                    f"use another version or '{UNTRAINED_VERSION}' to try an untrained model."
                )
            return self._shipped_version(DEFAULT_VERSION, self.shipped()[DEFAULT_VERSION])
        shipped = self.shipped()
        if name in shipped:
            return self._shipped_version(name, shipped[name])
        folder = self.root / name
        if name.startswith(".") or "/" in name or not folder.is_dir():
            known = ", ".join(self.names()) or "none yet"
            raise RegistryError(f"Unknown model version {name!r} in {self.root} (known: {known}).")
        return self._version(folder)

    def load(self, name: str, device: str | torch.device = "cpu") -> Checkpoint:
        """Load version ``name`` (or ``untrained``) as a :class:`Checkpoint`."""
        from .checkpoint import load_checkpoint

        if name == UNTRAINED_VERSION:
            checkpoint = untrained_model_checkpoint()
            checkpoint.model.to(device)
            return checkpoint
        version = self.get(name)
        if version.broken is not None:
            raise RegistryError(f"The model version {name!r} is broken: {version.broken}")
        checkpoint = load_checkpoint(version.path, device)
        checkpoint.metadata.update(version=version.name, parent=version.parent)
        return checkpoint

    def selected(self) -> str:
        """The selected version's name (``default`` until something else is selected).

        A damaged ``registry.json`` or a selected version whose folder is gone falls back to
        ``default``, never silently: logged as a warning (once per registry object and
        problem) and told by :meth:`selection_warning`.
        """
        name, problem = read_selection(self.root, REGISTRY_FILE, self.shipped())
        self._warn(problem)
        return name or DEFAULT_VERSION

    def selected_for_boxes(self) -> str:
        """The version box prompts use: the one selected for them, else the shipped box model
        (``general``), else the selected version. A selection that fell back is warned of."""
        name, problem = read_selection(self.root, REGISTRY_FILE, self.shipped(), role="boxes")
        self._warn(problem)
        if name is not None:
            return name
        return BOX_MODEL_VERSION if BOX_MODEL_VERSION in self.shipped() else self.selected()

    def _warn(self, problem: str | None) -> None:
        if problem is not None and problem != self._warned:
            self._warned = problem
            _log.warning("%s", problem)

    def selection_warning(self) -> str | None:
        """Why :meth:`selected` (or the box selection) fell back (what is wrong, what is used), or None."""
        for role in SELECTION_KEYS:
            problem = read_selection(self.root, REGISTRY_FILE, self.shipped(), role=role)[1]
            if problem is not None:
                return problem
        return None

    # -- changing --------------------------------------------------------------------

    def _write_selection(self, name: str, role: str = "image") -> None:
        """Record ``name`` for ``role`` in ``registry.json``, keeping the other role's choice."""
        self.root.mkdir(parents=True, exist_ok=True)
        document: dict[str, Any] = {"format": REGISTRY_FORMAT, "selected": self.selected()}
        boxes = read_selection(self.root, REGISTRY_FILE, self.shipped(), role="boxes")[0]
        if boxes is not None:
            document["selected_boxes"] = boxes
        document[SELECTION_KEYS[role]] = name
        _write_json_atomically(self.root / REGISTRY_FILE, document)

    def select(self, name: str, role: str = "image") -> None:
        """Make ``name`` the selected version (persisted in ``registry.json``); never a broken one.

        ``role="boxes"``: the version box prompts use (:meth:`selected_for_boxes`).
        """
        version = self.get(name) if name != UNTRAINED_VERSION else None
        if version is not None and version.broken is not None:
            raise RegistryError(
                f"The model version {name!r} is broken ({version.broken}); it cannot be selected. "
                "Select a working version (medsegdiff models list marks the broken ones)."
            )
        self._write_selection(name, role)

    def rollback(self) -> str:
        """Select the parent of the selected version; returns the newly selected name."""
        current = self.get(self.selected())
        if current.parent is None:
            raise RegistryError(f"{current.name!r} has no parent version to roll back to.")
        self.select(current.parent)
        return current.parent

    def _auto_name(self) -> str:
        numbers = [int(m.group(1)) for m in (_AUTO_NAME.match(p.name) for p in self._folders()) if m]
        return f"v{max(numbers, default=0) + 1}-{time.strftime('%Y%m%d-%H%M')}"

    def add(
        self,
        checkpoint_dir: str | os.PathLike[str],
        *,
        name: str | None = None,
        parent: str | None = None,
        description: str = "",
        move: bool = False,
        metrics: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Add a checkpoint folder as a new version (copied, or moved with ``move``).

        The version is assembled in a hidden staging folder and renamed into place, so it
        appears whole or not at all. An existing version is never overwritten; without a
        ``name`` one like ``v3-20261124-2301`` is chosen.
        """
        from .checkpoint import load_checkpoint

        source = Path(checkpoint_dir)
        load_checkpoint(source)  # refuse anything that would not load later
        document = read_checkpoint_config(source)
        if name is not None:
            self.check_new_name(name)
        if parent is not None and parent != UNTRAINED_VERSION:
            self.get(parent)
        self.root.mkdir(parents=True, exist_ok=True)
        self.recover_staging()
        # the pid tells a later add() whether this one was killed; the source where to put it back
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{os.getpid()}-", dir=self.root))
        assembled = staging / "version"
        moved = False
        try:
            if move:
                (staging / STAGING_SOURCE).write_text(json.dumps({"source": str(source.resolve())}))
                try:
                    os.replace(source, assembled)
                    moved = True
                except OSError:  # another file system: copy, delete the source at the end
                    (staging / STAGING_SOURCE).write_text(
                        json.dumps({"source": str(source.resolve()), "copied": True})
                    )
                    shutil.copytree(source, assembled)
            else:
                assembled.mkdir()
                for item in (WEIGHTS_FILE, CONFIG_FILE):
                    shutil.copy2(source / item, assembled / item)
            record = {
                "parent": parent,
                "created": _now(),
                "description": description,
                "metrics": {**dict(document.get("metrics") or {}), **dict(metrics or {})},
                "data_digest": (document.get("training") or {}).get("data_digest"),
            }
            (assembled / VERSION_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))
            os.chmod(assembled, 0o755)  # a moved checkpoint folder may be mkdtemp's 0700
            final_name = self._publish(assembled, name)
        except BaseException:
            if moved:
                os.replace(assembled, source)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if move and not moved:
            shutil.rmtree(source, ignore_errors=True)
        return self.get(final_name)

    def check_new_name(self, name: str) -> str:
        """Return ``name`` when a new version may take it, else raise :class:`RegistryError`.

        Commands that train first and register last call this before training.
        """
        check_version_name(name)
        if name in self.shipped():
            raise RegistryError(f"{name!r} is the name of a shipped model; choose another name.")
        if (self.root / name).exists():
            raise RegistryError(f"A model version called {name!r} exists already; choose another name.")
        return name

    def recover_staging(self) -> list[Path]:
        """Undo what killed writers left: a moved checkpoint goes back where it came from.

        ``add(move=True)`` first moves the checkpoint into a hidden ``.staging-PID-*``
        folder; if that process was killed, the checkpoint would sit there, listed nowhere.
        It goes back to its source path (whose missing parent folders are made again), or,
        when something else has taken that path since, beside it as ``NAME-recovered``
        (``-recovered-2`` ...). A staging folder that holds only a copy, or nothing, is
        removed, as are ``.deleting-*`` leftovers; one whose checkpoint cannot be put back
        stays where it is. Returns the paths the checkpoints were put back to.
        """
        restored: list[Path] = []
        try:
            children = sorted(self.root.iterdir())  # a fixed order: the same recovery every time
        except OSError:
            return restored
        for folder in children:
            match = _STAGING.match(folder.name)
            if folder.name.startswith(".deleting-"):
                shutil.rmtree(folder, ignore_errors=True)
            if match is None or not process_gone(int(match.group(1))):
                continue
            try:
                record = json.loads((folder / STAGING_SOURCE).read_text())
                moved = (folder / "version").is_dir() and not record.get("copied", False)
                source = Path(record["source"])
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                moved = False  # no source record: a copy, not a move; nothing of the user's is in it
            if moved:
                try:
                    target = _free_path(source)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    (folder / "version" / VERSION_FILE).unlink(missing_ok=True)
                    os.replace(folder / "version", target)
                    restored.append(target)
                except OSError:
                    continue  # the user's checkpoint stays in the staging folder, never deleted
            shutil.rmtree(folder, ignore_errors=True)
        return restored

    def _publish(self, assembled: Path, name: str | None) -> str:
        for _ in range(100):
            candidate = name or self._auto_name()
            destination = self.root / candidate
            if not destination.exists():
                try:
                    os.rename(assembled, destination)
                    return candidate
                except OSError:
                    if name is not None or not destination.exists():
                        raise
            elif name is not None:
                raise RegistryError(f"A model version called {name!r} exists already; choose another name.")
            time.sleep(0.01)
        raise RegistryError(f"Could not find a free version name in {self.root}.")

    def rename(self, old: str, new: str) -> ModelVersion:
        """Rename a version; children's parent links and the selection follow it."""
        if old in RESERVED_NAMES or old in self.shipped():
            raise RegistryError(f"The {old!r} model cannot be renamed: it comes with the package.")
        version = self.get(old)
        check_version_name(new)
        destination = self.root / new
        if destination.exists() or new in self.shipped():
            raise RegistryError(f"A model version called {new!r} exists already; choose another name.")
        was_selected = self.selected() == old
        was_box_model = read_selection(self.root, REGISTRY_FILE, self.shipped(), role="boxes")[0] == old
        os.rename(version.path, destination)
        for child in self._folders():
            record_path = child / VERSION_FILE
            try:
                record = read_version_record(record_path)
            except RegistryError:
                continue
            if record.get("parent") == old:
                record["parent"] = new
                _write_json_atomically(record_path, record)
        if was_selected:
            self._write_selection(new)
        if was_box_model:
            self._write_selection(new, role="boxes")
        return self.get(new)

    def delete(self, name: str) -> None:
        """Delete a version (never a shipped one, nor the selected one)."""
        if name in RESERVED_NAMES or name in self.shipped():
            raise RegistryError(f"The {name!r} model cannot be deleted: it comes with the package.")
        version = self.get(name)
        if self.selected() == name:
            raise RegistryError(f"{name!r} is the selected model; select another version before deleting it.")
        if read_selection(self.root, REGISTRY_FILE, self.shipped(), role="boxes")[0] == name:
            raise RegistryError(
                f"{name!r} is the model selected for box prompts; select another for them "
                "(medsegdiff models select NAME --for-boxes) before deleting it."
            )
        trash = self.root / f".deleting-{name}-{uuid.uuid4().hex[:8]}"
        os.rename(version.path, trash)  # disappears from listings at once
        shutil.rmtree(trash, ignore_errors=True)

    def describe(self, name: str) -> dict[str, Any]:
        """Everything known about a version, including its checkpoint's config.json."""
        version = self.get(name)
        info = version.to_dict()
        info["selected"] = self.selected() == name
        try:
            info["checkpoint"] = read_checkpoint_config(version.path)
        except CheckpointError as error:
            info["checkpoint_error"] = str(error)
        return info
