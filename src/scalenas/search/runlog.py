"""Files of a search run: the append-only evaluation log and the atomic per-generation state.

``evaluations.jsonl`` gets one line per evaluation, flushed and fsynced as results arrive, so a
killed search keeps every finished evaluation; on resume they are served from this log instead of
being recomputed. A line cut short by the kill is dropped (and the file rewritten without it).
``state.json`` is replaced atomically after every generation.
"""
from __future__ import annotations

import json
import os

from scalenas.errors import ScaleNASError
from scalenas.utils.io import atomic_write_json, atomic_write_text, dumps_json, read_json

STATE_FORMAT = "scalenas.search_state/1"


class JsonlLog:
    """Append-only JSON-lines file keyed by ``key`` (e.g. "hash")."""

    def __init__(self, path: str, key: str = "hash"):
        self.path, self.key = path, key
        self.records: dict[str, dict] = {}
        self.dropped = 0
        if os.path.exists(path):
            self._load()
        self._f = None

    def _load(self) -> None:
        with open(self.path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        good = []
        for n, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                key = rec[self.key]
            except (json.JSONDecodeError, KeyError, TypeError):
                if n >= len(lines) - 2:  # only the last line can be torn by a kill
                    self.dropped += 1
                    continue
                raise ScaleNASError(f"{self.path}: line {n + 1} is not a valid record; the log is damaged") from None
            self.records[key] = rec
            good.append(line)
        if self.dropped or (lines and lines[-1] != ""):
            atomic_write_text(self.path, "".join(x + "\n" for x in good))

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def __getitem__(self, key: str) -> dict:
        return self.records[key]

    def __len__(self) -> int:
        return len(self.records)

    def get(self, key: str, default=None):
        return self.records.get(key, default)

    def append(self, rec: dict) -> None:
        if self._f is None:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._f = open(self.path, "a", encoding="utf-8")
        self._f.write(dumps_json(rec, indent=None) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())
        self.records[rec[self.key]] = rec

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def load_state(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    state = read_json(path, "the search state")
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ScaleNASError(f"{path}: not a scalenas search state (format {STATE_FORMAT!r})")
    return state


def save_state(path: str, state: dict) -> None:
    atomic_write_json(path, {"format": STATE_FORMAT, **state}, indent=None)
