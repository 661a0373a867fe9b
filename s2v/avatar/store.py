"""Prepared avatars on disk, keyed by content, so a photo is only ever prepared once."""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from s2v.avatar.prepare import Avatar, AvatarConfig, avatar_id, prepare_avatar

log = logging.getLogger(__name__)

BUILTIN_PHOTO = Path(__file__).resolve().parent.parent / "assets" / "avatar.jpg"
_ID = re.compile(r"[0-9a-f]{16}")


class AvatarStore:
    """`root/<id>.npz` holds the arrays, `root/<id>.json` the rest. Both are written to a temporary file and renamed,
    the json last, so a crash never leaves an avatar that looks complete but is not. The few most recently used
    avatars stay in memory (about 15 MB each at 512x512). With `max_bytes`, the least recently used avatars are
    deleted from disk once the store grows past it (each use stamps the json's mtime)."""

    def __init__(self, root: Path, config: AvatarConfig | None = None, keep_in_memory: int = 8, max_bytes: int = 0):
        self.root = Path(root)
        self.config = config or AvatarConfig()
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self._recent: OrderedDict[str, Avatar] = OrderedDict()
        self._keep = keep_in_memory
        self._lock = threading.Lock()

    @staticmethod
    def default_root() -> Path:
        """The per-user store: $S2V_AVATAR_DIR, else ~/.cache/s2v/avatars (where the server keeps uploads too)."""
        return Path(os.environ.get("S2V_AVATAR_DIR") or Path.home() / ".cache" / "s2v" / "avatars")

    @classmethod
    def default(cls) -> AvatarStore:
        return cls(cls.default_root())

    def put(self, data: bytes, config: AvatarConfig | None = None) -> Avatar:
        """Prepare a photo, or reuse it when this photo was prepared with this config before. Raises AvatarError."""
        key = avatar_id(data, config or self.config)
        try:
            return self.get(key)
        except KeyError:
            pass
        avatar = prepare_avatar(data, config or self.config)
        self._write(avatar)
        log.info("avatar %s prepared: crop %s, warnings %s", avatar.id, avatar.crop_size, avatar.info["warnings"])
        return avatar

    def get(self, key: str) -> Avatar:
        """A stored avatar; KeyError when the id is unknown (or its files are unreadable)."""
        meta_path, arrays_path = self._paths(key)
        with self._lock:
            if key in self._recent:
                self._recent.move_to_end(key)
                _touch(meta_path)
                return self._recent[key]
        if not meta_path.exists():
            raise KeyError(key)
        _touch(meta_path)
        try:
            meta = json.loads(meta_path.read_text())
            with np.load(arrays_path) as z:
                background = z["background"]
                inputs = {name: z[name] for name in meta["inputs"]}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            log.warning("avatar %s unreadable (%s): preparing it again", key, e)
            raise KeyError(key) from e
        avatar = Avatar(meta["id"], background, tuple(meta["box"]), inputs, meta["info"])
        self._remember(avatar)
        return avatar

    def builtin(self, config: AvatarConfig | None = None) -> Avatar:
        """The avatar shipped with the package (a crop of a public-domain NASA portrait)."""
        return self.put(BUILTIN_PHOTO.read_bytes(), config)

    def _paths(self, key: str) -> tuple[Path, Path]:
        if not _ID.fullmatch(key):  # ids come from clients: never let one name a path
            raise KeyError(key)
        return self.root / f"{key}.json", self.root / f"{key}.npz"

    def _write(self, avatar: Avatar) -> None:
        """Arrays then metadata, each through a temporary file; on any failure nothing of this avatar is left."""
        meta_path, arrays_path = self._paths(avatar.id)
        meta = {"id": avatar.id, "box": list(avatar.box), "inputs": list(avatar.inputs), "info": avatar.info}
        tmp: list[Path] = []
        try:
            with tempfile.NamedTemporaryFile(dir=self.root, suffix=".npz.tmp", delete=False) as f:
                tmp.append(Path(f.name))
                np.savez_compressed(f, background=avatar.background, **avatar.inputs)
            os.replace(f.name, arrays_path)
            with tempfile.NamedTemporaryFile("w", dir=self.root, suffix=".json.tmp", delete=False) as f:
                tmp.append(Path(f.name))
                json.dump(meta, f)
            os.replace(f.name, meta_path)
        except BaseException:
            for path in (*tmp, arrays_path, meta_path):
                path.unlink(missing_ok=True)
            raise
        self._remember(avatar)
        if self.max_bytes:
            self._evict(keep=avatar.id)

    def _evict(self, keep: str) -> None:
        """Delete the least recently used avatars (never `keep`) until the store fits in max_bytes."""
        stored = []
        for meta in self.root.glob("*.json"):
            arrays = meta.with_suffix(".npz")
            try:
                info = meta.stat()
                stored.append((info.st_mtime, meta.stem, info.st_size + arrays.stat().st_size))
            except OSError:  # half-written or just deleted by another process
                continue
        total = sum(size for _, _, size in stored)
        for _, key, size in sorted(stored):
            if total <= self.max_bytes:
                break
            if key == keep:
                continue
            for path in self._paths(key):
                path.unlink(missing_ok=True)
            with self._lock:
                self._recent.pop(key, None)
            total -= size
            log.info("avatar %s deleted: the store is over its quota of %.0f MB", key, self.max_bytes / 2**20)

    def _remember(self, avatar: Avatar) -> None:
        with self._lock:
            self._recent[avatar.id] = avatar
            self._recent.move_to_end(avatar.id)
            while len(self._recent) > self._keep:
                self._recent.popitem(last=False)


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:  # deleted meanwhile: it is prepared again when asked for
        pass
