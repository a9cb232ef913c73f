"""A timer that ends this process with a chosen exit code even while a C call holds the
interpreter lock (``MPI_Init`` does, under mpi4py): a POSIX timer whose expiry starts a thread
of the C library that calls ``_exit(code)``, with no Python involved. Linux (the C library's
``timer_create`` with ``SIGEV_THREAD``); :func:`start` returns ``None`` where that is missing,
and the caller falls back to another way out. No MPI here.
"""

from __future__ import annotations

import ctypes

SIGEV_THREAD = 2  # the expiry runs a function in a new thread
CLOCK_MONOTONIC = 1


class _Sigval(ctypes.Union):
    _fields_ = [("sival_int", ctypes.c_int), ("sival_ptr", ctypes.c_void_p)]


class _Thread(ctypes.Structure):
    _fields_ = [("function", ctypes.c_void_p), ("attribute", ctypes.c_void_p)]


class _Un(ctypes.Union):
    # the kernel's struct sigevent is 64 bytes: 16 of header, 48 of this union
    _fields_ = [("pad", ctypes.c_int * 12), ("thread", _Thread)]


class _Sigevent(ctypes.Structure):
    _fields_ = [
        ("value", _Sigval),
        ("signo", ctypes.c_int),
        ("notify", ctypes.c_int),
        ("un", _Un),
    ]


class _Timespec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("interval", _Timespec), ("value", _Timespec)]


class ExitTimer:
    """An armed timer: :meth:`cancel` before it fires, or the process exits with its code."""

    def __init__(self, libc: ctypes.CDLL, timer: ctypes.c_void_p) -> None:
        self.libc = libc
        self.timer: ctypes.c_void_p | None = timer

    def cancel(self) -> None:
        if self.timer is not None:
            self.libc.timer_delete(self.timer)
            self.timer = None


def start(seconds: float, code: int) -> ExitTimer | None:
    """Exit with ``code`` after ``seconds`` unless cancelled; ``None`` if this C library has
    no such timer."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        create, settime, exit_now = libc.timer_create, libc.timer_settime, libc._exit
    except (OSError, AttributeError):
        return None
    event = _Sigevent(notify=SIGEV_THREAD)
    event.value.sival_ptr = code  # the function's argument: _exit reads it as an int
    event.un.thread.function = ctypes.cast(exit_now, ctypes.c_void_p)
    timer = ctypes.c_void_p()
    if create(CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(timer)) != 0:
        return None
    armed = ExitTimer(libc, timer)
    whole = int(seconds)
    when = _Itimerspec(value=_Timespec(whole, int((seconds - whole) * 1e9)))
    if settime(timer, 0, ctypes.byref(when), None) != 0:
        armed.cancel()
        return None
    return armed
