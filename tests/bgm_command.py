"""`bgm ARGS` as a user runs it: in the test's own process, or in a process of its own.

The `bgm` script is services.launch's main(), which sets the signal handlers and calls
services.cli's main() with the arguments: calling that here runs the same parsing, work,
output and exit status without a new interpreter paying seconds of imports (scipy, PyAV,
torch, transformers) for every command. `bgm_process` is for what only a process
shows: the entry point itself, its exit status with nothing printed as a traceback, and what a
command imports.
"""

from __future__ import annotations

import contextlib
import io
import signal
import subprocess
import sys
from dataclasses import dataclass

from services import cli
from services.cli import main


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str


def bgm(*args: str) -> Finished:
    stdout, stderr = io.StringIO(), io.StringIO()
    # What the command sets for its process (signal handlers, Python's report of ignored
    # exceptions, its interrupt flags) is put back: left, pytest's own report of an
    # exception in a __del__ was silenced for every later test on the worker.
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    hook = sys.unraisablehook
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = main(list(args))
            except SystemExit as exit_:  # argparse's refusals, --help and --version
                code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        sys.unraisablehook = hook
        cli._interrupted = cli._interrupt_raised = False
    return Finished(code, stdout.getvalue(), stderr.getvalue())


def bgm_process(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.launch", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
