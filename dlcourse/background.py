"""Two trainings at once, each on its own share of the CPU: the fair way to compare them in equal time.

    job = in_background(train, pixel_net, images, schedule, seconds=180, progress=False, threads=1)
    with cpu_threads(1):
        latent = train(latent_net, latents, schedule, seconds=180)    # the same 180 s, beside it
    pixel = job.result()                                                # a TrainResult, as from train

``in_background`` runs ``fn(*args, **kwargs)`` in a second Python process (started with "spawn", so it
works in a notebook and with CUDA) limited to ``threads`` CPU threads, and returns at once. The two
processes then share the machine for the same wall-clock seconds, so neither model gets more CPU than the
other whatever the machine: on two cores each gets one, on one core each gets half. Running them one after
the other would take twice as long.

The arguments are copied into the other process, and the result is copied back: a model passed in stays as
it was, the trained one comes back in the result. ``fn`` must be importable by name (a function of a
module, such as ``dlcourse.training.train``, not one defined in the notebook), and the arguments and result
must pickle. An exception raised by ``fn`` is raised again by ``result()``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import pickle
from collections.abc import Callable, Iterator

import torch

from .validation import check_positive

__all__ = ["BackgroundJob", "cpu_threads", "in_background"]


@contextlib.contextmanager
def cpu_threads(threads: int) -> Iterator[None]:
    """Limit this process's torch to ``threads`` CPU threads inside the ``with`` block, then restore."""
    threads = check_positive("threads", threads, integer=True)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _call(payload: bytes, threads: int) -> bytes:
    # runs in the other process; plain pickle carries tensors by value (no shared memory, which
    # containers often keep small)
    torch.set_num_threads(threads)
    fn, args, kwargs = pickle.loads(payload)
    return pickle.dumps(fn(*args, **kwargs))


class BackgroundJob:
    """A call running in another process; ``result()`` waits for it and returns its value."""

    def __init__(self, fn: Callable, args: tuple, kwargs: dict, threads: int):
        self.name = getattr(fn, "__qualname__", repr(fn))
        payload = pickle.dumps((fn, args, kwargs))
        self._pool = multiprocessing.get_context("spawn").Pool(1)
        self._async = self._pool.apply_async(_call, (payload, threads))
        self._value, self._finished = None, False

    def done(self) -> bool:
        """Whether the call has finished (returned or raised)."""
        return self._finished or self._async.ready()

    def result(self, timeout: float | None = None):
        """The call's return value, waiting up to ``timeout`` seconds (forever if None).

        Raises:
            TimeoutError: it is still running after ``timeout`` seconds (it goes on; ask again or ``stop()``).
            Whatever ``fn`` raised, raised again here.
        """
        if not self._finished:
            try:
                payload = self._async.get(timeout)
            except multiprocessing.TimeoutError:
                raise TimeoutError(f"in_background: {self.name} still runs after {timeout} s") from None
            except BaseException:
                self.stop()
                raise
            self._value, self._finished = pickle.loads(payload), True
            self._pool.close()
            self._pool.join()
        return self._value

    def stop(self) -> None:
        """End the other process now (its work is lost)."""
        self._pool.terminate()
        self._pool.join()

    def __repr__(self) -> str:
        return f"BackgroundJob({self.name}, {'done' if self.done() else 'running'})"


def in_background(fn: Callable, /, *args, threads: int = 1, **kwargs) -> BackgroundJob:
    """Start ``fn(*args, **kwargs)`` in another process on ``threads`` CPU threads; returns at once.

    Args:
        fn: a function importable by name (defined in a module, not in a notebook cell).
        *args, **kwargs: its arguments; they must pickle (tensors, models, numbers, strings).
        threads: torch CPU threads of the other process (a positive int).
    Returns:
        A ``BackgroundJob``: ``job.result()`` waits and returns ``fn``'s value.
    """
    if not callable(fn):
        raise TypeError(f"in_background: fn must be a function, got {type(fn).__name__}")
    if getattr(fn, "__module__", None) == "__main__" or "<locals>" in getattr(fn, "__qualname__", ""):
        raise ValueError(f"in_background: fn must be importable by name from a module (the other process "
                         f"imports it), got {fn.__qualname__} defined in {fn.__module__}")
    threads = check_positive("threads", threads, integer=True)
    return BackgroundJob(fn, args, kwargs, threads)
