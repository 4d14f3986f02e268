"""Import (and export) the official ScaleNAS mask files (``experiments/searched_masks/*.npy``, method §3.2).

An official mask is an ``.npy`` file holding a *pickled* numpy object array: one dict per searchable
module, ``{'d': int array (nb, 1) of branch depths, 'f': object array (nb, 5) of length-nb 0/1 lists}``,
where ``f[i][s]`` lists the inputs fused into branch ``i`` after block step ``s``. Steps at or beyond a
branch's depth are never read by the reference forward pass and may hold stale placeholders such as
``[0, 0]``; they are dropped here.

``np.load(allow_pickle=True)`` would run whatever the pickle asks for, so these files are read with a
restricted unpickler instead: the ``.npy`` header is parsed with :mod:`numpy.lib.format`, and the
payload may only reconstruct numpy arrays, dtypes and scalars (plus ``_codecs.encode``, which protocol-2
pickles use for bytes). Any other global is refused with a :class:`ScaleNASError` before it is loaded,
so a crafted file cannot execute code.
"""
from __future__ import annotations

import ast
import io
import os
import pickle
import struct
from typing import Any

import numpy as np
import numpy.lib.format as npy_format

from scalenas.errors import ScaleNASError
from scalenas.space.arch import Arch, ModuleArch
from scalenas.space.space import SearchSpace

MAX_MASK_BYTES = 16 * 2**20  # official masks are a few kB; anything this large is not a mask file


def _numpy_multiarray():
    try:  # numpy >= 2: the real module (numpy.core is a deprecated shim there)
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    return multiarray


def _allowed_globals() -> dict[tuple[str, str], Any]:
    ma = _numpy_multiarray()
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    # Files written by numpy 1.x name numpy.core, files written by numpy 2 name numpy._core; both are
    # resolved here to the installed module without importing the deprecated alias.
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = ma._reconstruct
        allowed[(mod, "scalar")] = ma.scalar
    import _codecs

    allowed[("_codecs", "encode")] = _codecs.encode
    return allowed


class _MaskUnpickler(pickle.Unpickler):
    """Admits only numpy array reconstruction; refuses every other global by name."""

    def __init__(self, file, source: str):
        super().__init__(file, encoding="latin1")  # latin1: numpy's convention for Python-2 era payloads
        self._source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str):
        fn = self._allowed.get((module, name))
        if fn is None:
            raise ScaleNASError(f"{self._source}: refused to unpickle global '{module}.{name}': an official mask "
                                f"file holds only numpy arrays and plain lists/dicts of numbers")
        return fn

    def persistent_load(self, pid):
        raise ScaleNASError(f"{self._source}: refused a persistent id in the pickle payload")


def _read_header(f, path: str) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = npy_format.read_magic(f)
    except ValueError as e:
        raise ScaleNASError(f"{path}: not an .npy file ({e})") from e
    try:
        if version == (1, 0):
            shape, _fortran, dtype = npy_format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _fortran, dtype = npy_format.read_array_header_2_0(f)
        elif version == (3, 0):
            shape, dtype = _read_header_3_0(f, path)
        else:
            raise ScaleNASError(f"{path}: unsupported .npy format version {version[0]}.{version[1]}")
    except (ValueError, SyntaxError) as e:
        raise ScaleNASError(f"{path}: corrupt .npy header ({e})") from e
    return tuple(shape), dtype


def _read_header_3_0(f, path: str):
    """Version 3.0 is 2.0 with a UTF-8 header; numpy exposes no public reader for it."""
    raw = f.read(4)
    if len(raw) != 4:
        raise ScaleNASError(f"{path}: truncated .npy header")
    (n,) = struct.unpack("<I", raw)
    header = f.read(n).decode("utf-8")
    d = ast.literal_eval(header)  # a plain dict literal; literal_eval cannot call anything
    if not isinstance(d, dict) or "descr" not in d or "shape" not in d:
        raise ScaleNASError(f"{path}: corrupt .npy header {header!r}")
    return tuple(d["shape"]), npy_format.descr_to_dtype(d["descr"])


def read_mask_payload(path: str | os.PathLike) -> Any:
    """The unpickled content of an official mask file (a numpy object array), loaded safely."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        if size > MAX_MASK_BYTES:
            raise ScaleNASError(f"{path}: {size} bytes is far too large for a ScaleNAS mask file")
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise ScaleNASError(f"{path}: cannot read mask file ({e.strerror})") from e
    f = io.BytesIO(data)
    shape, dtype = _read_header(f, path)
    if not dtype.hasobject:
        raise ScaleNASError(f"{path}: holds a plain {dtype} array of shape {shape}; an official mask is a "
                            f"pickled object array of per-module dicts")
    try:
        return _MaskUnpickler(f, path).load()
    except ScaleNASError:
        raise
    except Exception as e:  # any malformed payload (truncated stream, bad opcode, wrong state) is a user error
        raise ScaleNASError(f"{path}: corrupt mask payload ({type(e).__name__}: {e})") from e


def _as_int(x: Any, where: str) -> int:
    try:
        v = np.asarray(x)
        if v.size != 1 or not (np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.bool_)
                               or (v.dtype == object and isinstance(v.item(), (int, np.integer)))):
            raise TypeError
        return int(v.reshape(()).item())
    except (TypeError, ValueError) as e:
        raise ScaleNASError(f"{where}: expected an integer, got {x!r}") from e


def _module_from_entry(entry: Any, m: int, where: str) -> ModuleArch:
    loc = f"{where} module M{m}"
    if not isinstance(entry, dict) or "d" not in entry or "f" not in entry:
        raise ScaleNASError(f"{loc}: expected a dict with keys 'd' (depths) and 'f' (fusion masks), "
                            f"got {type(entry).__name__}")
    d_arr = np.asarray(entry["d"], dtype=object).reshape(-1)
    depth = tuple(_as_int(x, f"{loc} branch {i} depth") for i, x in enumerate(d_arr))
    nb = len(depth)
    f = entry["f"]
    if len(f) != nb:
        raise ScaleNASError(f"{loc}: 'f' has masks for {len(f)} branches, 'd' gives {nb} depths")
    fuse = []
    for i in range(nb):
        steps = f[i]
        if len(steps) < depth[i]:
            raise ScaleNASError(f"{loc} branch {i} step {len(steps)}: missing fusion mask "
                                f"(depth {depth[i]} needs one mask per step)")
        masks = []
        for s in range(depth[i]):  # steps >= depth are stale placeholders: never read, dropped
            bits = steps[s]
            try:
                vals = [_as_int(b, f"{loc} branch {i} step {s}") for b in bits]
            except TypeError as e:
                raise ScaleNASError(f"{loc} branch {i} step {s}: expected a list of 0/1, got {bits!r}") from e
            if any(v not in (0, 1) for v in vals):
                raise ScaleNASError(f"{loc} branch {i} step {s}: mask {vals} must hold only 0 and 1")
            if len(vals) != nb:
                raise ScaleNASError(f"{loc} branch {i} step {s}: mask {vals} has length {len(vals)}, "
                                    f"expected {nb} (one bit per input branch)")
            masks.append("".join(str(v) for v in vals))
        fuse.append(tuple(masks))
    return ModuleArch(depth=depth, fuse=tuple(fuse))


def arch_from_official(entries: Any, where: str = "mask", space: SearchSpace | None = None,
                       pose_rule: bool = False) -> Arch:
    """Decode the official per-module list (already unpickled) into an :class:`Arch` and validate it."""
    if isinstance(entries, np.ndarray) and entries.shape == ():
        entries = entries.item()  # a list saved inside a 0-d object array
    if isinstance(entries, dict):
        raise ScaleNASError(f"{where}: expected a list of per-module dicts, got a single dict")
    try:
        entries = list(entries)
    except TypeError as e:
        raise ScaleNASError(f"{where}: expected a list of per-module dicts, got {type(entries).__name__}") from e
    if not entries:
        raise ScaleNASError(f"{where}: the mask holds no modules")
    arch = Arch(tuple(_module_from_entry(e, m, where) for m, e in enumerate(entries)))
    space = space if space is not None else SearchSpace()
    return space.validate(arch, pose_rule=pose_rule, where=where)


def load_official_mask(path: str | os.PathLike, space: SearchSpace | None = None, pose_rule: bool = False) -> Arch:
    """Load an official ScaleNAS ``.npy`` mask as an :class:`Arch`, validated against ``space``
    (default: the paper's 8-module space; width is irrelevant to validation)."""
    return arch_from_official(read_mask_payload(path), where=os.fspath(path), space=space, pose_rule=pose_rule)


def to_official(arch: Arch, max_depth: int = 5) -> list[dict]:
    """The official in-memory encoding: ``f`` has ``max_depth`` steps; steps past a branch's depth are zeros."""
    out = []
    for ma in arch.modules:
        nb = ma.num_branches
        if max(ma.depth) > max_depth:
            raise ScaleNASError(f"to_official: depth {max(ma.depth)} exceeds max_depth {max_depth}")
        f = np.empty((nb, max_depth), dtype=object)
        for i in range(nb):
            for s in range(max_depth):
                f[i, s] = [int(c) for c in ma.fuse[i][s]] if s < ma.depth[i] else [0] * nb
        out.append({"d": np.array(ma.depth, dtype=np.int64).reshape(nb, 1), "f": f})
    return out


def save_official_mask(arch: Arch, path: str | os.PathLike, max_depth: int = 5) -> None:
    """Write ``arch`` in the official ``.npy`` format (readable by the reference code)."""
    arr = np.empty(arch.num_modules, dtype=object)
    for m, e in enumerate(to_official(arch, max_depth)):
        arr[m] = e
    with open(os.fspath(path), "wb") as fh:
        np.save(fh, arr, allow_pickle=True)
