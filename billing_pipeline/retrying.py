"""Retries with exponential backoff for I/O errors that go away by themselves.

A network file system that hiccups (``EIO``, ``ESTALE``, a timeout) should not cost a
client-month its charges or its invoice; a missing file, a permission problem or a full disk
will not go away in a second, so those fail at once. The work retried must be idempotent:
every writer here replaces its files atomically (``storage.atomic_path``).
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

TRANSIENT_ERRNOS = frozenset(
    {
        errno.EINTR,
        errno.EAGAIN,
        errno.EBUSY,
        errno.EIO,
        errno.ESTALE,
        errno.ETIMEDOUT,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ENETDOWN,
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
    }
)
ATTEMPTS = 4
FIRST_DELAY = 0.2  # seconds; then 0.4, 0.8: about 1.4 s in all before giving up


def is_transient(exc: BaseException) -> bool:
    """An OSError worth retrying: a timeout or connection error, or an errno listed above."""
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


def with_retries(
    work: Callable[[], T],
    *,
    what: str,
    attempts: int = ATTEMPTS,
    first_delay: float = FIRST_DELAY,
    log: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``work()``, tried again after ``first_delay``, then twice that, ... on a transient error.

    Any other exception, or the last transient one, propagates unchanged.
    """
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except OSError as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            if log is not None:
                log(
                    f"{what}: transient I/O error ({exc}); "
                    f"attempt {attempt + 1} of {attempts} in {delay:.2f}s"
                )
            sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")  # the loop returns or raises
