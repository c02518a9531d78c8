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
_FIX = "select a version with 'medsegdiff models select NAME'"


def read_selection(root: Path, registry_file: str, shipped: Container[str]) -> tuple[str, str | None]:
    """(the selected version's name, why the selection fell back to ``default`` or None).

    No ``registry.json`` yet means ``default`` and no problem. ``shipped`` holds the names
    of the models shipped in the package. A version folder that exists is returned as
    selected even when its files are damaged: loading it then says what is broken.

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
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return DEFAULT_VERSION, None
    except (OSError, ValueError, RecursionError) as error:
        reason = str(error) or type(error).__name__
        return DEFAULT_VERSION, f"{path} cannot be read ({reason:.120}); using '{DEFAULT_VERSION}': {_FIX}."
    name = document.get("selected") if isinstance(document, dict) else None
    if not isinstance(name, str):
        found = type(document).__name__ if not isinstance(document, dict) else f"selected = {name!r:.40}"
        return DEFAULT_VERSION, f"{path} is damaged ({found}); using '{DEFAULT_VERSION}': {_FIX}."
    if name in (DEFAULT_VERSION, UNTRAINED_VERSION) or name in shipped:
        return name, None
    if "/" not in name and not name.startswith(".") and (root / name).is_dir():
        return name, None
    return DEFAULT_VERSION, (
        f"The selected model version {name!r:.80} is gone (no folder {root / name}); "
        f"using '{DEFAULT_VERSION}': {_FIX}."
    )
