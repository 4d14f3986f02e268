"""The one safe reader of weight files: every checkpoint, state dict and model-dir weights file goes
through :func:`read_weights`.

``.safetensors`` files are parsed by the safetensors library (no code can run); anything else is read
with ``torch.load(weights_only=True)``, whose unpickler refuses any global outside torch's safe list
before calling it. Every refusal is one line naming the file, worded the same whoever asks:

- ``<file>: not a complete checkpoint (empty file)`` / ``(truncated: ...)``: an interrupted copy or save;
- ``<file>: refused: the file needs the global 'posix.system', which is not on the safe list ...``;
- ``<file>: not a checkpoint (...)``: some other file.

Torch's own message is never quoted whole: it advises re-running without the check, which is the one
thing a user holding a malicious file must not do.
"""
from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from typing import Any

from scalenas.errors import ScaleNASError

_ZIP_MAGIC = b"PK\x03\x04"
_GLOBAL_RE = re.compile(r"GLOBAL\s+([\w.]+)")
_DETAIL_RE = re.compile(r"WeightsUnpickler error:\s*(\S[^\n]*)")


def read_weights(path: str | os.PathLike, what: str = "checkpoint", map_location: Any = "cpu",
                 mmap: bool = False) -> Any:
    """The object stored in ``path`` (a torch file, or a ``.safetensors`` file as a dict of tensors).

    ``what`` names the file in messages ("checkpoint", "weights file", ...). ``mmap`` maps the tensors
    of a zip-format torch file instead of reading them (for callers that only need small entries).
    Raises :class:`ScaleNASError` with one line naming the file for a missing, empty, truncated,
    unsafe or foreign file; nothing in the file is executed.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ScaleNASError(f"{path}: {what} not found")
    size = os.path.getsize(path)
    if size == 0:
        raise ScaleNASError(f"{path}: not a complete {what} (empty file)")
    if path.endswith(".safetensors"):
        return _read_safetensors(path, what)
    return _torch_load(path, what, map_location, mmap, size)


def _read_safetensors(path: str, what: str) -> dict:
    from safetensors.torch import load

    with open(path, "rb") as f:
        data = f.read()
    # The header length is checked first so that a truncated file gets a plain message; the library
    # checks the rest (JSON header, offsets within the buffer, dtypes).
    if len(data) < 8:
        raise ScaleNASError(f"{path}: not a complete {what} (truncated: {len(data)} bytes, shorter than the "
                            f"safetensors header length field)")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ScaleNASError(f"{path}: not a complete {what} (truncated: the safetensors header says {n} bytes, "
                            f"the file holds {len(data) - 8} after the length field)")
    try:
        return load(data)
    except Exception as e:  # SafetensorError, or a torch error on an invalid buffer
        raise ScaleNASError(f"{path}: not a valid safetensors {what} ({_first_line(e)})") from None


def _torch_load(path: str, what: str, map_location: Any, mmap: bool, size: int) -> Any:
    import torch

    with open(path, "rb") as f:
        is_zip_format = f.read(4) == _ZIP_MAGIC
    # torch.save writes a zip archive whose directory sits at the end: a cut file has none.
    if is_zip_format and not zipfile.is_zipfile(path):
        raise ScaleNASError(f"{path}: not a complete {what} (truncated: {size} bytes, the archive's "
                            f"directory at its end is missing)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pickle-protocol notices: the outcome is reported either way
            # mmap needs the zip format; legacy pickles (old HRNet releases) are read whole
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap and is_zip_format)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            raise ScaleNASError(f"{path}: {_refusal(str(e), path)}") from None
        raise _damaged(path, what, is_zip_format, e) from None
    except Exception as e:  # EOFError, RuntimeError from the zip reader, OSError, KeyError on junk ...
        raise _damaged(path, what, is_zip_format, e) from None


def _refusal(msg: str, path: str) -> str:
    m = _GLOBAL_RE.search(msg)
    name = m.group(1) if m else _foreign_global(path)
    if name:
        why = f"the file needs the global '{name}', which is not on the safe list"
    else:
        d = _DETAIL_RE.search(msg)
        detail = d.group(1).strip() if d else "unknown"
        why = f"the pickle uses something a weights-only reader does not allow ({detail})"
    return (f"refused: {why} (read as weights only: nothing was executed; a weights file never needs it, "
            f"so the file may be malicious; prefer .safetensors)")


def _foreign_global(path: str) -> str | None:
    """The first global outside torch and collections that a plain pickle imports, found by listing its
    opcodes (nothing is executed). Torch refuses such pickles at an opcode before naming the global."""
    import pickletools

    strings: list[str] = []
    try:
        with open(path, "rb") as f:
            for op, arg, _ in pickletools.genops(f):
                name = None
                if op.name == "GLOBAL":
                    name = str(arg).replace(" ", ".")
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    name = f"{strings[-2]}.{strings[-1]}"
                elif isinstance(arg, str):
                    strings.append(arg)
                if name and not name.startswith(("torch.", "collections.")):
                    return name
    except Exception:  # not a plain pickle from here on: report torch's detail instead
        pass
    return None


def _damaged(path: str, what: str, is_zip_format: bool, e: Exception) -> ScaleNASError:
    if isinstance(e, EOFError) or any(w in str(e) for w in ("truncated", "Ran out of input", "EOF")):
        return ScaleNASError(f"{path}: not a complete {what} (truncated: the data ends early)")
    if is_zip_format:
        return ScaleNASError(f"{path}: not a complete {what} (damaged archive: {_first_line(e)})")
    return ScaleNASError(f"{path}: not a {what} (neither a torch file nor safetensors: {_first_line(e)})")


def _first_line(e: Exception, limit: int = 160) -> str:
    """``Type: first sentence`` of an error, without torch's advice paragraphs."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = text.split(". ")[0]
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
