"""The mix, a block at a time: each part through its channel strip and its sends, summed, then
the genre's bus. Plays a Production (production.py) with pedalboard's processors.

A stem is its part as it sounds in the mix: strip, sidechain pumping, its own share of the
reverb and the echo, and the bus. Without stems the parts share one reverb and one echo (both
linear and time-invariant, so the sum is the same to within float rounding) and the render costs
less. The bus is gains (its compressor and saturations), read off the mix sample by sample and
given to every stem, then a linear low-pass that every stem runs through: the stems summed are
the mix, less a lo-fi record's crackle, which is the record's and no instrument's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from services.generator.backends.composer.production import Production, Strip

# Sidechain pumping: how long the parts take to dip under a kick, a compressor's attack. Its
# gain had fallen in one sample, a tick on every kick in each pumped stem (electronic's bass
# 40 dB over the 10 ms before it above 6 kHz, at 94% of its kicks).
PUMP_ATTACK_S = 0.003
# Crackle: pops per second, the dust between them (its rate and level relative to the
# pops'), and the hiss under them. Each is a burst of a millisecond or so, decaying as
# CRACKLE_DECAY_S: a single-sample click lost most of its peak in lo-fi's 6.5 kHz low-pass,
# and the crackle lay 50 LU under the music, inaudible (a music review).
CRACKLE_RATE = 7.0
CRACKLE_DUST_RATE = 40.0
CRACKLE_DUST = 0.25
CRACKLE_HISS = 0.03
CRACKLE_DECAY_S = 0.0003
CRACKLE_SEED = 1904
# Where the mix is quieter than this, the bus's gain on a stem is its neighbours' (the gain is
# read as the bus's output over its input, which says nothing at silence): a stem's share of
# the mix there is off by at most this.
GAIN_FLOOR = 1e-6
# The low-pass is JUCE's ladder (pedalboard's LadderFilter, 24 dB an octave, resonance 0) taken
# apart: the tanh its drive puts first, a gain like the bus's others, then its linear part,
# 1.44 H^4 / (1 + 0.4 z^-1 H^4) with H four one-pole stages whose zero sits at -0.3 (its small-
# signal response, matched to it within -97 dB at 6.5 kHz, 48 kHz). The whole ladder and this
# differ by -50 dB on noise at -10 dBFS (its feedback's own saturation).
LADDER_GAIN = 1.44
LADDER_FEEDBACK = 0.4
LADDER_ZERO = (0.76923076923, 0.23076923076)


@dataclass(frozen=True)
class MixPart:
    name: str  # the instrument, which picks its channel strip and sends
    gain: float
    drums: bool
    # Where the part sits: a MIDI pan, 0 (left) .. 64 (centre) .. 127 (right).
    pan: int = 64
    # How far the bank's preset leans left, played centred (dB, left over right: MuseScore
    # General's Synth Bass 1 leans 1-1.9 dB, its Pad 1 about 2), which the mix takes out
    # before placing the part.
    lean_db: float = 0.0
    # Played in mono (its two sides' mean on both): the tune's player, as a singer is.
    mono: bool = False


# What the reverb is sent is cut below this first.
REVERB_HIGHPASS_HZ = 150.0
# The reverb return's lean is measured over this long at a time, and one leaning more than
# RETURN_LEAN_LIMIT_DB there is brought back only this far.
RETURN_STEP_S = 0.5
RETURN_LEAN_LIMIT_DB = 12.0
# The balance glides in steps this long (at most about 0.02 dB each).
RETURN_GLIDE_SAMPLES = 64


def lean_db(energy: np.ndarray, limit: float) -> float:
    """How far a signal leans left, from its energy on each channel: left over right in dB,
    within `limit` (0 where a channel is silent)."""
    if not np.all(energy > 0):
        return 0.0
    return float(np.clip(10 * np.log10(energy[0] / energy[1]), -limit, limit))


def stage(pans: Mapping[str, int], levels: Mapping[str, float]) -> dict[str, int]:
    """Where the parts sit so that the sides answer each other: each part off the centre at
    its distance from it (`pans`, MIDI), on its own side or the other, the loudest (`levels`,
    LU) first, whichever leaves the two sides nearer level. Placed by a table alone, with the
    tune's player in the middle, 8 of 11 genres had every part off the centre on the left
    (folk's guitar, harp and piano 3-6 dB left, nothing on the right; music review 6)."""
    placed: dict[str, int] = {}
    # The left side's power over the right's so far.
    ahead = 0.0
    for name in sorted(pans, key=lambda n: (-levels[n], n)):
        pan, power = pans[name], 10 ** (levels[name] / 10)
        mirrored = min(128 - pan, 127)
        own, other = (ahead + power * _left_over_right(at) for at in (pan, mirrored))
        placed[name] = mirrored if abs(other) < abs(own) - 1e-6 * power else pan
        ahead += power * _left_over_right(placed[name])
    return placed


def _left_over_right(pan: int) -> float:
    """A part's share of its power on the left less its share on the right, at a MIDI pan
    (`pan_gains`' law: cos^2 - sin^2 of its angle)."""
    return float(np.cos(np.pi * pan / 128))


def input_gains(part: MixPart) -> np.ndarray:
    """What goes into the part's strip on each channel (2 x 1): its gain, its lean taken
    out (a part played in mono has none)."""
    lean = 0.0 if part.mono else part.lean_db
    centring = 10 ** (np.array([-lean, lean]) / 40)
    return (part.gain * centring).astype(np.float32)[:, None]


def pan_gains(pan: int) -> np.ndarray:
    """A pan after the strip, as a console's (2 x 1): FluidSynth's constant-power law (the
    cosine and sine of the pan's share of a quarter turn), 0 dB on both sides at the centre;
    a stereo part is moved whole, as a balance control moves it."""
    angle = np.pi / 2 * pan / 128
    return (np.sqrt(2.0) * np.array([np.cos(angle), np.sin(angle)])).astype(np.float32)[:, None]


def _strip(strip: Strip) -> list:
    import pedalboard

    plugins: list = [pedalboard.HighpassFilter(cutoff_frequency_hz=strip.highpass_hz)]
    if strip.low_shelf:
        plugins.append(pedalboard.LowShelfFilter(*strip.low_shelf))
    if strip.bell:
        plugins.append(pedalboard.PeakFilter(*strip.bell))
    if strip.high_shelf:
        plugins.append(pedalboard.HighShelfFilter(*strip.high_shelf))
    if strip.compression:
        threshold, ratio = strip.compression
        plugins.append(pedalboard.Compressor(threshold_db=threshold, ratio=ratio,
                                             attack_ms=strip.attack_ms,
                                             release_ms=120.0))  # fmt: skip
    return plugins


class Mixer:
    def __init__(
        self,
        production: Production,
        parts: Sequence[MixPart],
        sample_rate: int,
        beat_s: float,
        kick_samples: Sequence[int],
        stems: bool,
        seed: int,
        centre_returns: bool = False,
    ):
        """`centre_returns`: take the reverb return's lean out block by block
        (`_balanced_returns`), as the piece's mix does. The balance measures the parts
        without it: it moves a part's loudness by under 0.1 LU, and with it a part's stem
        would depend on the others' and no longer scale with its gain."""
        import pedalboard

        self.production = production
        self.seed = seed
        self._burst = _crackle_burst(sample_rate)
        self.parts = list(parts)
        self.sample_rate = sample_rate
        self.stems = stems
        self._strips = [pedalboard.Pedalboard(_strip(production.strip_of(p.name))) for p in parts]
        self._inputs = [input_gains(p) for p in parts]
        self._pans = [pan_gains(p.pan) for p in parts]
        space = production.space

        def reverb() -> pedalboard.Pedalboard:
            # Its lows cut first, as an engineer cuts a return's: Freeverb leans by pitch, and
            # below 150 Hz ambient's hall had held its low end 1.35 dB left (music review 7).
            return pedalboard.Pedalboard([
                pedalboard.HighpassFilter(cutoff_frequency_hz=REVERB_HIGHPASS_HZ),
                pedalboard.Reverb(room_size=space.room_size, damping=space.damping,
                                  wet_level=1.0, dry_level=0.0, width=space.width),
            ])  # fmt: skip

        def echo() -> pedalboard.Delay | None:
            if production.delay is None:
                return None
            beats, feedback = production.delay
            return pedalboard.Delay(delay_seconds=beats * beat_s, feedback=feedback, mix=1.0)

        self._sends = [production.send_of(p.name) for p in parts]
        self._centre_returns = centre_returns
        # The reverb return's last balance and where it was measured, in samples from the
        # next block's start (`_balanced_returns`).
        self._return_gain, self._return_middle = np.ones(2), 0.0
        self._echo_sends = [production.delay_send_of(p.name) for p in parts]
        count = len(parts) if stems else 1
        self._reverbs = [reverb() for _ in range(count)]
        self._echoes = [echo() for _ in range(count)]
        self._kicks = np.asarray(sorted(kick_samples), dtype=np.int64)
        self._pump_samples = production.pump_beats * beat_s * sample_rate / 3.0
        self._pump_attack = PUMP_ATTACK_S * sample_rate
        bus: list = [
            pedalboard.Compressor(
                threshold_db=production.bus_compression[0],
                ratio=production.bus_compression[1],
                attack_ms=30.0,
                release_ms=250.0,
            )
        ]
        if production.saturation_db > 0:
            bus.append(pedalboard.Distortion(drive_db=production.saturation_db))
            # Distortion's drive raises the level; the bus gives it back.
            bus.append(pedalboard.Gain(gain_db=-production.saturation_db))
        self._bus = pedalboard.Pedalboard(bus)
        # The bus's gain on each channel where the last block ended.
        self._gain = np.ones(2)
        # 24 dB per octave: a worn tape or sampler, not a gentle tilt. One filter for the mix
        # and one for each stem.
        self._lowpasses = (
            [Lowpass(production.lowpass_hz, sample_rate) for _ in range(1 + len(parts) * stems)]
            if production.lowpass_hz
            else []
        )

    def _process(self, board, audio: np.ndarray) -> np.ndarray:
        return board.process(audio, self.sample_rate, reset=False)

    def _balanced_returns(self, returns: list[np.ndarray]) -> list[np.ndarray]:
        """The reverb's returns in this block (each part's, or the one the parts share), their
        sum's lean taken out: measured over every RETURN_STEP_S, the balance gliding from
        one step's middle to the next's (the same gains on each return, so the stems still
        sum to the mix). Freeverb's right combs are 23 samples longer than its left, so its
        return leans by pitch: a held tone by up to 7 dB either way; every ambient piece had
        leant 1.7-1.9 dB left over a few held chords, and its mix had moved more than 3 dB
        off the middle in 9% of its half-seconds (music reviews 5 and 6)."""
        if not returns or not self._centre_returns:
            return returns
        total = np.sum(returns, axis=0)
        length = total.shape[1]
        step = round(RETURN_STEP_S * self.sample_rate)
        middles, gains = [self._return_middle], [self._return_gain]
        for begin in range(0, length, step):
            part = total[:, begin : begin + step]
            energy = np.einsum("ij,ij->i", part, part).astype(np.float64)
            if np.all(energy > 0):
                lean = lean_db(energy, RETURN_LEAN_LIMIT_DB)
                middles.append(begin + part.shape[1] / 2)
                gains.append(10 ** (np.array([-lean, lean]) / 40))
        # Straight from each middle to the next (the last held to the block's end), in steps
        # of RETURN_GLIDE_SAMPLES.
        steps = np.arange(0, length, RETURN_GLIDE_SAMPLES)
        glide = np.stack([np.interp(steps, middles, [gain[side] for gain in gains])
                          for side in range(2)]).astype(np.float32)  # fmt: skip
        glide = np.repeat(glide, RETURN_GLIDE_SAMPLES, axis=1)[:, :length]
        self._return_middle, self._return_gain = middles[-1] - length, gains[-1]
        return [wet * glide for wet in returns]

    def _pump(self, start: int, length: int) -> np.ndarray | None:
        """The gain under the kicks for samples [start, start + length)."""
        if not self.production.pump or not len(self._kicks):
            return None
        samples = np.arange(start, start + length)
        last = np.searchsorted(self._kicks, samples, side="right") - 1
        # Each kick's dip, in over the attack and out over the release; the deeper of the
        # last two, so a kick close behind another does not let the gain jump back up.
        depth = np.zeros(length)
        for kick in (last, last - 1):
            since = np.where(kick >= 0, samples - self._kicks[np.maximum(kick, 0)], np.inf)
            dip = np.minimum(1.0, since / self._pump_attack) * np.exp(-since / self._pump_samples)
            depth = np.maximum(depth, dip)
        gain = 1.0 - self.production.pump * depth
        return gain.astype(np.float32)

    def scales_with_gain(self, index: int) -> bool:
        """Whether the part's stem is its gain times its stem at unit gain: a strip without a
        compressor (filters, the pumping's gain and the sends are all linear)."""
        return self.production.strip_of(self.parts[index].name).compression is None

    def mix(
        self, start: int, dry: Sequence[np.ndarray], known: Mapping[int, np.ndarray] | None = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """One block (2 x samples, channels first): the mix before the bus, and (when asked
        for) every stem; with stems, `known` holds stems already made (by part), taken as
        they are."""
        length = dry[0].shape[1]
        pump = self._pump(start, length)
        mix = np.zeros((2, length), dtype=np.float32)
        stems = []
        reverb_in = np.zeros((2, length), dtype=np.float32)
        echo_in = np.zeros((2, length), dtype=np.float32)
        # Each part's return from the reverb, by part (with stems).
        returns: dict[int, np.ndarray] = {}
        for i, (part, audio) in enumerate(zip(self.parts, dry, strict=True)):
            if known and i in known:
                stems.append(known[i])
                continue
            if part.mono:
                audio = np.repeat(audio.mean(axis=0, keepdims=True), 2, axis=0)
            signal = self._process(self._strips[i], audio * self._inputs[i]) * self._pans[i]
            if pump is not None and not part.drums:
                signal *= pump
            if self.stems:
                stem = signal.copy()
                if self._sends[i]:
                    returns[i] = self._process(self._reverbs[i],
                                               signal * np.float32(self._sends[i]))  # fmt: skip
                echo = self._echoes[i]
                if echo is not None and self._echo_sends[i]:
                    stem += self._process(echo, signal * np.float32(self._echo_sends[i]))
                stems.append(stem)
            else:
                mix += signal
                reverb_in += signal * np.float32(self._sends[i])
                echo_in += signal * np.float32(self._echo_sends[i])
        if self.stems:
            for i, wet in zip(returns, self._balanced_returns(list(returns.values())),
                              strict=True):  # fmt: skip
                stems[i] += wet
            for stem in stems:
                mix += stem
        else:
            [wet] = self._balanced_returns([self._process(self._reverbs[0], reverb_in)])
            mix += wet
            if self._echoes[0] is not None:
                mix += self._process(self._echoes[0], echo_in)
        return mix, stems

    def bus(
        self, start: int, mix: np.ndarray, stems: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """The genre's bus on one block of the mix and its stems (streamed: call in order);
        crackle goes in before it, as a record's would."""
        if self.production.crackle:
            mix = mix + self._crackle(start, mix.shape[1])
        bused = self._process(self._bus, mix)
        if self._lowpasses:
            # The ladder's drive.
            bused = np.tanh(bused)
        if stems:
            gain = self._gain_on(mix, bused)
            stems = [stem * gain for stem in stems]
        if self._lowpasses:
            bused = self._lowpasses[0](bused)
            stems = [lowpass(stem) for lowpass, stem in zip(self._lowpasses[1:], stems,
                                                              strict=True)]  # fmt: skip
        return bused, list(stems)

    def _gain_on(self, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """The bus's gain on each channel, sample by sample: after / before, and where the mix
        is under GAIN_FLOOR the gain between its neighbours'."""
        gain = np.empty(before.shape, dtype=np.float32)
        samples = np.arange(before.shape[1])
        for channel in range(before.shape[0]):
            heard = np.flatnonzero(np.abs(before[channel]) > GAIN_FLOOR)
            at = np.concatenate([[-1], heard])
            ratio = after[channel, heard].astype(np.float64) / before[channel, heard]
            gains = np.concatenate([[self._gain[channel]], ratio])
            gain[channel] = np.interp(samples, at, gains)
            self._gain[channel] = gain[channel, -1]
        return gain

    def _crackle(self, start: int, length: int) -> np.ndarray:
        # The piece's own record: one crackle for every lo-fi piece of a length had been heard
        # under every candidate.
        rng = np.random.default_rng([CRACKLE_SEED, self.seed, start])
        level = self.production.crackle
        impulses = np.zeros((2, length), dtype=np.float32)
        seconds = length / self.sample_rate
        for rate, loudness in ((CRACKLE_RATE, 1.0), (CRACKLE_DUST_RATE, CRACKLE_DUST)):
            clicks = rng.poisson(rate * seconds)
            at = rng.integers(0, length, clicks)
            # A pop lands on one groove wall, the other's side fainter.
            sides = rng.uniform(0.3, 1.0, (2, clicks))
            impulses[:, at] += (level * loudness * rng.uniform(0.3, 1.0, clicks)
                                * rng.choice([-1, 1], clicks) * sides)  # fmt: skip
        crackle = np.stack([np.convolve(row, self._burst)[:length] for row in impulses])
        hiss = rng.standard_normal((2, length)).astype(np.float32) * (level * CRACKLE_HISS)
        return (crackle + hiss).astype(np.float32)


def _crackle_burst(sample_rate: int) -> np.ndarray:
    """A crackle's burst: noise dying away over CRACKLE_DECAY_S, the same shape for every pop
    (its level and sign are each pop's), peak 1."""
    decay = CRACKLE_DECAY_S * sample_rate
    samples = np.arange(round(6 * decay))
    shape = np.random.default_rng(CRACKLE_SEED).standard_normal(len(samples))
    shape *= np.exp(-samples / decay)
    return (shape / np.abs(shape).max()).astype(np.float32)


class Lowpass:
    """The linear part of JUCE's ladder low-pass (LADDER_*), streamed: call in order."""

    def __init__(self, cutoff_hz: float, sample_rate: int):
        pole = float(np.exp(-2.0 * np.pi * cutoff_hz / sample_rate))
        stage = (1.0 - pole) * np.asarray(LADDER_ZERO)
        stages, poles = np.array([1.0]), np.array([1.0])
        for _ in range(4):
            stages = np.convolve(stages, stage)
            poles = np.convolve(poles, [1.0, -pole])
        # Numerator and denominator over z^-1, the feedback a sample late.
        self._b = LADDER_GAIN * np.append(stages, 0.0)
        self._a = np.append(poles, 0.0) + LADDER_FEEDBACK * np.insert(stages, 0, 0.0)
        self._state = np.zeros((2, len(self._a) - 1))

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        out, self._state = lfilter(self._b, self._a, audio, axis=1, zi=self._state)
        return out.astype(np.float32)
