"""Which model version is selected, and what is wrong with the selection when something is.

``registry.json`` records the selected version. When it cannot be read, or names a version
whose folder is gone, the registry falls back to the shipped ``default``, and that fallback
is always said: :func:`read_selection` returns the reason beside the name, the registry
logs it as a warning (one line on the CLI's stderr) and the plugin shows it.
"""

from __future__ import annotations

import json
from collections.abc import Container
from pathlib import Path

DEFAULT_VERSION = "default"
UNTRAINED_VERSION = "untrained"
#: The shipped model that box prompts use until the user selects another for them.
BOX_MODEL_VERSION = "general"
#: registry.json's keys: the model for whole images, and the one for box prompts.
SELECTION_KEYS = {"image": "selected", "boxes": "selected_boxes"}
_FIX = "select a version with 'medsegdiff models select NAME'"


def read_selection(
    root: Path, registry_file: str, shipped: Container[str], role: str = "image"
) -> tuple[str | None, str | None]:
    """(the selected version's name, why the selection fell back to ``default`` or None).

    No ``registry.json`` yet means ``default`` and no problem. ``shipped`` holds the names
    of the models shipped in the package. A version folder that exists is returned as
    selected even when its files are damaged: loading it then says what is broken.
    ``role="boxes"`` reads the model chosen for box prompts: ``None`` when none is chosen
    (the registry then falls back to its box model), and a gone one is said as for images.

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> read_selection(root, "registry.json", ())
    ('default', None)
    >>> _ = (root / "registry.json").write_text('{"selected": "v7"}')
    >>> name, problem = read_selection(root, "registry.json", ())
    >>> name, problem.startswith("The selected model version 'v7' is gone")
    ('default', True)
    """
    path = root / registry_file
    key = SELECTION_KEYS[role]
    fallback = DEFAULT_VERSION if role == "image" else None
    # a damaged file is said once, the same for both roles
    whole_file = f"'{DEFAULT_VERSION}' (and for box prompts the box-prompt model)"
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return fallback, None
    except (OSError, ValueError, RecursionError) as error:
        reason = str(error) or type(error).__name__
        return fallback, f"{path} cannot be read ({reason:.120}); using {whole_file}: {_FIX}."
    name = document.get(key) if isinstance(document, dict) else None
    if role == "boxes" and isinstance(document, dict) and name is None:
        return None, None  # none chosen for boxes
    if not isinstance(document, dict):
        return fallback, f"{path} is damaged ({type(document).__name__}); using {whole_file}: {_FIX}."
    if not isinstance(name, str):
        using = f"'{DEFAULT_VERSION}'" if role == "image" else "the box-prompt model"
        return fallback, f"{path} is damaged ({key} = {name!r:.40}); using {using}: {_FIX}."
    if name in (DEFAULT_VERSION, UNTRAINED_VERSION) or name in shipped:
        return name, None
    if "/" not in name and not name.startswith(".") and (root / name).is_dir():
        return name, None
    what = "selected model version" if role == "image" else "model version selected for box prompts"
    using = f"'{DEFAULT_VERSION}'" if role == "image" else "the box-prompt model"
    return fallback, f"The {what} {name!r:.80} is gone (no folder {root / name}); using {using}: {_FIX}."
