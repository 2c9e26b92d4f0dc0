"""The `bgm` command's entry point: it takes Ctrl-C and SIGTERM before anything else loads.

services.cli's own imports (rich, the config, the vocabulary) take about half a second, and
until its main() set its handlers a Ctrl-C there had been a KeyboardInterrupt traceback.
Here a signal that comes meanwhile is only noted; main() stops on it as on any other. And
gRPC's own log is kept to its errors.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

# Stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it); services.cli's too (it
# loads after this, so the status lives here).
EXIT_INTERRUPTED = 130


def main() -> int:
    # gRPC's C core logs to stderr at INFO unless told otherwise: a TLS handshake that
    # failed had put its line before the command's own one-line error. A user's setting wins.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    received: list[int] = []

    def note(signum: int, frame: object) -> None:
        received.append(signum)

    signal.signal(signal.SIGINT, note)
    signal.signal(signal.SIGTERM, note)
    from services.cli import main as run_command

    # (The status if a signal lands in the instant between the command's return and the
    # handlers below: the command's own interrupt handler raises it there.)
    status = EXIT_INTERRUPTED
    try:
        status = run_command(sys.argv[1:], received_before=received)
    except KeyboardInterrupt:
        pass
    finally:
        # The command is done and has said so (its outputs written, its summary printed). The
        # process ends here, with the command's status: Python's own teardown (0.3-0.7 s after
        # a score, freeing what the models and libraries hold) resets the signal handlers on
        # its way, and a Ctrl-C or SIGTERM then had ended the process by the signal, silently,
        # after a summary of written files. What the command printed and logged goes out first.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    sys.exit(main())
