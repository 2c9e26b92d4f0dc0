"""What the typed config's knobs of one kind share, in config.py and in the policies it holds
(SourcePolicy) alike."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

# The longest wait a knob may set (a deadline, a timeout, an idle time): gRPC takes them in
# milliseconds as 32-bit integers (24.8 days), and longer ones had ended in an OverflowError
# at start-up or in every fetch, or in a deadline already past at every request.
MAX_WAIT_S = 7 * 24 * 3600.0
# gRPC's sizes are 32-bit integers too (a 4 GiB message limit had failed at start-up).
MAX_GRPC_BYTES = 2**31 - 1

# A folder the services make files in or read them from, taken from the working folder when
# the config names it relatively: a relative staging folder had failed every request (a file
# URI is absolute).
Folder = Annotated[Path, AfterValidator(lambda path: path.absolute())]
