"""One run at a time per metadata store: an overlapping run waits for the one before it.

Schedulers start runs that overlap (a slow run and the next scheduled one, a manual run
beside a scheduled one). Two runs on one SQLite ML Metadata store and pipeline root would
interleave their writes, and both may push. We serialize rather than refuse: the second
run waits, then runs on the finished state, so an unchanged input is served from the cache
and no scheduled run is silently dropped. While it waits it prints who holds the lock
(pid, host, start time, command), once.

The lock is ``flock`` on ``<metadata>.lock`` beside the metadata file. The kernel releases
it when its holder exits, even when killed, so there is never a stale lock to clean up.
It serializes processes that share a local filesystem (one machine); it is not meant for
NFS shared between hosts. A remote metadata store (not SQLite) is not locked here.
"""
import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from typing import Callable, Iterator


def holder(path: str) -> str:
    """Who holds the lock at ``path``, as a phrase (from what the holder wrote there)."""
    try:
        with open(path, encoding='utf-8') as f:
            info = json.loads(f.read() or '{}')
    except (OSError, ValueError):
        info = {}
    if not info:
        return 'a run that has not yet written its name'
    return (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"
            f" ({info.get('command')})")


@contextlib.contextmanager
def run_lock(metadata_path: str, log: Callable[[str], None] = print) -> Iterator[bool]:
    """Holds the run lock of ``metadata_path`` for the block; waits for it if need be.

    Yields whether it had to wait (another run held it), i.e. whether what is on disk may
    have changed since the caller last looked.
    """
    if '://' in metadata_path:
        yield False
        return
    path = os.path.abspath(metadata_path) + '.lock'
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        waited = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waited = True
            since = time.time()
            log(f'Another run holds {path}: {holder(path)}. Waiting for it to finish ...')
            fcntl.flock(fd, fcntl.LOCK_EX)
            log(f'... it finished after {time.time() - since:.0f}s; this run starts now.')
        info = {'pid': os.getpid(), 'host': socket.gethostname(),
                'started': time.strftime('%Y-%m-%d %H:%M:%S %Z'),
                'command': ' '.join(os.path.basename(a) if i == 0 else a
                                    for i, a in enumerate(sys.argv))[:200]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield waited
    finally:
        os.close(fd)  # releases the lock
