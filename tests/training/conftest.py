"""tqdm's write lock made process-local for every process that collects these tests.

tqdm guards its bars with a ``multiprocessing.RLock`` (a POSIX semaphore) created on the
first bar, even a disabled one, and kept on the class. A process forked after that
shares the semaphore. mutmut (``process_isolation = "fork"``) runs the tests once in its
own process, then forks one child per mutant: a mutant that raises while a bar holds the
lock (``unit=None`` in ``train_model``'s bar fails inside ``display()``, between tqdm's
``acquire`` and ``release``) leaves the shared semaphore taken, and every later child
blocks in ``tqdm.__new__`` until mutmut's time limit: the timeouts were a deadlock, not
kills (benchmarks/mutation.py, issue 12). No test here draws bars from several processes
at once, so a thread lock is enough; it is set while collecting, before any bar exists.
"""

from __future__ import annotations

from tqdm import auto, std

std.TqdmDefaultWriteLock.mp_lock = None  # create_mp_lock keeps an existing attribute
for _cls in {std.tqdm, auto.tqdm}:
    if "_lock" in vars(_cls):  # a bar was made before collection: replace its lock too
        _cls.set_lock(std.TqdmDefaultWriteLock())
