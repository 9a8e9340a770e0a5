"""Which versions of the model exist on disk, which are loaded, and which one a request gets.

The serving dir holds one directory per version, named by an integer; anything else (such as
`.tmp-123` while the pipeline's Pusher writes) is ignored. Each poll loads the newest
versions not yet loaded, keeping the `keep_versions` newest that loaded. A version that fails
to load is reported (state END with its error) and skipped; it is tried again only if its
files change. The loaded set is swapped in one assignment, so a request sees either the old
set or the new one, and a request that already holds a version finishes on it.
"""

import dataclasses
import logging
import os
import threading
from typing import Callable

from components.model_versions import version_number
from serving.errors import not_found
from serving.model import LoadedVersion

log = logging.getLogger("serving")

LOADING, AVAILABLE, END = "LOADING", "AVAILABLE", "END"


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    version: int
    state: str  # LOADING, AVAILABLE or END (TF Serving's ModelVersionStatus.State names)
    error: str = ""  # why loading failed; empty when it did not


def _fingerprint(path: str) -> tuple:
    """Changes when a version's files are replaced, so a failed version is retried then."""
    try:
        return tuple(sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(path)))
    except OSError:
        return ()


def version_dirs(base_path: str) -> dict[int, str]:
    """Integer-named subdirectories of the serving dir: version -> path."""
    try:
        entries = list(os.scandir(base_path))
    except OSError:
        return {}
    found = {}
    for entry in entries:
        version = version_number(entry.name)
        if version is not None and entry.is_dir():
            found.setdefault(version, entry.path)
    return found


class ModelVersions:
    def __init__(
        self,
        name: str,
        base_path: str,
        keep_versions: int = 2,
        load: Callable[[int, str], LoadedVersion] = LoadedVersion,
    ):
        self.name = name
        self.base_path = base_path
        self.keep_versions = max(1, keep_versions)
        self._load = load
        self._lock = threading.Lock()  # one poll at a time
        self.loaded: dict[int, LoadedVersion] = {}  # replaced whole, never mutated
        self._status: dict[int, VersionStatus] = {}  # replaced whole, never mutated
        self._failed: dict[int, tuple] = {}  # version -> fingerprint of the files that failed
        self._warned_empty = False

    # ---- polling (runs in the poller thread, or the caller's at start-up)

    def poll(self) -> None:
        with self._lock:
            self._poll()

    def _poll(self) -> None:
        on_disk = version_dirs(self.base_path)
        if not on_disk and not self._warned_empty:
            log.warning("model %s: no version directory under %s yet; waiting for one", self.name, self.base_path)
        self._warned_empty = not on_disk
        keep: dict[int, LoadedVersion] = {}
        for version in sorted(on_disk, reverse=True):
            if len(keep) == self.keep_versions:
                break
            if version in self.loaded:
                keep[version] = self.loaded[version]
                continue
            path = on_disk[version]
            if self._failed.get(version) == _fingerprint(path):
                continue
            loaded = self._try_load(version, path)
            if loaded is not None:
                keep[version] = loaded
        dropped = set(self.loaded) - set(keep)
        self.loaded = keep  # the swap: one assignment
        for version in dropped:
            self._set_status(VersionStatus(version, END))
            log.info("model %s: version %d unloaded", self.name, version)
        # Forget versions whose directory is gone and that are not loaded.
        gone = [v for v in self._status if v not in on_disk and v not in keep]
        if gone:
            self._status = {v: s for v, s in self._status.items() if v not in gone}
            for version in gone:
                self._failed.pop(version, None)

    def _set_status(self, status: VersionStatus) -> None:
        # Copy on write: readers in other threads iterate the dict without a lock.
        self._status = {**self._status, status.version: status}

    def _try_load(self, version: int, path: str) -> LoadedVersion | None:
        self._set_status(VersionStatus(version, LOADING))
        log.info("model %s: loading version %d from %s", self.name, version, path)
        fingerprint = _fingerprint(path)
        try:
            loaded = self._load(version, path)
        except Exception as e:  # noqa: BLE001 - any failure to load is reported, not raised
            message = f"Failed to load version {version} of model {self.name} from {path}: {type(e).__name__}: {e}"
            log.error("%s", message)
            self._failed[version] = fingerprint
            self._set_status(VersionStatus(version, END, message))
            return None
        self._failed.pop(version, None)
        self._set_status(VersionStatus(version, AVAILABLE))
        log.info("model %s: version %d is AVAILABLE", self.name, version)
        return loaded

    # ---- reading (any thread)

    def statuses(self) -> list[VersionStatus]:
        return sorted(self._status.values(), key=lambda s: -s.version)

    def resolve(self, version: int | None) -> LoadedVersion:
        loaded = self.loaded
        if version is None:
            if loaded:
                return loaded[max(loaded)]
            raise not_found(f"Servable not found for request: Latest({self.name}): {self.why_none()}")
        if version in loaded:
            return loaded[version]
        status = self._status.get(version)
        detail = status.error if status and status.error else (
            f"version {version} is not loaded; loaded versions: {sorted(loaded) or 'none'}"
        )
        raise not_found(f"Servable not found for request: Specific({self.name}, {version}): {detail}")

    def why_none(self) -> str:
        failed = [s for s in self.statuses() if s.error]
        if failed:
            return "no version loaded; " + "; ".join(s.error for s in failed)
        loading = [s for s in self.statuses() if s.state == LOADING]
        if loading:
            return f"version {loading[0].version} is still loading"
        return f"no version of model {self.name} found yet under {self.base_path} (waiting for an integer-named version directory)"
