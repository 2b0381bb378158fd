"""numba's on-disk kernel cache as the command-line programs use it.

Two things, both for ``python -m producer`` and ``python -m consumer`` only (the
Python API leaves numba as it is):

* **Cheap cache loads** (:func:`fast_cache_loads`).  Before loading a cached
  kernel, numba's ``Cache.load_overload`` refreshes the target context: it imports
  every typing and lowering registry numba has (arrays, lists, dicts, sets, random,
  polynomials, ...), and ``numba.np.arraymath`` probes for BLAS by importing
  ``scipy.linalg`` (0.15-0.35 s by itself here).  That cost 0.4-0.7 s of a
  consumer's start-up, yet loading cached machine code needs none of it: only the
  runtime (NRT) whose symbols the code links against.  A compile (cache miss) still
  refreshes everything first, in numba's compiler pipeline.
* **The first-run notice** (:func:`announce_compiles`).  numba broadcasts a
  ``"numba:compile"`` event (``numba.core.event``) when a dispatcher misses its
  cache and is about to compile; the first one prints one line saying what is being
  compiled, about how long it takes, and that later runs use the cache.  A run whose
  kernels are all cached prints nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import re
import sys
import threading
from collections.abc import Callable

__all__ = [
    "announce_compiles",
    "compile_notice",
    "fallback_notice",
    "fast_cache_loads",
    "is_compile_notice",
    "is_kernel_notice",
    "to_stderr",
    "when_numba_loads",
]

_NOTICE = re.compile(r"^\w+: compiling the .+ kernels \(first run, about \d+ s\)")
_FALLBACK = re.compile(r"^\w+: .+: the .+ runs numba's kernel \(same results, slower start\)$")


def compile_notice(prog: str, what: str, seconds: float) -> str:
    """The one line a run prints before it compiles: ``prog: compiling the <what> kernels ...``."""
    return (
        f"{prog}: compiling the {what} kernels (first run, about {max(1, round(seconds))} s); "
        "later runs use the cache"
    )


def is_compile_notice(line: str) -> bool:
    """Whether ``line`` is a :func:`compile_notice` (``single_machine.py`` forwards these)."""
    return bool(_NOTICE.match(line))


def to_stderr(line: str) -> None:
    """Write one notice line to stderr at once (the CLIs' notices go through this)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def fallback_notice(prog: str, why: str, what: str) -> str:
    """The one line a run prints when a native kernel cannot be used: numba's runs instead."""
    return f"{prog}: {why}: the {what} runs numba's kernel (same results, slower start)"


def is_kernel_notice(line: str) -> bool:
    """Whether ``line`` is a compile or a fallback notice (``single_machine.py`` shows both)."""
    return is_compile_notice(line) or bool(_FALLBACK.match(line.rstrip("\n")))


def when_numba_loads(setup: Callable[[], object]) -> None:
    """Call ``setup()`` now if numba is imported, else just after its first import.

    A command whose kernels may all be native (the default z-score consumer) never
    imports numba, and so never pays for its set-up; one that does gets the set-up
    before any of its kernels is loaded or compiled (they are defined after
    ``import numba`` returns).
    """
    if "numba" in sys.modules:
        setup()
        return

    class AfterNumba(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name != "numba":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            if spec is None or spec.loader is None:
                return spec
            loader_exec = spec.loader.exec_module

            def exec_module(module):
                loader_exec(module)
                setup()

            spec.loader.exec_module = exec_module  # type: ignore[method-assign]
            return spec

    sys.meta_path.insert(0, AfterNumba())


def fast_cache_loads() -> bool:
    """Make numba load cached kernels without refreshing its whole target context.

    Installs, once per process, a ``numba.core.caching.Cache.load_overload`` that
    initialises the runtime and loads the cached code, as numba's own does after
    its refresh.  Returns whether it is installed (False with a numba whose cache
    class lacks the private methods this relies on: loads then stay numba's own,
    slower but the same; ``tests/test_startup.py`` checks that it is installed).
    """
    from numba.core import caching
    from numba.core.runtime import nrt

    cache = caching.Cache
    if getattr(cache.load_overload, "_tsstream_fast", False):
        return True
    if not (
        hasattr(cache, "_load_overload") and hasattr(cache, "_guard_against_spurious_io_errors")
    ):
        return False

    def load_overload(self, sig, target_context):
        # What numba's refresh() does that cached code needs: the NRT symbols it links to.
        nrt.rtsys.initialize(target_context)
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)

    load_overload._tsstream_fast = True  # type: ignore[attr-defined]
    load_overload.__doc__ = cache.load_overload.__doc__
    cache.load_overload = load_overload
    return True


def announce_compiles(
    prog: str, what: str, seconds: float, write: Callable[[str], object] | None = None
) -> None:
    """Print :func:`compile_notice` once, when the first kernel of this process compiles.

    Parameters
    ----------
    prog
        The program (``"consumer"``) that starts the line.
    what
        What is compiled (``"stl"``, ``"generator"``).
    seconds
        The expected wait (a cold compile measured on the development machine).
    write
        Where the line goes, without its newline (default: :func:`to_stderr`).
    """
    from numba.core import event

    line = compile_notice(prog, what, seconds)
    listener = _first_compile_listener()(line, write or to_stderr)
    event.register("numba:compile", listener)


def _first_compile_listener():
    """The listener class (it derives from numba's, so it is built when numba is loaded)."""
    from numba.core import event

    class FirstCompile(event.Listener):
        """Writes its line at the first ``numba:compile`` event, then stays silent."""

        def __init__(self, line: str, write: Callable[[str], object]) -> None:
            self.line, self.write = line, write
            self.lock = threading.Lock()
            self.done = False

        def on_start(self, ev) -> None:
            with self.lock:  # compiles hold numba's compiler lock; this one is ours
                if self.done:
                    return
                self.done = True
            self.write(self.line)

        def on_end(self, ev) -> None:
            pass

    return FirstCompile
