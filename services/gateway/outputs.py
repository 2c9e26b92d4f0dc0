"""Where outputs may go (checked before any work), and outputs written all or nothing: each
under a temporary name beside its final one (unique to the call, so requests writing into one
folder never collide), renamed into place only when every output is complete and has its
place, and removed with any folder made for them on failure.

The gateway's delivery and `bgm client` (which writes what the gateway streams) share it.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.domain import OutputOptions
from services.errors import InvalidInputError, PermissionDeniedError
from services.media.audio import output_kind
from services.media.files import special_kind
from services.media.sources import inside_roots

# A temporary file beside an output that nothing has written for this long is one a process
# killed outright (SIGKILL, the OOM killer) left behind: the next output of that name takes
# it away. A live one is written as its output is made (minutes, for a 2-hour video).
STALE_PARTIAL_S = 6 * 3600.0


@dataclass
class Staging:
    """(temporary, final) paths of outputs being written, and folders made for them."""

    files: list[tuple[Path, Path]] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)

    def temporary(self, final: Path) -> Path:
        """A temporary name for `final` (`temporary_path`), staged to be renamed to it; the
        stale ones of `final` (STALE_PARTIAL_S) are removed first: a killed process's had
        been left in the folder for good, hidden (each as large as its output)."""
        stale_before = time.time() - STALE_PARTIAL_S
        # Exactly `temporary_path`'s names for `final`: a user's own .NAME.partial-notes.mp4,
        # or another output's partial, had matched a looser pattern.
        named = re.compile(rf"\.{re.escape(final.stem)}\.partial-[0-9a-f]{{32}}"
                           rf"{re.escape(final.suffix)}")  # fmt: skip
        for partial in final.parent.glob(f".{glob.escape(final.stem)}.partial-*"):
            with contextlib.suppress(OSError):
                if named.fullmatch(partial.name) and partial.lstat().st_mtime < stale_before:
                    partial.unlink()
        temporary = temporary_path(final)
        self.files.append((temporary, final))
        return temporary

    def make_folder(self, folder: Path) -> None:
        """Make `folder` and any missing parents, each remembered for removal on failure."""
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        for path in reversed(missing):
            path.mkdir(exist_ok=True)
            self.folders.append(path)


def check_within(path: Path, roots: Sequence[Path]) -> None:
    """Refuse `path` unless its folder, links followed, lies in one of `roots` (none: any)."""
    if roots and not inside_roots(path.parent, list(roots)):
        raise PermissionDeniedError(
            f"{path.name}: its folder has left the output roots (a link put there meanwhile?)",
            field="output.output_uri",
        )


@contextlib.contextmanager
def staged_outputs(replace: bool = True, within: Sequence[Path] = ()) -> Iterator[Staging]:
    """Rename every staged file into place on success, once each is known to have a place (a
    folder where a file would go refuses them all) in the folders `within` (`check_within`);
    delete them (and any folder made for them, and any already renamed) on failure, whatever
    the failure. Unless `replace`, a file already at a final name stays and the outputs fail
    (`_place_new`)."""
    staging = Staging()
    staged = staging.files
    created_dirs = staging.folders
    renamed: list[Path] = []
    try:
        yield staging
        for _temporary, final in staged:
            check_within(final, within)
            if final.is_dir():
                raise InvalidInputError(f"{final.name}: a folder is where this output goes",
                                        field="output.output_uri")  # fmt: skip
        for temporary, final in staged:
            # Not made again: a temporary lies beside its final name, so its folder is gone
            # only if the request's was removed meanwhile (a folder made here was left
            # behind).
            if replace:
                os.replace(temporary, final)
            else:
                _place_new(temporary, final)
            renamed.append(final)
    except BaseException:
        # Whatever is left of them (a folder made a file meanwhile refuses even the unlink,
        # whose error had hidden the one that failed the outputs).
        for path in (*(temporary for temporary, _final in staged), *renamed):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        for folder in reversed(created_dirs):
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _place_new(temporary: Path, final: Path) -> None:
    """Give `temporary` the name `final` unless something has it: the check before the work
    had let two commands writing one output both succeed, the later replacing the earlier.
    A hard link is made or refused in one step; where the file system has none (FAT, some
    network shares) the name is checked just before the rename instead."""
    try:
        os.link(temporary, final, follow_symlinks=False)
    except FileExistsError:
        pass
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if not (final.exists() or final.is_symlink()):
            os.replace(temporary, final)
            return
    else:
        temporary.unlink()
        return
    raise InvalidInputError(
        f"{final} was written meanwhile (by another command?); pass --force to replace it"
    )


# What marks a stem bgm wrote (its WAV's comment): `bgm score --stems DIR --force` removes
# an earlier piece's stems, and only those (it had removed every WAV in the folder).
STEM_TAGS = {"comment": "bgm stem"}


def is_stem(path: Path) -> bool:
    """Whether the WAV at `path` is a stem bgm wrote (a pipe of that name is not read)."""
    from services.media.audio import file_tags

    return path.is_file() and file_tags(path).get("comment") == STEM_TAGS["comment"]


def temporary_path(final: Path) -> Path:
    """Beside the final name and unique to the call: requests writing into one folder at once
    never share a temporary file."""
    return final.with_name(f".{final.stem}.partial-{uuid.uuid4().hex}{final.suffix}")


def check_plain(path: Path, what: str) -> None:
    """An output that exists is a plain file (or a folder, said elsewhere): --force had
    replaced a device node, a pipe or a symbolic link with a file of music."""
    try:
        kind = special_kind(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return
    if kind is not None:
        raise InvalidInputError(f"{what} {path} is {kind}; bgm writes only plain files")


def check_writable(path: Path, what: str, make_folder: bool = False) -> None:
    check_plain(path, what)
    folder = path.parent if str(path.parent) else Path(".")
    if make_folder:
        # The nearest folder that exists is where the missing ones will be made.
        folder = next((p for p in (folder, *folder.parents) if p.exists()), folder)
    if path.is_dir():
        raise InvalidInputError(f"{what} {path} is a directory")
    if folder.exists() and not folder.is_dir():
        raise InvalidInputError(f"cannot write {what} {path}: {folder} is a file, not a folder")
    if not folder.is_dir():
        raise InvalidInputError(f"cannot write {what} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InvalidInputError(f"cannot write {what} {path}: folder {folder} is not writable")


def check_output_paths(options: OutputOptions) -> None:
    """Every output's kind and place (what can be refused before any model loads)."""
    output_kind(options.output)
    check_writable(options.output, "output", options.make_folder)
    if options.midi is not None:
        if options.midi.suffix.lower() not in (".mid", ".midi"):
            raise InvalidInputError(f"MIDI output {options.midi.name} must end in .mid")
        check_writable(options.midi, "MIDI file", options.make_folder)
    if options.stems_dir is not None:
        if (options.output.suffix.lower() == ".wav"
                and options.output.parent.resolve() == options.stems_dir.resolve()):  # fmt: skip
            # A stem could take its name (piano.wav): the mix had been lost under it.
            raise InvalidInputError(f"the output {options.output.name} is in the stems folder, "
                                    "where a stem may take its name: write it elsewhere",
                                    field="output.stems")  # fmt: skip
        if options.stems_dir.exists() and not options.stems_dir.is_dir():
            raise InvalidInputError(f"stems folder {options.stems_dir} is a file",
                                    field="output.stems")  # fmt: skip
        check_writable(
            options.stems_dir / "x.wav" if options.stems_dir.is_dir() else options.stems_dir,
            "stems folder",
            options.make_folder,
        )
