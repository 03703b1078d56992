"""What llama-cpp-python does to the process's output, undone. Two of its habits broke `ragapp ask`:

- while a model loads it points file descriptors 1 and 2, and sys.stdout and sys.stderr, at /dev/null
  (`suppress_stdout_stderr`, abetlen/llama-cpp-python#1874). The chat model loads in a thread while
  the question is searched, so an answer, refusal or error another thread printed meanwhile was lost;
- its log callback reads llama.cpp's levels with an older numbering, so warnings about a model's
  vocabulary reached stderr as errors.

`keep_output()` replaces both: nothing is redirected, and llama.cpp's log lines go to the Python logger
"ragapp.llama_cpp" (errors as errors, the rest as debug), where the application's logging decides.
"""

from __future__ import annotations

import ctypes
import functools
import logging

_LOG = logging.getLogger("ragapp.llama_cpp")
_GGML_ERROR = 4  # ggml_log_level: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5


class _Unredirected:
    """Stands in for `suppress_stdout_stderr`: the same interface, and no redirection."""

    def __init__(self, disable: bool = True) -> None:
        self.disable = disable

    def __enter__(self) -> _Unredirected:
        return self

    def __exit__(self, *_: object) -> None:
        return None


def _log_line(level: int, text: bytes, _user_data: object) -> None:
    _LOG.log(logging.ERROR if level == _GGML_ERROR else logging.DEBUG, "%s", text.decode("utf-8", "replace").rstrip())


@functools.cache
def _callback():
    """The ctypes callback, made once and kept referenced for as long as llama.cpp may call it."""
    import llama_cpp

    return llama_cpp.llama_log_callback(_log_line)


def keep_output() -> None:
    """Keep llama-cpp-python from redirecting the process's output; route llama.cpp's log lines to logging."""
    import llama_cpp
    import llama_cpp._internals
    import llama_cpp.llama

    for module in (llama_cpp._internals, llama_cpp.llama):
        if hasattr(module, "suppress_stdout_stderr"):
            setattr(module, "suppress_stdout_stderr", _Unredirected)
    llama_cpp.llama_log_set(_callback(), ctypes.c_void_p(0))
