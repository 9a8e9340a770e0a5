"""Which versions of a model exist on disk, which are loaded, and which one a request gets.

The model's base path holds one directory per version, named by an integer in ASCII digits;
anything else (such as `.tmp-123` while the pipeline's Pusher writes) is ignored. Each poll
loads the versions the policy wants (TF Serving's `model_version_policy`: the newest N that
load, specific versions, or all) and unloads the others. Loading a version includes its
warmup; only then is it swapped in, with one assignment, so a request sees either the old
set or the new one, and a request that already holds a version finishes on it. A version
that fails to load is reported (state END with its error) and skipped; it is tried again
only if its files change.

Labels (`stable`, `canary`, ...) name versions, from the model config file; a request that
names a label gets the version it names, as if it had named the number.
"""

import dataclasses
import logging
import os
import threading
from typing import Callable

from components.model_versions import version_number
from serving.errors import LoadError, invalid, not_found, without_paths

log = logging.getLogger("serving")

LOADING, AVAILABLE, END = "LOADING", "AVAILABLE", "END"


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
    """TF Serving's `model_version_policy`: `latest` keeps the newest `num_versions` that
    load; `specific` the `versions` listed; `all` every version on disk."""

    kind: str = "latest"
    num_versions: int = 1
    versions: frozenset = frozenset()

    def __post_init__(self):
        assert self.kind in ("latest", "specific", "all"), self.kind


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
    """Integer-named subdirectories of the base path: version -> path."""
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
    """One model's versions. `load(name, version, path)` returns a loaded, warmed-up version
    or raises; `on_change(states)` hears every change of the version states."""

    def __init__(self, name: str, base_path: str, load: Callable, policy: VersionPolicy = VersionPolicy(),
                 labels: dict[str, int] | None = None, on_change: Callable[[dict[int, str]], None] | None = None):
        self.name = name
        self.base_path = base_path
        self.policy = policy
        self.labels = dict(labels or {})  # replaced whole, never mutated
        self._load = load
        self._on_change = on_change
        self._lock = threading.Lock()  # one poll at a time
        self.loaded: dict = {}  # version -> LoadedVersion; replaced whole, never mutated
        self._status: dict[int, VersionStatus] = {}  # replaced whole, never mutated
        self._failed: dict[int, tuple] = {}  # version -> fingerprint of the files that failed
        self._warned_empty = False

    # ---- polling (runs in the poller thread, or the caller's at start-up)

    def poll(self) -> None:
        with self._lock:
            self._poll()

    def _wanted(self, on_disk: dict[int, str]):
        """The versions to hold, newest first, and how many of them (None: all)."""
        if self.policy.kind == "specific":
            return sorted((v for v in on_disk if v in self.policy.versions), reverse=True), None
        if self.policy.kind == "all":
            return sorted(on_disk, reverse=True), None
        return sorted(on_disk, reverse=True), max(1, self.policy.num_versions)

    def _poll(self) -> None:
        on_disk = version_dirs(self.base_path)
        if not on_disk and not self._warned_empty:
            log.warning("model %s: no version directory under %s yet; waiting for one", self.name, self.base_path)
        self._warned_empty = not on_disk
        candidates, limit = self._wanted(on_disk)
        keep: dict = {}
        for version in candidates:
            if limit is not None and len(keep) == limit:
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
            self._changed()
        self._check_labels()

    def _set_status(self, status: VersionStatus) -> None:
        # Copy on write: readers in other threads iterate the dict without a lock.
        self._status = {**self._status, status.version: status}
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change({v: s.state for v, s in self._status.items()})

    def _try_load(self, version: int, path: str):
        self._set_status(VersionStatus(version, LOADING))
        log.info("model %s: loading version %d from %s", self.name, version, path)
        fingerprint = _fingerprint(path)
        try:
            loaded = self._load(self.name, version, path)
        except Exception as e:  # noqa: BLE001 - any failure to load is reported, not raised
            log.error("Failed to load version %d of model %s from %s: %s: %s", version, self.name, path,
                      type(e).__name__, e)
            why = str(e) if isinstance(e, LoadError) else f"{type(e).__name__}: {e}"
            message = f"Failed to load version {version} of model {self.name}: {without_paths(why)}"
            self._failed[version] = fingerprint
            self._set_status(VersionStatus(version, END, message))
            return None
        self._failed.pop(version, None)
        self._set_status(VersionStatus(version, AVAILABLE))
        log.info("model %s: version %d is AVAILABLE", self.name, version)
        return loaded

    def set_labels(self, labels: dict[str, int], policy: VersionPolicy | None = None) -> None:
        """New labels (and policy), from a reread model config; the next poll applies the policy."""
        self.labels = dict(labels)
        if policy is not None:
            self.policy = policy
        self._check_labels()

    def _check_labels(self) -> None:
        for label, version in sorted(self.labels.items()):
            if version not in self.loaded:
                log.warning("model %s: label '%s' names version %d, which is not available", self.name, label, version)

    # ---- reading (any thread)

    def statuses(self) -> list[VersionStatus]:
        return sorted(self._status.values(), key=lambda s: -s.version)

    def label_version(self, label: str) -> int:
        version = self.labels.get(label)
        if version is None:
            raise invalid(f"Unrecognized servable version label: {label}; model {self.name} has labels {sorted(self.labels) or 'none'}")
        return version

    def resolve(self, version: int | None):
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

    @property
    def ready(self) -> bool:
        return bool(self.loaded)

    def why_none(self) -> str:
        failed = [s for s in self.statuses() if s.error]
        if failed:
            return "no version loaded; " + "; ".join(s.error for s in failed)
        loading = [s for s in self.statuses() if s.state == LOADING]
        if loading:
            return f"version {loading[0].version} is still loading"
        return f"no version of model {self.name} found yet (waiting for an integer-named version directory)"
