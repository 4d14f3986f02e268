"""Atomic file writes (temporary file in the same folder, fsync, rename), strict JSON, guarded JSON
reads and run metadata.

Strict JSON: Python's ``json`` writes ``NaN`` / ``Infinity`` by default, which is not JSON (RFC 8259)
and which ``jq``, JavaScript and most other readers reject. A metric with no defined value (AP of a
size bucket with no objects, a class absent from the split) is ``null`` instead; every JSON the
project writes goes through :func:`dumps_json`.
"""
from __future__ import annotations

import io
import json
import math
import os
import platform
import sys
import tempfile
from importlib import metadata
from typing import Any

from scalenas.errors import ScaleNASError


def read_json(path: str, what: str = "file") -> Any:
    """Parse a JSON file; an unreadable or malformed file raises ``ScaleNASError`` naming the file,
    what it was expected to be, and the line and column of a syntax error."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise ScaleNASError(f"{path}: cannot read {what} ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise ScaleNASError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise ScaleNASError(f"{path}: {what} is not UTF-8 text ({e.reason})") from None


def tuples_to_lists(x):
    """Nested tuples as nested lists (a ``random.Random`` state as JSON or a weights-only checkpoint holds it)."""
    return [tuples_to_lists(v) for v in x] if isinstance(x, tuple) else x


def lists_to_tuples(x):
    """The inverse of :func:`tuples_to_lists` (``random.Random.setstate`` needs tuples)."""
    return tuple(lists_to_tuples(v) for v in x) if isinstance(x, list) else x


def make_output_dir(path: str, what: str = "output folder") -> str:
    """Create folder ``path`` (and its parents); a file in the way or a refused mkdir is a
    ``ScaleNASError`` naming the path, not a ``NotADirectoryError`` from deep inside a writer."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ScaleNASError(f"{path}: {what} is an existing file, not a folder")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ScaleNASError(f"{path}: cannot create {what} ({e.strerror})") from None
    return path


def strict_jsonable(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, +-inf; numpy scalars included) replaced by ``None``,
    recursively through dicts, lists and tuples."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_jsonable(v) for v in obj]
    if type(obj).__module__ == "numpy" and hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:
        return strict_jsonable(obj.item())  # numpy scalar (np.float32 is not a float subclass)
    return obj


def dumps_json(obj: Any, indent: int | None = 1, **kw) -> str:
    """Strict JSON text: non-finite floats become ``null``; ``allow_nan=False`` then makes any that
    slip past (a type the converter does not know) fail loudly instead of writing invalid JSON."""
    return json.dumps(strict_jsonable(obj), indent=indent, allow_nan=False, **kw)


def atomic_write_bytes(path: str, data: bytes) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str, obj: Any, indent: int | None = 1) -> None:
    atomic_write_text(path, dumps_json(obj, indent=indent) + "\n")


def atomic_torch_save(obj: Any, path: str) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("scalenas", "torch", "numpy", "opencv-python-headless", "pycocotools", "onnx", "onnxruntime",
                 "pymoo", "safetensors", "scipy", "ray"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out
