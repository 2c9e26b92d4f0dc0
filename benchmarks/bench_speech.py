"""Benchmark of speech handling (issue 19): the VAD's cost and accuracy, and `bgm score` with
and without it.

    python benchmarks/bench_speech.py

Makes a 60 s video whose sound has sentences spoken by espeak-ng at known times, door slams
between them and a quiet noise bed; prints, for Silero VAD (what the tagger uses) and WebRTC
VAD (webrtcvad-wheels, for comparison), seconds per minute of audio and the precision and
recall of speech time against the known timings; then the whole score (in one process, the
CLI's defaults, keeping the original sound) with speech handling ("auto") and without it
(hearing off, "off").
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from services.config import ComposerConfig, HearingConfig, RequestLimits, TaggerConfig
from services.domain import OutputOptions, UserControls
from services.generator.backends.composer.backend import ComposerGenerator
from services.media.audio import mono_blocks
from services.media.synth import Shot, speech_track, write_video
from services.pipeline import ScorePipeline
from services.tagger.backends.vision import VisionTagger
from services.tagger.hearing import VAD_RATE, Listener
from services.vocabulary import load_vocabulary

DURATION_S = 60.0
SENTENCES = [
    "Welcome back to the channel.",
    "Today we look at three ways to light a small room.",
    "The first is a single soft lamp placed high.",
    "Notice how the shadows fall under the chin.",
    "Now we add a second light from the side.",
    "That is all for today, thanks for watching.",
]


def overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(e1, e2) - max(s1, s2)) for s1, e1 in a for s2, e2 in b)


def accuracy(found: list[tuple[float, float]], truth: list[tuple[float, float]]) -> str:
    common = overlap(found, truth)
    precision = common / max(sum(e - s for s, e in found), 1e-9)
    recall = common / sum(e - s for s, e in truth)
    return f"precision {precision:.3f}, recall {recall:.3f}"


def webrtc_speech(path: Path, aggressiveness: int, min_silence_s: float,
                  min_speech_s: float) -> list[tuple[float, float]]:  # fmt: skip
    """WebRTC VAD on 30 ms frames, joined by the same minimum pause and length as Silero's."""
    import webrtcvad

    vad = webrtcvad.Vad(aggressiveness)
    frame = int(0.03 * VAD_RATE)
    audio = np.concatenate(list(mono_blocks(path, VAD_RATE, 60.0, DURATION_S)))
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    spans: list[list[float]] = []
    for index in range(len(pcm) // frame):
        if vad.is_speech(pcm[index * frame : (index + 1) * frame].tobytes(), VAD_RATE):
            start = index * 0.03
            if spans and start - spans[-1][1] <= min_silence_s:
                spans[-1][1] = start + 0.03
            else:
                spans.append([start, start + 0.03])
    return [(s, e) for s, e in spans if e - s >= min_speech_s]


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        lines = [(2.0 + 10.0 * i, text) for i, text in enumerate(SENTENCES)]
        track, truth = speech_track(DURATION_S, lines, hits=[7.0 + 10.0 * i for i in range(5)],
                                    bed_level=0.003)  # fmt: skip
        shots = [Shot(6.0, hue=(0.13 * i) % 1.0, speed=0.1 * (i % 4)) for i in range(10)]
        video = write_video(Path(folder) / "talk.mp4", shots, soundtrack=track,
                            x264_preset="medium").path  # fmt: skip
        hearing = HearingConfig()
        listener = Listener(hearing)
        listener.hear(video, DURATION_S, lambda: None)  # the first call pays for loading
        started = time.perf_counter()
        heard = listener.hear(video, DURATION_S, lambda: None)
        silero_s = time.perf_counter() - started
        found = [(i.start_s, i.end_s) for i in heard.speech]
        print(f"{DURATION_S:g} s of speech, slams and noise; {len(truth)} sentences")
        print(f"  Silero VAD (decode, VAD, level curve)  {silero_s / DURATION_S * 60:6.3f} s "
              f"a minute of audio; {accuracy(found, truth)}")  # fmt: skip
        for aggressiveness in (2, 3):
            started = time.perf_counter()
            spans = webrtc_speech(video, aggressiveness, hearing.min_silence_s,
                                  hearing.min_speech_s)  # fmt: skip
            took = time.perf_counter() - started
            print(f"  WebRTC VAD, mode {aggressiveness} (decode, VAD)       "
                  f"{took / DURATION_S * 60:6.3f} s a minute of audio; "
                  f"{accuracy(spans, truth)}")  # fmt: skip
        generator = ComposerGenerator(ComposerConfig())
        for label, listening, mode in (("with speech handling (auto)", True, "auto"),
                                       ("without (hearing off, off)", False, "off")):  # fmt: skip
            tagger = VisionTagger(TaggerConfig(hearing=HearingConfig(enabled=listening)))
            pipeline = ScorePipeline(tagger, generator, load_vocabulary(), RequestLimits())
            options = OutputOptions(output=Path(folder) / f"{mode}.mp4", keep_original_audio=True)
            controls = UserControls(speech=mode)
            pipeline.score(video, controls, options)  # once untimed
            options = OutputOptions(output=Path(folder) / f"{mode}-2.mp4",
                                    keep_original_audio=True)  # fmt: skip
            started = time.perf_counter()
            result = pipeline.score(video, controls, options)
            took = time.perf_counter() - started
            steps = ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items() if k != "total")
            print(f"  bgm score, {label:<29} {took:6.2f} s ({steps})")


if __name__ == "__main__":
    main()
