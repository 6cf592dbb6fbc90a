"""One checksum manifest for model directories and exports, and JSON read with guards.

``manifest.json`` holds ``{"format_version": 1, "files": {name: {"sha256", "size"}}}`` for
every other file of its folder. It detects accidental damage (a flipped byte, a truncated
copy, a missing file); it is *not* a signature: whoever can change a file can recompute
the manifest. Provenance is checked by comparing ``files["weights.safetensors"]["sha256"]``
with a value published by the model's author.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "MANIFEST",
    "MANIFEST_VERSION",
    "read_json_object",
    "read_manifest",
    "sha256_file",
    "verify_files",
    "write_manifest",
]

MANIFEST = "manifest.json"
#: Version of the manifest's own layout (model directories of format 1 carry the same number).
MANIFEST_VERSION = 1
#: Largest JSON file read: metadata is kilobytes; anything larger is not ours.
MAX_JSON_BYTES = 32 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json_object(path: Path, error: type[Exception]) -> dict[str, Any]:
    """Read a JSON object; any problem (size, depth, huge numbers, encoding) raises ``error``.

    The message is ``"<folder>: <name> is unreadable (<reason>)"``.
    """
    prefix = f"{path.parent}: {path.name} is unreadable"
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise error(f"{prefix} (larger than {MAX_JSON_BYTES >> 20} MiB)")
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise error(f"{prefix} (nested too deeply)") from None
    except (OSError, ValueError) as err:  # JSONDecodeError, UnicodeDecodeError, int too long
        reason = getattr(err, "strerror", None) or str(err).splitlines()[0][:200]
        raise error(f"{prefix} ({reason})") from None
    if not isinstance(data, dict):
        raise error(f"{prefix} (expected a JSON object)")
    return data


def write_manifest(directory: Path, names: Iterable[str]) -> dict[str, Any]:
    """Write ``directory/manifest.json`` listing the sha256 and size of ``names``; return it."""
    files = {
        name: {"sha256": sha256_file(directory / name), "size": (directory / name).stat().st_size}
        for name in sorted(names)
    }
    manifest = {"format_version": MANIFEST_VERSION, "files": files}
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    (directory / MANIFEST).write_text(text, encoding="utf-8")
    return manifest


def read_manifest(directory: Path, error: type[Exception]) -> dict[str, Any]:
    """Read ``directory/manifest.json``; ``error`` if it is missing or unreadable."""
    if not (directory / MANIFEST).is_file():
        raise error(f"{directory}: no {MANIFEST}; the folder is incomplete or half-written")
    return read_json_object(directory / MANIFEST, error)


def verify_files(
    directory: Path, manifest: dict[str, Any], required: Iterable[str], error: type[Exception]
) -> None:
    """Check every file the manifest lists: present, inside ``directory``, sha256 and size.

    Parameters
    ----------
    directory : Path
        The folder.
    manifest : dict
        As read by :func:`read_manifest`.
    required : iterable of str
        Names the manifest must list.
    error : exception type
        Raised with a one-line message naming ``directory``.
    """
    files = manifest.get("files")
    required = set(required)
    if not isinstance(files, dict) or not required <= set(files):
        raise error(f"{directory}: {MANIFEST} does not list {' and '.join(sorted(required))}; incomplete")
    for name, entry in files.items():
        if not isinstance(entry, dict) or Path(name).name != name or name in ("", ".", "..", MANIFEST):
            raise error(f"{directory}: {MANIFEST} has an invalid entry {name[:80]!r}")
        file = directory / name
        try:
            if not (file.exists() or file.is_symlink()):
                raise error(f"{directory}: {name} is missing (listed in {MANIFEST})")
            if not file.resolve().is_relative_to(directory.resolve()):
                raise error(f"{directory}: {name} links to outside the folder; refusing to follow it")
            if not file.is_file():
                raise error(f"{directory}: {name} is not a regular file")
            if file.stat().st_size != entry.get("size") or sha256_file(file) != entry.get("sha256"):
                raise error(f"{directory}: {name} was modified or truncated (checksum mismatch)")
        except (OSError, RuntimeError) as err:
            if isinstance(err, error):
                raise
            reason = getattr(err, "strerror", None) or str(err)
            raise error(f"{directory}: {name} is unreadable ({reason})") from None
