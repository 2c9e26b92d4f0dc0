"""Genre styles: progressions, drum patterns, part styles and General MIDI programs.

Everything the composer knows about a genre is a row here, so a reader can change how a genre
sounds without touching the composition code. Drum patterns are 16 steps per 4-beat bar
(sixteenth notes): 'X' accent, 'x' hit, 'o' ghost, '.' rest; one pattern per intensity 1..3.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# General MIDI percussion keys.
KICK, SIDE_STICK, SNARE, CLAP, HAT, PEDAL_HAT, OPEN_HAT = 36, 37, 38, 39, 42, 44, 46
LOW_TOM, MID_TOM, HIGH_TOM, CRASH, RIDE, TAMBOURINE, SHAKER = 45, 47, 50, 49, 51, 54, 70

# Default General MIDI program (0-based) of each vocabulary instrument.
DEFAULT_PROGRAMS = {
    "piano": 0,  # Acoustic Grand Piano
    "strings": 48,  # String Ensemble 1
    "pads": 89,  # Pad 2 (warm)
    "acoustic-guitar": 25,  # Acoustic Guitar (steel)
    "electric-guitar": 27,  # Electric Guitar (clean)
    "bass": 33,  # Electric Bass (finger)
    "brass": 61,  # Brass Section
    "woodwinds": 73,  # Flute
    "synth": 81,  # Lead 2 (sawtooth)
    "plucks": 46,  # Orchestral Harp
}

# Where each instrument sits in the stereo field (MIDI pan: 0 left, 64 centre, 127 right),
# as on a band stage: rhythm section in the middle, the rest spread either side.
PANS = {
    "drums": 64,
    "bass": 64,
    "piano": 50,
    "strings": 82,
    "pads": 64,
    "acoustic-guitar": 42,
    "electric-guitar": 86,
    "brass": 76,
    "woodwinds": 52,
    "synth": 72,
    "plucks": 38,
}

DrumPattern = dict[int, str]


@dataclass(frozen=True)
class Style:
    name: str
    major: list[list[str]]
    minor: list[list[str]]
    # Bars per chord: 2 for slow-moving harmony.
    bars_per_chord: int
    drums: dict[int, DrumPattern]
    bass: str  # sustain | pulse | root8 | octaves | syncopated | walking
    comping: str  # sustain | pulse8 | strum | arp | stab | power
    # Chance of a melody onset on each grid step, and steps per beat (2 = eighths).
    melody_density: float
    melody_grid: int
    # Delay of off-beat eighths as a fraction of a beat (0 = straight).
    swing: float = 0.0
    programs: dict[str, int] = field(default_factory=dict)
    # Genres that end on a plagal (IV-I) rather than an authentic (V-I) cadence.
    plagal_ending: bool = False

    def program(self, instrument: str) -> int:
        return self.programs.get(instrument, DEFAULT_PROGRAMS[instrument])


_FOUR_ON_FLOOR = {
    1: {KICK: "x...x...x...x...", HAT: "..x...x...x...x."},
    2: {KICK: "X...x...X...x...", CLAP: "....x.......x...", OPEN_HAT: "..x...x...x...x."},
    3: {
        KICK: "X...x...X...x...",
        CLAP: "....X.......X...",
        HAT: "xoxoxoxoxoxoxoxo",
        OPEN_HAT: "..x...x...x...x.",
    },
}
_BACKBEAT = {
    1: {KICK: "x.......x.......", SIDE_STICK: "....x.......x...", HAT: "x.x.x.x.x.x.x.x."},
    2: {KICK: "X.....x.x.......", SNARE: "....X.......X...", HAT: "x.x.x.x.x.x.x.x."},
    3: {
        KICK: "X.....x.X.x.....",
        SNARE: "....X.......X..o",
        HAT: "xxxxxxxxxxxxxxxx",
    },
}
# Kicks mostly on the beat, one pushed to the "and" of 3: the swing stays in the hats.
_BOOM_BAP = {
    1: {KICK: "x.......x.......", SIDE_STICK: "....x.......x...", HAT: "x.x.x.x.x.x.x.x."},
    2: {KICK: "X.......x.x.....", SNARE: "....X.......X...", HAT: "x.x.x.x.x.x.x.x."},
    3: {
        KICK: "X.......X.x.....",
        SNARE: "....X..o....X...",
        HAT: "x.xox.x.x.xox.x.",
        OPEN_HAT: "..............x.",
    },
}
_ROCK = {
    1: {KICK: "x.......x.......", SNARE: "....x.......x...", RIDE: "x.x.x.x.x.x.x.x."},
    2: {KICK: "X.....x.X.......", SNARE: "....X.......X...", HAT: "x.x.x.x.x.x.x.x."},
    3: {
        KICK: "X.x...x.X.x...x.",
        SNARE: "....X.......X...",
        HAT: "X.x.X.x.X.x.X.x.",
    },
}
_EPIC = {
    1: {KICK: "x.......x.......", LOW_TOM: "............x..."},
    2: {KICK: "X.......x.......", LOW_TOM: "x..x..x...x.x...", SNARE: "............x..."},
    3: {
        KICK: "X..x..x.X..x..x.",
        LOW_TOM: "x.x.x.x.x.x.x.x.",
        SNARE: "....X.......X...",
        MID_TOM: "..............xx",
    },
}
_FOLK = {
    1: {KICK: "x.......x.......", TAMBOURINE: "....x.......x..."},
    2: {KICK: "X.......x.......", SIDE_STICK: "....x.......x...", SHAKER: "xoxoxoxoxoxoxoxo"},
    3: {
        KICK: "X.....x.X.......",
        SNARE: "....X.......X...",
        TAMBOURINE: "..x...x...x...x.",
        SHAKER: "xoxoxoxoxoxoxoxo",
    },
}
_GENTLE = {
    1: {SHAKER: "x.o.x.o.x.o.x.o."},
    2: {KICK: "x.......x.......", SHAKER: "x.o.x.o.x.o.x.o."},
    3: {KICK: "x.......x.......", SIDE_STICK: "....x.......x...", SHAKER: "xoxoxoxoxoxoxoxo"},
}

STYLES: dict[str, Style] = {
    style.name: style
    for style in [
        Style(
            "ambient",
            major=[["Imaj7", "IVmaj7", "vi7", "IVmaj7"], ["I", "iii", "IV", "I"]],
            minor=[["i", "bVI", "bIII", "bVII"], ["i", "iv", "bVI", "v"]],
            bars_per_chord=2,
            drums=_GENTLE,
            bass="sustain",
            comping="sustain",
            melody_density=0.2,
            melody_grid=2,
            programs={"strings": 49, "synth": 88, "plucks": 46},
            plagal_ending=True,
        ),
        Style(
            "cinematic",
            major=[["I", "V", "vi", "IV"], ["vi", "IV", "I", "V"]],
            minor=[["i", "bVI", "bIII", "bVII"], ["i", "bVI", "iv", "V"]],
            bars_per_chord=1,
            drums=_EPIC,
            bass="pulse",
            comping="pulse8",
            melody_density=0.3,
            melody_grid=2,
            programs={"brass": 60, "plucks": 45},
        ),
        Style(
            "orchestral",
            major=[["I", "IV", "V", "I"], ["I", "vi", "ii", "V"]],
            minor=[["i", "iv", "V", "i"], ["i", "bVI", "iv", "V"]],
            bars_per_chord=1,
            drums=_EPIC,
            bass="pulse",
            comping="arp",
            melody_density=0.4,
            melody_grid=2,
            programs={"plucks": 45, "woodwinds": 71},
        ),
        Style(
            "electronic",
            major=[["vi", "IV", "I", "V"], ["I", "V", "vi", "IV"]],
            minor=[["i", "bVI", "bIII", "bVII"], ["i", "bVII", "bVI", "bVII"]],
            bars_per_chord=1,
            drums=_FOUR_ON_FLOOR,
            bass="octaves",
            comping="stab",
            melody_density=0.45,
            melody_grid=4,
            programs={"bass": 38, "pads": 90, "plucks": 84, "piano": 4},
        ),
        Style(
            "pop",
            major=[["I", "V", "vi", "IV"], ["vi", "IV", "I", "V"], ["I", "vi", "IV", "V"]],
            minor=[["i", "bVI", "bIII", "bVII"], ["i", "iv", "bVI", "bVII"]],
            bars_per_chord=1,
            drums=_BACKBEAT,
            bass="root8",
            comping="pulse8",
            melody_density=0.55,
            melody_grid=2,
            programs={"plucks": 12},
        ),
        Style(
            "rock",
            major=[["I", "bVII", "IV", "I"], ["I", "V", "vi", "IV"], ["I", "IV", "V", "IV"]],
            minor=[["i", "bVII", "bVI", "bVII"], ["i", "bIII", "bVII", "iv"]],
            bars_per_chord=1,
            drums=_ROCK,
            bass="root8",
            comping="power",
            melody_density=0.45,
            melody_grid=2,
            programs={"electric-guitar": 29, "bass": 34},
        ),
        Style(
            "hip-hop",
            major=[["Imaj7", "vi7", "ii7", "V7"]],
            minor=[["i7", "bVImaj7", "bIIImaj7", "bVII"], ["i7", "iv7", "bVImaj7", "v7"]],
            bars_per_chord=1,
            drums=_BOOM_BAP,
            bass="syncopated",
            # Sustained keys: off-beat stabs on a swung grid pull listeners (and beat trackers)
            # onto the off-beat.
            comping="sustain",
            melody_density=0.3,
            melody_grid=4,
            swing=0.16,
            programs={"synth": 80},
        ),
        Style(
            "lo-fi",
            major=[["Imaj7", "vi7", "ii7", "V7"], ["IVmaj7", "iii7", "vi7", "Imaj7"]],
            minor=[["i7", "iv7", "bVII7", "bIIImaj7"]],
            bars_per_chord=1,
            drums=_BOOM_BAP,
            bass="syncopated",
            comping="sustain",
            melody_density=0.25,
            melody_grid=2,
            swing=0.18,
            programs={"piano": 4, "plucks": 108, "bass": 32},
        ),
        Style(
            "acoustic",
            major=[["I", "V", "vi", "IV"], ["I", "IV", "vi", "V"], ["I", "iii", "IV", "V"]],
            minor=[["i", "bVII", "bVI", "bVII"], ["i", "iv", "bVII", "bIII"]],
            bars_per_chord=1,
            drums=_FOLK,
            bass="pulse",
            comping="strum",
            melody_density=0.45,
            melody_grid=2,
        ),
        Style(
            "folk",
            major=[["I", "IV", "I", "V"], ["I", "V", "IV", "I"], ["vi", "IV", "I", "V"]],
            minor=[["i", "bVII", "i", "v"], ["i", "bIII", "bVII", "i"]],
            bars_per_chord=1,
            drums=_FOLK,
            bass="walking",
            comping="strum",
            melody_density=0.5,
            melody_grid=2,
            programs={"woodwinds": 72},
        ),
        Style(
            "corporate",
            major=[["I", "V", "vi", "IV"], ["IV", "I", "V", "vi"], ["I", "Vsus4", "vi", "IV"]],
            minor=[["i", "bVI", "bIII", "bVII"]],
            bars_per_chord=1,
            drums=_FOUR_ON_FLOOR,
            bass="octaves",
            comping="pulse8",
            melody_density=0.4,
            melody_grid=2,
            programs={"plucks": 12},
        ),
    ]
}
