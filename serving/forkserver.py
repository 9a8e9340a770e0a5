"""The process that model processes are forked from (multiprocessing's `forkserver`): it
imports TensorFlow and the model code (`serving.worker`) once, so that a version's process
starts in milliseconds. Light on purpose: `python -m serving` starts it before importing
anything heavy, so that its imports overlap the server's own."""
import multiprocessing
import multiprocessing.forkserver
import threading

_context = None
_lock = threading.Lock()


def context():
    """The forkserver context, started on first use."""
    global _context
    with _lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["serving.worker"])
            multiprocessing.forkserver.ensure_running()
            _context = ctx
        return _context
