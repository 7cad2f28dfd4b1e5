"""Spare buffers: a model's rollback snapshot, kept for the next model when it is gone.

A model's first fit allocates its snapshot buffers (a copy of its parameters,
buffers and optimizer state, ``model._Snapshot``). On a fresh allocation every
page is faulted in at its first write: measured, 46 ms of a 3072-512-256-10
network's one-epoch fit (20 MB) on this project's virtual machine, against 2-3 ms
to copy into buffers already in use. A sweep, a cross-validation or a benchmark
makes model after model of one shape, so the buffers of a model that is gone are
kept here (at most SPARE_BYTES of them; the oldest go first) and handed to the
next snapshot of the same shape, dtype and backend. They never leave the
snapshot, whose contents are written before they are read, so no model sees
another's data.
"""
import threading
import weakref

SPARE_BYTES = 1 << 26

_spares = []             # (key, arrays), oldest first
_lock = threading.RLock()  # reentrant: a collection inside reuse() may run keep()


def reuse(key):
    """The spare arrays stored under ``key`` (taken out of the store), or None."""
    with _lock:
        for i in range(len(_spares) - 1, -1, -1):
            if _spares[i][0] == key:
                return _spares.pop(i)[1]
    return None


def keep_when_gone(owner, key, arrays):
    """Store ``arrays`` under ``key`` once ``owner`` is garbage-collected."""
    weakref.finalize(owner, _keep, key, arrays).atexit = False


def _keep(key, arrays):
    nbytes = sum(a.nbytes for a in arrays)
    if nbytes > SPARE_BYTES:
        return
    with _lock:
        _spares.append((key, arrays))
        total = sum(sum(a.nbytes for a in kept) for _, kept in _spares)
        while total > SPARE_BYTES:
            total -= sum(a.nbytes for a in _spares.pop(0)[1])
