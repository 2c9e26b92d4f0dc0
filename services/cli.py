"""The `bgm` command line."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import json
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from services.config import BgmConfig, load_config
from services.errors import BgmError, InvalidInputError, PermissionDeniedError
from services.launch import EXIT_INTERRUPTED
from services.rules import SPEECH_MODES, speech_matters
from services.vocabulary import load_vocabulary

if TYPE_CHECKING:  # the pipeline's modules load only when a command needs them
    from services.domain import OutputOptions, UserControls
    from services.pipeline import Part


def _process_age_s() -> float:
    """Seconds since this process started (the interpreter's own start-up included), from
    /proc where there is one; elsewhere 0, so the clock starts at this module's import."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


# When the command started, on the perf_counter clock: the summary's wall time counts from it.
STARTED = time.perf_counter() - _process_age_s()

# Exit status for input the program refuses (matches argparse's usage errors).
EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1
# The gRPC codes of a refusal of what the caller sent (`bgm client score` exits 2 on them).
CALLERS_CODES = frozenset({"INVALID_ARGUMENT", "OUT_OF_RANGE", "NOT_FOUND", "ALREADY_EXISTS",
                           "PERMISSION_DENIED", "UNAUTHENTICATED"})  # fmt: skip


@contextlib.contextmanager
def progress_bar(label: str, console: Console) -> Iterator[Callable[[float], None]]:
    """A progress bar on a terminal; silent when output is piped or captured. Each report
    stops the work if SIGTERM or Ctrl-C came (`_interrupt`)."""
    if not console.is_terminal:
        yield lambda fraction: _stop_if_interrupted()
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(escape(label), total=1.0)

        def report(fraction: float) -> None:
            _stop_if_interrupted()
            progress.update(task, completed=fraction)

        yield report


def _analyze(args: argparse.Namespace) -> int:
    from services.tagger.backend import AnalysisRequest
    from services.tagger.backends import create_tagger_backend
    from services.tagger.report import print_summary, save_plot

    config = _with_backend_flags(load_config(args.config), args)
    if args.plot:
        _check_plot(Path(args.plot), Path(args.video), args.force)
    stdout = summary_console()
    stderr = Console(stderr=True)
    backend = create_tagger_backend(config.tagger)
    request = AnalysisRequest(video_path=Path(args.video), prompt=args.prompt or "")
    with progress_bar(f"analysing {Path(args.video).name}", stderr) as report:
        analysis = backend.analyze(request, progress=report)
    if args.plot:
        from services.gateway.outputs import staged_outputs

        # Under a temporary name, renamed when whole: a full disk had left part of a PDF.
        with staged_outputs(replace=args.force) as staging:
            partial = staging.temporary(Path(args.plot))
            save_plot(analysis, partial)
    if args.json:
        sys.stdout.write(json.dumps(analysis.to_json_dict(), indent=2) + "\n")
    else:
        print_summary(analysis, stdout)
        if args.plot:
            stdout.print(f"plot saved to {escape(args.plot)}")
    return 0


def _controls(args: argparse.Namespace, max_reference_bytes: int):
    from services.domain import UserControls
    from services.rules import check_candidates

    # In the command's words for every count (the request's schema, checked next, had said
    # "must be at least 0" of -1 and the command "must be 1..4" of 0).
    check_candidates(args.candidates)
    controls = UserControls(
        genres=args.genre or [],
        moods=args.mood or [],
        instruments=args.instrument or [],
        bpm=args.bpm,
        key=args.key,
        negative=args.negative or [],
        prompt=args.prompt or "",
        seed=args.seed,
        structure=args.structure,
        reference_audio=_reference(args.reference, max_reference_bytes),
        candidates=args.candidates,
        speech=args.speech,
    )
    return controls


def _reference(path: str | None, max_bytes: int) -> bytes:
    if path is None:
        return b""
    reference = Path(path)
    try:
        size = _regular_file(reference, "the reference audio").stat().st_size
        if size > max_bytes:
            raise InvalidInputError(f"the reference audio {path} is {size} bytes; the limit is "
                                    f"{max_bytes} (limits.max_reference_bytes)")  # fmt: skip
        return reference.read_bytes()
    except OSError as error:
        raise InvalidInputError(
            f"cannot read the reference audio {path}: {error.strerror}"
        ) from None


def _regular_file(path: Path, what: str) -> Path:
    """`path`, refused unless it is a file that may be read: a FIFO or a device (/dev/zero)
    had been read without end, hanging the command or filling its memory, and one it may
    not read had been the raw errno, exit 1."""
    try:
        if not path.exists():
            from services.media.files import LOOPED, leads_round

            if leads_round(path):
                raise InvalidInputError(f"cannot read {what} {path}: {LOOPED}")
            raise InvalidInputError(f"cannot read {what} {path}: no such file")
        if not path.is_file():
            raise InvalidInputError(f"cannot read {what} {path}: not a file")
        path.open("rb").close()
    except PermissionError:
        raise PermissionDeniedError(f"cannot read {what} {path}: permission denied") from None
    return path


def _output_options(args: argparse.Namespace, video: str, inputs: list[Path]) -> Any:
    """The outputs the arguments name for `video`: -o FILE, or with -o FOLDER/ (or an
    existing folder) FOLDER/<video's name>.<--format>. Refused when one is an input, or
    exists (unless --force)."""
    from services.domain import OutputOptions
    from services.gateway.outputs import check_plain

    output = Path(args.output)
    if _into_folder(args):
        output = output / f"{Path(video).stem}.{args.format or 'mp4'}"
    elif args.format and output.suffix.lower() != f".{args.format}":
        # -o FILE names its format by its extension (--format had been passed over).
        raise InvalidInputError(
            f"--format {args.format} is for an -o folder; {output.name} "
            f"names its own format (end -o with / to write into a folder)"
        )
    midi = Path(args.midi) if args.midi else None
    stems = Path(args.stems) if args.stems else None
    for target, what in ((output, "output"), (midi, "MIDI file")):
        if target is None:
            continue
        check_plain(target, what)
        if not target.exists():
            continue
        if any(source.exists() and target.samefile(source) for source in inputs):
            raise InvalidInputError(f"{target} is an input: bgm never writes over its input")
        if not args.force:
            raise InvalidInputError(f"{target} exists; pass --force to replace it")
    if stems is not None and stems.is_dir() and any(stems.glob("*.wav")) and not args.force:
        raise InvalidInputError(f"{stems} already holds stems; pass --force to replace them")
    return OutputOptions(
        output=output,
        midi=midi,
        stems_dir=stems,
        sample_rate=args.sample_rate or 0,
        lufs=args.lufs,
        keep_original_audio=args.keep_original_audio,
        replace_existing=args.force,
    )


def _into_folder(args: argparse.Namespace) -> bool:
    """Whether -o names a folder to write into (a trailing slash, or one that exists)."""
    return args.output.endswith(("/", os.sep)) or Path(args.output).is_dir()


def _with_backend_flags(config: Any, args: argparse.Namespace) -> Any:
    """--tagger/--tagger-model and --generator/--generator-model over the config file."""
    tagger = config.tagger
    if getattr(args, "tagger", None):
        tagger = tagger.model_copy(update={"backend": args.tagger})
    if getattr(args, "tagger_model", None):
        if tagger.backend != "vlm":
            raise InvalidInputError(f"--tagger-model is the vlm backend's model; the tagger "
                                    f"is {tagger.backend} (--tagger vlm)")  # fmt: skip
        vlm = tagger.vlm.model_copy(update={"model_path": Path(args.tagger_model)})
        tagger = tagger.model_copy(update={"vlm": vlm})
    generator = config.generator
    if getattr(args, "generator", None):
        generator = generator.model_copy(update={"backend": args.generator})
    if getattr(args, "generator_model", None):
        if generator.backend not in ("diffusion", "symbolic-diffusion"):
            raise InvalidInputError(
                f"--generator-model is a diffusion or symbolic-diffusion model; the generator "
                f"is {generator.backend} (--generator diffusion)"
            )
        # The model of the chosen backend.
        section = "symbolic_diffusion" if generator.backend == "symbolic-diffusion" else "diffusion"
        backend = getattr(generator, section).model_copy(
            update={"model_path": Path(args.generator_model)}
        )
        generator = generator.model_copy(update={section: backend})
    return config.model_copy(update={"tagger": tagger, "generator": generator})


def _score(args: argparse.Namespace) -> int:
    from services.contract import controls_to_proto
    from services.edge import EdgeSchema
    from services.gateway.controls import validate_controls
    from services.media.files import check_readable_video

    config = _with_backend_flags(load_config(args.config), args)
    videos = [Path(video) for video in args.video]
    if len(videos) > 1 and not _into_folder(args):
        raise InvalidInputError("with several videos, -o names a folder (end it with /)")
    if len(videos) > 1 and (args.midi or args.stems):
        raise InvalidInputError("--midi and --stems name one file or folder: score the "
                                "videos one at a time with them")  # fmt: skip
    controls = _controls(args, config.limits.max_reference_bytes)
    # The request limits the services hold every caller to (a seed of -1 had failed in numpy
    # after the whole job; 2**32 and a 100,000-character prompt had been taken).
    EdgeSchema(config.limits).check(controls_to_proto(controls))
    reference = [Path(args.reference)] if args.reference else []
    jobs = [(video, _output_options(args, str(video), [*videos, *reference]))
            for video in videos]  # fmt: skip
    outputs = [options.output for _, options in jobs]
    if len(set(outputs)) < len(outputs):
        raise InvalidInputError("two videos share a name: their outputs would collide")
    # What can be refused without the models, before they load (seconds, with a large bank;
    # minutes, with a diffusion model's checkpoint).
    validate_controls(controls, load_vocabulary())
    for video in videos:
        check_readable_video(video)
    from services.generator.backends import OUTPUTS, SAMPLE_RATES

    backend = config.generator.backend
    for asked, output, flag in ((args.midi, "midi", "--midi"), (args.stems, "stems", "--stems")):
        if asked and output not in OUTPUTS[backend]:
            raise InvalidInputError(f"the {backend} generator makes no {output}: leave out "
                                    f"{flag}")  # fmt: skip
    if args.sample_rate and args.sample_rate not in SAMPLE_RATES:
        raise InvalidInputError(f"the {backend} generator makes no {args.sample_rate} Hz: "
                                f"--sample-rate {' or '.join(map(str, SAMPLE_RATES))}")  # fmt: skip
    # Imported once the arguments pass (delivery brings scipy and OpenCV: an argument error
    # had taken 2 s, not the half second `bgm --help` takes).
    from services.gateway.delivery import check_streams
    from services.gateway.outputs import check_output_paths
    from services.media.video import probe_video
    from services.pipeline import Part

    if not speech_matters(controls.speech, args.keep_original_audio):
        # Nothing here would use the video's speech (its music replaces the voice): the tagger
        # does not listen, and torch and the VAD model stay unloaded (seconds per video).
        hearing = config.tagger.hearing.model_copy(update={"enabled": False})
        tagger = config.tagger.model_copy(update={"hearing": hearing})
        config = config.model_copy(update={"tagger": tagger})
    part = Part(args.start, args.end) if args.start or args.end is not None else None
    for video, options in jobs:
        # Into a folder: made below, once nothing is refused.
        check_output_paths(dataclasses.replace(options, make_folder=_into_folder(args)))
        probe = probe_video(video, config.tagger.limits)
        check_streams(probe, controls, options, config.limits)
        if part is not None:
            part.end_in(probe.duration_s)
    from services.gateway.outputs import staged_outputs

    # The folders -o makes are taken away again, where still empty, if the job stops (an
    # interrupted run had left them behind): staging's own folder handling.
    with staged_outputs() as staging:
        if _into_folder(args):
            staging.make_folder(Path(args.output))
        return _score_jobs(args, config, controls, jobs, part)


def _score_jobs(
    args: argparse.Namespace,
    config: BgmConfig,
    controls: UserControls,
    jobs: list[tuple[Path, OutputOptions]],
    part: Part | None,
) -> int:
    """Score each (video, outputs) of `jobs` with the models loaded once."""
    from services.gateway.outputs import is_stem
    from services.generator.backends import create_generator_backend
    from services.pipeline import ScorePipeline
    from services.score_report import print_score_summary
    from services.tagger.backends import create_tagger_backend

    stderr = Console(stderr=True)
    pipeline = ScorePipeline(
        create_tagger_backend(config.tagger),
        create_generator_backend(config.generator),
        load_vocabulary(),
        config.limits,
        config.gateway.speech_ducking,
    )
    start_up = time.perf_counter() - STARTED
    console = summary_console()
    for number, (video, options) in enumerate(jobs):
        begun = time.perf_counter()
        if len(jobs) > 1:
            console.print(f"[bold]{escape(str(video))}[/bold] ({number + 1} of {len(jobs)})")
        # --force replaces the stems: those of an earlier piece that this one has not (its
        # rock band's guitars beside an ambient piece's pads) would no longer sum to the mix.
        # Only bgm's own: any other WAV in the folder had gone with them.
        earlier = ({p for p in options.stems_dir.glob("*.wav") if is_stem(p)}
                   if options.stems_dir else set())  # fmt: skip
        with progress_bar(f"scoring {video.name}", stderr) as report:
            result = pipeline.score(video, controls, options, progress=report, part=part)
        for stale in earlier - set(result.written):
            stale.unlink(missing_ok=True)
        print_score_summary(result, options, console, start_up if number == 0 else 0.0,
                            time.perf_counter() - (STARTED if number == 0 else begun))  # fmt: skip
    return 0


def summary_console() -> Console:
    """Standard output: long lines are not wrapped (a pipe would otherwise cut them at 80
    columns, mid-phrase)."""
    return Console(soft_wrap=True)


# Pictures matplotlib writes, by the name's ending.
PLOT_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


def _check_plot(plot: Path, video: Path, force: bool) -> None:
    """Refused before the analysis: a plot that would replace the video (an animated GIF had
    been overwritten), another file unless `force` (a picture had been replaced without a
    word), or one that matplotlib cannot write (a traceback after the analysis)."""
    from services.gateway.outputs import check_writable

    if plot.suffix.lower() not in PLOT_SUFFIXES:
        raise InvalidInputError(f"--plot {plot.name}: a picture ends in "
                                f"{', '.join(PLOT_SUFFIXES)}")  # fmt: skip
    # (A link, a pipe or a device is refused here, --force or not.)
    check_writable(plot, "plot")
    if plot.exists() and video.exists() and plot.samefile(video):
        raise InvalidInputError(f"--plot {plot} is the video")
    if plot.exists() and not force:
        raise InvalidInputError(f"--plot {plot} exists; pass --force to replace it")


def _serve(args: argparse.Namespace) -> int:
    from services.serve import serve

    config = _with_backend_flags(load_config(args.config), args)
    if args.service == "all" and (args.port is not None or args.metrics_port is not None):
        raise InvalidInputError("--port and --metrics-port name one service's ports: for all "
                                "three, set serving.<service>.port in the config")  # fmt: skip
    if args.service != "all":
        endpoint = getattr(config.serving, args.service)
        changes = {
            k: v
            for k, v in (
                ("host", args.host),
                ("port", args.port),
                ("metrics_port", args.metrics_port),
            )
            if v is not None
        }
        serving = config.serving.model_copy(
            update={args.service: endpoint.model_copy(update=changes)}
        )
        config = config.model_copy(update={"serving": serving})
    elif args.host is not None:
        serving = config.serving.model_copy(
            update={
                name: getattr(config.serving, name).model_copy(update={"host": args.host})
                for name in ("tagger", "generator", "gateway")
            }
        )
        config = config.model_copy(update={"serving": serving})
    serve(config, args.service)
    return 0


def _connection(args: argparse.Namespace) -> tuple[tuple[tuple[str, str], ...], Any]:
    """The metadata (with the bearer token) and the TLS settings the connection flags say."""
    # gRPC's keys: lower case letters, digits, - _ . (header names are case-blind).
    pairs = [item.partition("=") for item in args.metadata or []]
    for key, equals, _ in pairs:
        if not equals or not re.fullmatch(r"[0-9a-z_.-]+", key.lower()):
            raise InvalidInputError(f"--metadata {key!r}: give KEY=VALUE, the key of letters, "
                                    "digits, - _ .")  # fmt: skip
    # A key ending in -bin carries bytes (a text value had been a traceback inside gRPC).
    metadata = tuple((key.lower(), value.encode() if key.lower().endswith("-bin") else value)
                     for key, _, value in pairs)  # fmt: skip
    token = args.token or os.environ.get("BGM_TOKEN")
    if token and not re.fullmatch(r"[\x21-\x7e]+", token):
        # gRPC's own word for it had been "error (INTERNAL): Invalid metadata".
        raise InvalidInputError("the token must be printable ASCII without spaces or line "
                                "breaks")  # fmt: skip
    if token:
        metadata = (*metadata, ("authorization", f"Bearer {token}"))
    if bool(args.tls_cert) != bool(args.tls_key):
        # gRPC aborted the process on a certificate without its key.
        raise InvalidInputError("--tls-cert and --tls-key go together (mutual TLS)")
    tls = None
    # Any TLS flag asks for TLS: --tls-key or --tls-server-name alone had been plaintext,
    # the token sent in the clear.
    if args.tls or args.tls_ca or args.tls_cert or args.tls_server_name:
        from services.config import ClientTlsConfig

        tls = ClientTlsConfig(ca_file=args.tls_ca, cert_file=args.tls_cert,
                              key_file=args.tls_key, server_name=args.tls_server_name)  # fmt: skip
    return metadata, tls


def _studio(args: argparse.Namespace) -> int:
    import uvicorn

    from services.serving import configure_logging, listening_socket
    from services.studio.app import (
        GatewayLink,
        create_app,
        raise_open_file_limit,
        server_options,
    )

    config = load_config(args.config)
    studio = config.studio
    if args.port is not None:
        studio = studio.model_copy(update={"port": args.port})
    # Bound before anything starts: a port in use is one line, and with --port 0 the port
    # said is the one the system chose.
    listener = listening_socket(studio.host, studio.port)
    port = listener.getsockname()[1]
    raise_open_file_limit(studio)
    if args.server:
        metadata, tls = _connection(args)
        app = create_app(studio, GatewayLink(args.server, metadata, tls))
        gateway = args.server
    else:
        # Its own gateway, tagger and generator, in this process.
        app = create_app(studio, config)
        gateway = "in this process"
    configure_logging()
    Console(stderr=True).print(escape(f"bgm studio on http://{studio.host}:{port}/ "
                                      f"(gateway {gateway})"))  # fmt: skip
    # Ctrl-C and SIGTERM are how the studio stops: uvicorn raises the signal again once it
    # has, and that is exit 0 (as uvicorn.run takes it), not `interrupted`.
    with listener, contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(uvicorn.Config(app, **server_options(studio))).run(sockets=[listener])
    return 0


def _client_score(args: argparse.Namespace) -> int:
    import grpc

    from services.gateway.client import score_remote
    from services.gateway.outputs import check_output_paths, staged_outputs
    from services.media.files import check_readable_video
    from services.score_report import print_remote_summary

    stderr = Console(stderr=True)
    metadata, tls = _connection(args)
    if not args.uri:
        check_readable_video(Path(args.video))
    options = _output_options(args, args.video, [] if args.uri else [Path(args.video)])
    # Where the files go, checked before the server works (a missing or read-only folder had
    # failed once the piece had come, naming a temporary file); -o FOLDER/ is made, as
    # `bgm score` makes it, and taken away again if the score fails.
    into_folder = _into_folder(args)
    check_output_paths(dataclasses.replace(options, make_folder=into_folder))
    try:
        with (
            staged_outputs() as staging,
            progress_bar(f"scoring {Path(args.video).name} on {args.server}", stderr) as report,
        ):
            if into_folder:
                staging.make_folder(Path(args.output))
            outcome = score_remote(
                args.server,
                args.video,
                _controls(args, load_config(args.config).limits.max_reference_bytes),
                options,
                report,
                metadata=metadata,
                timeout_s=args.timeout,
                by_uri=args.uri,
                tls=tls,
            )
    except grpc.RpcError as error:
        return _remote_failure(error, args.server, tls is not None)
    print_remote_summary(outcome, options, summary_console(), time.perf_counter() - STARTED)
    return 0


def _remote_failure(error: Any, server: str, tls: bool) -> int:
    """A gateway's refusal or failure (a grpc.RpcError) said in one line with its details;
    the exit status."""
    from services.gateway.client import error_details

    details = error_details(error)
    extra = [f"field {', '.join(details.fields)}"] if details.fields else []
    extra += [f"reason {details.reason}"] if details.reason else []
    extra += [f"retry after {details.retry_after_s:g} s"] if details.retry_after_s else []
    said = error.details() or ""
    if tls and "WRONG_VERSION_NUMBER" in said:
        # A server that answered the handshake with something not TLS; gRPC's own words
        # (TSI_PROTOCOL_FAILURE, WRONG_VERSION_NUMBER) name no cause. (A certificate that
        # fails verification is no such case: the advice would be to drop TLS.)
        extra.append(f"does {server} speak TLS? without --tls the call is plaintext")
    Console(stderr=True, soft_wrap=True).print(
        f"[red]error[/red] ({error.code().name}): {escape(said)}"
        + (f" [dim]({escape('; '.join(extra))})[/dim]" if extra else ""),
        highlight=False,
    )
    # What the caller sent, as `bgm score` says of the same refusals; the rest (the server's
    # state, its configuration, a failure) is 1.
    return EXIT_BAD_INPUT if error.code().name in CALLERS_CODES else EXIT_FAILURE


def _client_describe(args: argparse.Namespace) -> int:
    import grpc
    from google.protobuf.json_format import MessageToDict

    from services.gateway.client import describe_remote

    metadata, tls = _connection(args)
    try:
        offered = describe_remote(args.server, metadata, tls, args.timeout)
    except grpc.RpcError as error:
        return _remote_failure(error, args.server, tls is not None)
    if args.json:
        listing = MessageToDict(offered, preserving_proto_field_name=True,
                                always_print_fields_with_no_presence=True)  # fmt: skip
        sys.stdout.write(json.dumps(listing, indent=2) + "\n")
        return 0
    vocabulary = offered.vocabulary
    outputs = [name for name, made in (("MIDI", offered.midi), ("stems", offered.stems)) if made]
    rows = [
        ("Generator", f"{offered.generator} {offered.generator_version}"
                      + (f", {offered.sound}" if offered.sound else "")),
        ("Genres", ", ".join(vocabulary.genres)),
        ("Moods", ", ".join(vocabulary.moods)),
        ("Instruments", ", ".join(vocabulary.instruments)),
        ("Keys", f"a tonic ({', '.join(vocabulary.tonics)}) and a mode "
                 f"({', '.join(vocabulary.modes)})"),
        ("Rates", ", ".join(f"{rate} Hz" for rate in offered.sample_rates)),
        ("Structures", ", ".join(offered.structures)),
        ("Candidates", f"at most {offered.max_candidates}"),
        ("Limits", f"videos up to {offered.max_duration_s:g} s, {offered.max_music_s:g} s of "
                   f"music a request, uploads up to {offered.max_upload_bytes} bytes"),
        ("Outputs", ", ".join(["audio or the video with its music", *outputs])),
    ]  # fmt: skip
    console = summary_console()
    for label, value in rows:
        console.print(f"[bold]{label:<11}[/bold] {escape(value)}", highlight=False)
    return 0


def _tags(args: argparse.Namespace) -> int:
    from rich.table import Table

    vocabulary = load_vocabulary()
    if args.json:
        listing = {
            section: {name: list(tag.synonyms) for name, tag in tags.items()}
            for section, tags in (("genres", vocabulary.genres), ("moods", vocabulary.moods),
                                  ("instruments", vocabulary.instruments))
        }  # fmt: skip
        listing["keys"] = {"tonics": list(vocabulary.tonics), "modes": list(vocabulary.modes)}
        families = vocabulary.negative_families
        listing["negative_families"] = {name: list(tags) for name, tags in families.items()}
        sys.stdout.write(json.dumps(listing, indent=2) + "\n")
        return 0
    console = Console()
    for title, tags in (("Genres", vocabulary.genres), ("Moods", vocabulary.moods),
                        ("Instruments", vocabulary.instruments)):  # fmt: skip
        table = Table(title=title, title_justify="left", show_header=False, box=None)
        for name, tag in tags.items():
            table.add_row(f"[bold]{name}[/bold]", ", ".join(tag.synonyms))
        console.print(table)
        console.print()
    console.print(
        f"[bold]Keys[/bold]  a tonic ({', '.join(vocabulary.tonics)}) and a mode "
        f'({", ".join(vocabulary.modes)}): "E minor", "Em", "F#m", "Bb major", "Bb"',
        highlight=False,
    )
    for name, family in vocabulary.negative_families.items():
        console.print(f"[bold]--negative {name}[/bold] takes out {', '.join(family)}",
                      highlight=False)  # fmt: skip
    console.print("Names match in any case; spaces, hyphens and underscores alike.")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from services.gateway.delivery import writing
    from services.gateway.outputs import check_writable, staged_outputs
    from services.media.synth import sample_shots, write_video

    output = Path(args.output)
    if output.suffix.lower() != ".mp4":
        raise InvalidInputError(f"{output.name}: the sample video is an .mp4")
    check_writable(output, "sample video")
    if output.exists() and not args.force:
        raise InvalidInputError(f"{output} exists; pass --force to replace it")
    # Written under a temporary name and renamed when whole: stopped or out of disk, it had
    # left a shorter video (or, with --force, one in place of the whole one it replaced).
    # A place that passed the checks and still takes no file (/proc): said by its name.
    with writing("sample video", output), staged_outputs(replace=args.force) as staging:
        partial = staging.temporary(output)
        video = write_video(partial, sample_shots(), width=640, height=360, fps=30.0)
    Console().print(
        f"wrote {escape(str(output))}: {video.duration_s:.1f} s, cuts at "
        f"{', '.join(f'{c:g}' for c in video.cuts_s)} s"
    )
    return 0


def _connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metadata",
        action="append",
        metavar="KEY=VALUE",
        help="gRPC metadata to send (repeatable)",
    )
    parser.add_argument("--token", help="bearer token (an API key or a JWT); default $BGM_TOKEN")
    parser.add_argument("--tls", action="store_true", help="TLS, checked by the system's CAs")
    parser.add_argument("--tls-ca", metavar="PEM", help="TLS, checked by this CA")
    parser.add_argument("--tls-cert", metavar="PEM", help="client certificate (mutual TLS)")
    parser.add_argument("--tls-key", metavar="PEM", help="client key (mutual TLS)")
    parser.add_argument("--tls-server-name", help="the name the server's certificate carries")


def _tagger_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tagger",
        choices=("vision", "vlm", "openai"),
        help="tagger backend (default: the config's, vision)",
    )
    parser.add_argument(
        "--tagger-model",
        metavar="PATH",
        help="vision-language model folder (model and processor) for the vlm backend",
    )


def _generator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--generator",
        choices=("composer", "diffusion", "symbolic-diffusion"),
        help="generator backend (default: the config's, composer)",
    )
    parser.add_argument(
        "--generator-model",
        metavar="PATH",
        help="the generator's model folder: a diffusers pipeline (diffusion) or a Diff-BGM "
        "checkpoint folder (symbolic-diffusion; its CLIP and BERT folders come from the config)",
    )


def _score_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--structure", choices=("free", "composer", "reference"), default="free",
        help="composer: a diffusion generator renders over the composer's cut-aligned piece; "
             "reference: over --reference",
    )  # fmt: skip
    parser.add_argument(
        "--reference", metavar="AUDIO",
        help="an audio file (e.g. a hummed or played melody) whose timing the music follows "
             "with --structure reference; looped if shorter than the video",
    )  # fmt: skip
    parser.add_argument(
        "--candidates", type=_whole, default=1, metavar="N",
        help="generate N pieces (1..4), rank their fit to the video, deliver the best",
    )  # fmt: skip
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        type=_named,
        help="OUT.wav/.flac/.mp3/.ogg (audio) or OUT.mp4/.mov/.mkv/.webm (video); or a folder "
        "(ending in /) to write <video name>.<--format> into",
    )
    parser.add_argument(
        "--format", choices=("mp4", "mov", "mkv", "webm", "wav", "flac", "mp3", "ogg"),
        help="what to write into an -o folder (default mp4: the video with its music)",
    )  # fmt: skip
    parser.add_argument(
        "--force", action="store_true",
        help="replace outputs that exist (an input is never written over)",
    )  # fmt: skip
    parser.add_argument("--midi", type=_named, metavar="FILE.mid", help="also write the MIDI")
    parser.add_argument("--stems", type=_named, metavar="DIR",
                        help="also write one WAV per instrument")  # fmt: skip
    parser.add_argument(
        "--keep-original-audio",
        action="store_true",
        help="keep the video's own sound, with the music under it (ducking as --speech says)",
    )
    parser.add_argument(
        "--speech", choices=SPEECH_MODES, default="auto",
        help="make room for speech in the video's sound: auto (arrange and duck when the video "
             "has speech and --keep-original-audio), duck (the music dips under each spoken "
             "stretch), arrange (the lead and busy parts step aside), off (neither: the music "
             "keeps its level)",
    )  # fmt: skip
    vocabulary = load_vocabulary()
    for kind, section in (("genre", vocabulary.genres), ("mood", vocabulary.moods),
                          ("instrument", vocabulary.instruments)):  # fmt: skip
        parser.add_argument(
            f"--{kind}", action="append",
            help=f"{'an' if kind == 'instrument' else 'a'} {kind} (repeatable): "
                 f"{', '.join(section)}; any case, and synonyms "
                 "(`bgm tags` lists them)",
        )  # fmt: skip
    parser.add_argument(
        "--negative",
        action="append",
        metavar="TAG",
        help="a genre, mood or instrument to leave out (repeatable; guitar: every guitar)",
    )
    parser.add_argument("--bpm", type=float, help="exact tempo, 30..300")
    parser.add_argument("--key", help='key: "D minor", "Em", "F#m", "Bb major", "Bb", ...')
    parser.add_argument("--prompt", metavar="TEXT", help="free-text hints")
    parser.add_argument("--seed", type=_whole, default=0, help="same seed, same music (default 0)")
    parser.add_argument(
        "--lufs",
        type=float,
        default=-14.0,
        help="integrated loudness target (default -14); true peak <= -1 dBTP in WAV and "
        "FLAC, -2 in a lossy encoding (the encoder overshoots)",
    )
    parser.add_argument(
        "--sample-rate", type=int, default=None,
        help="sample rate of the music, Hz, one the generator makes (default 48000 where it "
        "makes it, else its first: `bgm client describe` lists them)",
    )  # fmt: skip


def _named(text: str) -> str:
    """A path to write to, not empty (`-o ""` had written into the current folder)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty name (the current folder is ./)")
    return text


def _whole(text: str) -> int:
    """A whole number a protobuf integer holds (2**63 had been a traceback in the
    message's encoder); its range is the option's own check."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not -(2**63) <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{text} is out of range")
    return value


# Longer deadlines overflow gRPC's clock (1e300 s had expired at once).
MAX_TIMEOUT_S = 1e6


def _seconds(text: str) -> float:
    """A length of time over 0 (a deadline of 0, -5 or NaN had been sent)."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_TIMEOUT_S):
        raise argparse.ArgumentTypeError(
            f"a length of time over 0, at most {MAX_TIMEOUT_S:g} s, not {text}"
        )
    return seconds


def _address(text: str) -> str:
    """HOST:PORT with a port of 1..65535 (99999 had been taken as 34463, and called), no
    scheme or path (http://HOST:PORT had been called, and failed as a "misformatted domain
    name")."""
    host, colon, port = text.rpartition(":")
    if (not colon or not host or "/" in host or not port.isdigit()
            or not 1 <= int(port) <= 65535):  # fmt: skip
        raise argparse.ArgumentTypeError(
            f"HOST:PORT with a port of 1..65535, no scheme or path, not {text!r}"
        )
    return text


def _port(text: str) -> int:
    """A TCP port, 0..65535 (70000 had been taken, logged, and another port listened on)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, not {port}")
    return port


def _version() -> str:
    from importlib.metadata import version

    from services.gen.bgm.v1 import common_pb2

    return f"bgm {version('bgm')} (contracts {common_pb2.DESCRIPTOR.package})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bgm", description="Background music fitted to video.")
    parser.add_argument("--version", action="version", version=_version())
    config_help = "YAML config file (default: $BGM_CONFIG, else built-in)"
    parser.add_argument("--config", help=config_help)
    # Also after the command (`bgm analyze --config F VIDEO`), where it wins.
    reads_config = argparse.ArgumentParser(add_help=False)
    reads_config.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    commands = parser.add_subparsers(dest="command", required=True)

    analyze = commands.add_parser("analyze", parents=[reads_config],
                                  help="analyse a video: cuts, motion, segments, tags")  # fmt: skip
    analyze.add_argument("video", help="video file")
    analyze.add_argument("--json", action="store_true", help="print the whole analysis as JSON")
    analyze.add_argument("--plot", type=_named, metavar="OUT.png",
                         help="save a picture of the analysis")  # fmt: skip
    analyze.add_argument("--force", action="store_true", help="replace an existing --plot")
    analyze.add_argument(
        "--prompt", metavar="TEXT", help="free-text hints, e.g. 'cosy baking vlog'"
    )
    _tagger_arguments(analyze)
    analyze.set_defaults(run=_analyze)

    score = commands.add_parser(
        "score", parents=[reads_config], help="score a video: its own music, fitted to its cuts"
    )
    score.add_argument("video", nargs="+", help="video file(s); several need an -o folder")
    score.add_argument(
        "--start", type=float, default=0.0, metavar="SECONDS",
        help="score only from here (the music is placed there in the output)",
    )  # fmt: skip
    score.add_argument(
        "--end", type=float, metavar="SECONDS", help="score only up to here (default: the end)"
    )
    _score_arguments(score)
    _tagger_arguments(score)
    _generator_arguments(score)
    score.set_defaults(run=_score)

    serve = commands.add_parser("serve", parents=[reads_config],
                                help="run the gRPC services on localhost ports")  # fmt: skip
    serve.add_argument(
        "service", choices=("tagger", "generator", "gateway", "all"), nargs="?", default="all",
        help="which service to run (default: all three in one process)",
    )  # fmt: skip
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument(
        "--port",
        type=_port,
        help="port (one service only; defaults: gateway 50051, tagger 50052, generator 50053)",
    )
    serve.add_argument("--metrics-port", type=_port, help="Prometheus port (one service only)")
    _tagger_arguments(serve)
    _generator_arguments(serve)
    serve.set_defaults(run=_serve)

    client = commands.add_parser("client", help="call a running gateway")
    client_commands = client.add_subparsers(dest="client_command", required=True)
    # It reads the config too (limits.max_reference_bytes, the controls' limits).
    remote = client_commands.add_parser("score", parents=[reads_config],
                                        help="score a video through a gateway")  # fmt: skip
    remote.add_argument("video", help="video file to upload (or a URI, with --uri)")
    remote.add_argument(
        "--server",
        default="127.0.0.1:50051",
        type=_address,
        help="gateway HOST:PORT (default 127.0.0.1:50051)",
    )
    remote.add_argument(
        "--uri",
        action="store_true",
        help="VIDEO is a URI the gateway fetches, not a file to upload",
    )
    remote.add_argument("--timeout", type=_seconds, help="deadline, seconds")
    _connection_arguments(remote)
    _score_arguments(remote)
    remote.set_defaults(run=_client_score)
    described = client_commands.add_parser(
        "describe", help="what a gateway takes: the tags and keys, its generator, its limits"
    )
    described.add_argument(
        "--server",
        default="127.0.0.1:50051",
        type=_address,
        help="gateway HOST:PORT (default 127.0.0.1:50051)",
    )
    described.add_argument("--timeout", type=_seconds, default=30.0,
                           help="deadline, seconds (default 30)")  # fmt: skip
    described.add_argument("--json", action="store_true", help="as JSON")
    _connection_arguments(described)
    described.set_defaults(run=_client_describe)

    studio = commands.add_parser(
        "studio", parents=[reads_config],
        help="a web page to upload a video, shape its music, hear it and download it",
    )  # fmt: skip
    studio.add_argument("--server", type=_address,
                        help="a gateway HOST:PORT (default: start one here)")  # fmt: skip
    studio.add_argument("--port", type=_port, help="the page's port (default 8765)")
    _connection_arguments(studio)
    studio.set_defaults(run=_studio)

    tags = commands.add_parser(
        "tags", help="list the vocabulary: genres, moods, instruments (with synonyms), keys"
    )
    tags.add_argument("--json", action="store_true", help="as JSON")
    tags.set_defaults(run=_tags)

    sample = commands.add_parser("sample", help="write the project's sample video")
    sample.add_argument("output", type=_named, help="where to write it (.mp4)")
    sample.add_argument("--force", action="store_true", help="replace an existing file")
    sample.set_defaults(run=_sample)
    return parser


# Set by SIGTERM or Ctrl-C. The KeyboardInterrupt they raise can be lost: raised in a callback
# (a __del__, a weakref's), Python ignores it ("Exception ignored in ...") and the command had
# run on to the end, exit 0. Each progress report raises it again. Plain flags: a handler
# that set an Event could wait for ever on the lock of the Event.set() it had interrupted.
_interrupted = False
# Once raised, the command is stopping: a later signal (a retry's) has nothing to stop, and
# raised again it would break the clean-up.
_interrupt_raised = False
_retrying = False

# How often a signal that came during an import or exec'd code is sent again.
INTERRUPT_RETRY_S = 0.02


def _interrupt(signum: int, frame: Any) -> None:
    global _interrupted, _retrying
    _interrupted = True
    if _interrupt_raised:
        return
    if _in_import_or_exec(frame):
        # Raised there, the interrupt is lost in an import's lock callbacks, or, out of code
        # exec'd from a string (dataclasses, scipy on import), CPython 3.11 takes it as
        # uncaught and ends the process by SIGINT once main has returned (-2, not 130, after
        # a SIGTERM). The signal is sent again until it lands outside both.
        if not _retrying:
            _retrying = True
            threading.Thread(target=_send_again, args=(signum,), daemon=True).start()
        return
    _stop_if_interrupted()


def _send_again(signum: int) -> None:
    """Sends the signal to the main thread until the interrupt is raised there: one that
    lands just before a blocking call (time.sleep) is seen only when the call returns, so
    the first to land outside an import is not always the one that stops the command."""
    main_thread = threading.main_thread().ident
    assert main_thread is not None
    while not _interrupt_raised:
        time.sleep(INTERRUPT_RETRY_S)
        signal.pthread_kill(main_thread, signum)


def _in_import_or_exec(frame: Any) -> bool:
    """Whether the command's code was, when the signal came, inside an import or code exec'd
    from a string (not counting what ran the command: `python -c` is a string too)."""
    while frame is not None and frame.f_code is not main.__code__:
        name = frame.f_code.co_filename
        if name == "<string>" or name.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _stop_if_interrupted() -> None:
    global _interrupt_raised
    if _interrupted:
        _interrupt_raised = True
        raise KeyboardInterrupt


def _unraisable(unraisable: Any) -> None:
    """Python's report of an exception it ignored, but for an interrupt that is kept (the
    report had been five lines before the command's own `interrupted`)."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _interrupted:
        return
    sys.__unraisablehook__(unraisable)


def main(argv: list[str] | None = None, received_before: Sequence[int] = ()) -> int:
    """Runs the command; `received_before` holds the signals that came before this (services.launch
    notes them while this module loads) and stops it as they would have."""
    global _interrupted
    try:
        # SIGTERM stops a command as Ctrl-C does, through its clean-up (it had left a partial
        # output behind); the servers and the studio put their own handlers over this one.
        # Set inside the try: one arriving just after it was set had escaped as SIGINT. And
        # before the arguments are read (the vocabulary loads for them): a Ctrl-C then had
        # been a traceback.
        sys.unraisablehook = _unraisable
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)
        if received_before:
            _interrupted = True
            _stop_if_interrupted()
        args = build_parser().parse_args(argv)
        status = int(args.run(args))
        if not _interrupt_raised:
            # One that came in the command's last import, not raised yet (one raised and
            # caught, as uvicorn catches the one it raises again after its own stop, is not).
            _stop_if_interrupted()
        return status
    except KeyboardInterrupt:
        Console(stderr=True).print("[red]interrupted[/red]", highlight=False)
        return EXIT_INTERRUPTED
    except BgmError as error:
        Console(stderr=True, soft_wrap=True).print(
            f"[red]error[/red] ({error.status_code}): {escape(str(error))}", highlight=False
        )
        return EXIT_FAILURE if error.status_code == "INTERNAL" else EXIT_BAD_INPUT
    except OSError as error:
        if error.errno == errno.ENAMETOOLONG:
            # The arguments' after all (it had been exit 1, the raw errno).
            Console(stderr=True, soft_wrap=True).print(
                f"[red]error[/red] (INVALID_ARGUMENT): a name in {escape(str(error.filename))}"
                " is longer than the file system allows (255 bytes)", highlight=False
            )  # fmt: skip
            return EXIT_BAD_INPUT
        # The machine's, not the arguments' (a full disk): one line, as for any error.
        Console(stderr=True, soft_wrap=True).print(
            f"[red]error[/red]: {escape(str(error))}", highlight=False
        )
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
