"""Genre styles: each genre's band, meters, grooves, bass lines, comping, harmony and sounds.

Everything the composer knows about a genre is its row here, so a musician can change how a
genre sounds without touching the composition code.

Patterns are one bar of grid steps (16 for 4/4, 12 for 3/4, 6 for 6/8):
- drums, one line per General MIDI key: 'X' accent, 'x' hit, 'o' ghost, '.' rest;
- bass: 'R' root, '5' fifth, '3' third, '8' root an octave up, 'A' a step leading to the
  next chord's root, '-' hold the note before, '.' rest;
- comping: 'X' accented chord, 'x' chord, '-' hold, '.' rest; in an arpeggio ('arp'
  technique) and in the pulse part, digits name chord tones from the bottom (0, 1, 2, 3).
Each intensity (1 quiet .. 3 full) has one or more variants; the seed and the section's
material pick among them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.generator.backends.composer import production
from services.generator.backends.composer.production import Production

# How much harder than the band a tune is played, unless its style row says otherwise.
TUNE_ACCENT = 12
# General MIDI percussion keys. A groove never strikes the open hat on a step where it
# strikes a closed or pedal hat: one hi-hat is not open and closed at once, and a GM kit's
# closed hat chokes the open one (electronic's offbeat open hat had been doubled so in 77 of
# its 129 strokes on a music review's video, hip-hop's in 12 of 12).
KICK, SIDE_STICK, SNARE, CLAP, HAT, PEDAL_HAT, OPEN_HAT = 36, 37, 38, 39, 42, 44, 46
LOW_TOM, MID_TOM, HIGH_TOM, CRASH, RIDE, TAMBOURINE, SPLASH, SHAKER = (
    45,
    47,
    50,
    49,
    51,
    54,
    55,
    70,
)
FLOOR_TOM, COWBELL, ACOUSTIC_KICK, ELECTRIC_SNARE = 41, 56, 35, 40
# Bass drums: the sidechain pumps to them, and a breakdown leaves them out.
KICKS = (ACOUSTIC_KICK, KICK)
TRIANGLE = 81  # open
CHINA, RIDE_BELL, CRASH_2, CABASA = 52, 53, 57, 69


@dataclass(frozen=True)
class TunedKit:
    """A drum kit with tuned drums among its keys: the GS Orchestra set's keys 41-53 are
    timpani, F2 to F3 a semitone apart (each key sounds its own MIDI pitch). A groove's drum
    keys are played on it as the row says: its toms as timpani on the chord sounding (the
    lower ones its root, the higher its fifth), its cymbals and hi-hats on the set's own
    (played as written they would be timpani at pitches that ignore the key)."""

    # The tuned keys, lowest and highest.
    timpani: tuple[int, int]
    roots: tuple[int, ...]
    fifths: tuple[int, ...]
    # Other keys, moved to where the set has them.
    keys: dict[int, int]


# By the kit's number (bank 128).
TUNED_KITS = {
    48: TunedKit(
        timpani=(41, 53),
        roots=(FLOOR_TOM, 43),
        fifths=(LOW_TOM, MID_TOM, 48, HIGH_TOM),
        # Its hi-hats are at 27-29, its ride at 30, its concert cymbals at 57 and 59.
        keys={
            HAT: 27,
            PEDAL_HAT: 28,
            OPEN_HAT: 29,
            RIDE: 30,
            RIDE_BELL: 30,
            CRASH: 57,
            CHINA: 59,
        },
    ),
}

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

# The sounding range (lowest, highest MIDI pitch) of the General MIDI programs that stand for
# real instruments (keyboards, synths and pads play anything; so does the whistle, whose
# samples end at G5 in TimGM6mb but reach C8 in MuseScore General). A part written outside its
# player's range moves up or down by octaves into it (arrangement.py): a flute cast as the
# pad had played down to D2, two octaves under its lowest note.
PLAYABLE = {
    11: (53, 89),  # Vibraphone, F3-F6
    12: (45, 96),  # Marimba, A2-C7
    24: (40, 84),  # Nylon guitar, E2-C6
    25: (40, 86),  # Steel guitar
    26: (40, 86),  # Jazz guitar
    27: (40, 88),  # Clean electric guitar
    28: (40, 86),  # Muted electric guitar
    29: (40, 88),  # Overdriven guitar
    30: (40, 88),  # Distortion guitar
    32: (28, 67),  # Acoustic (upright) bass, E1-G4
    33: (28, 67),  # Finger bass
    34: (28, 67),  # Picked bass
    40: (55, 100),  # Violin, G3-E7
    41: (48, 88),  # Viola, C3-E6
    42: (36, 76),  # Cello, C2-E5
    43: (24, 60),  # Contrabass, C1 (with the extension)-C4
    45: (28, 96),  # Pizzicato strings (the section)
    46: (24, 103),  # Harp, C1-G7
    56: (54, 84),  # Trumpet, F#3-C6
    57: (40, 72),  # Trombone, E2-C5
    58: (26, 65),  # Tuba, D1-F4
    60: (35, 77),  # French horn, B1-F5
    68: (58, 91),  # Oboe, Bb3-G6
    70: (34, 75),  # Bassoon, Bb1-Eb5
    71: (50, 94),  # Clarinet, D3-Bb6
    72: (74, 108),  # Piccolo, D5-C8
    73: (60, 96),  # Flute, C4-C7
    74: (60, 96),  # Recorder
    75: (60, 96),  # Pan flute
    79: (60, 84),  # Ocarina, C4-C6
    105: (48, 86),  # Banjo, C3-D6
}

# Where each instrument sits in the stereo field (MIDI pan: 0 left, 64 centre, 127 right),
# as on a band stage: rhythm section in the middle, the rest spread either side; the tune's
# player in the middle (MELODY_PAN), as a singer stands, whatever plays it (every genre's
# tune had been off-centre, lo-fi's and hip-hop's plucks 5.6 dB left).
MELODY_PAN = 64
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
    "lead-guitar": 46,
}

# An instrument asked to play a second part that one player could not play with the first:
# a second player of it takes that part, on its own track (a guitarist cannot strum power
# chords and play the lead at once). It plays the style's program for the instrument unless
# the row names one for it. A pianist plays both with two hands, so the piano has none.
SECOND_PLAYERS = {"electric-guitar": "lead-guitar"}

# How far a sequenced genre's tempo map may drift (electronic, hip-hop, lo-fi, corporate: a
# drum machine's or a loop's tempo): at 6%, as a band's, a 15 s electronic clip's cuts had
# pulled it from 131 to 120 BPM, 8% within 2 s (a music review). Its cuts off the beat are
# struck at their time, as in any genre.
SEQUENCED_FLEX = 0.03

# Default registers of the parts (lowest, highest MIDI pitch); "power" is power chords.
REGISTERS = {
    "bass": (28, 50),
    "comping": (52, 76),
    "power": (40, 64),
    "pad": (48, 72),
    "pulse": (60, 81),
}

# The parts of an arrangement, in the order they are cast.
PARTS = ("drums", "bass", "comping", "pulse", "pad", "melody")
# The level (1..3, by the section's energy) from which a part's first player plays, where
# others carry the music; the drums, the bass and the tune play at every level. A style's
# `entries` may bring a part in sooner (ambient's pads are its bed).
ENTRIES = {"comping": 1, "pulse": 2, "pad": 2}

Pattern = dict[int, str]
Intensities = dict[int, tuple[str, ...]]
Grooves = dict[int, tuple[Pattern, ...]]


@dataclass(frozen=True)
class Style:
    name: str
    # Time signatures the genre plays in (the seed picks one; the first is the most usual).
    meters: tuple[str, ...]
    # How far the tempo map may drift from the piece's tempo (0.05 = 5%).
    tempo_flex: float
    # The band: instruments the genre always brings, and those the picture may add.
    core: tuple[str, ...]
    colours: tuple[str, ...]
    # Who may play each part, in order of preference.
    casting: dict[str, tuple[str, ...]]
    # Roman-numeral progressions: "A" material (home) and "B" (contrast), by mode.
    progressions: dict[str, dict[str, tuple[tuple[str, ...], ...]]]
    # Bars per chord, by intensity 1..3.
    harmonic_rhythm: tuple[int, int, int]
    # Per meter, per intensity: drum grooves, bass lines, comping patterns, pulse ostinati.
    grooves: dict[str, Grooves]
    fills: dict[str, tuple[Pattern, ...]]
    bass: dict[str, Intensities]
    comping: dict[str, Intensities]
    pulse: dict[str, Intensities]
    # block | strum | arp | power
    comping_technique: str
    # Melody: chance of an onset on each grid step, steps per beat it moves on, its range.
    melody_density: float
    melody_grid: int
    melody_range: tuple[int, int]
    # Chords spread wide (drop-2: the second voice from the top an octave down) rather
    # than in close position.
    open_voicing: bool
    # Drum keys that mark a cut: (strong cut, other cut); none in a drumless genre. The
    # strong cut's first key is its cymbal.
    cut_hits: tuple[tuple[int, ...], tuple[int, ...]]
    # The parts whose chord must sound at once, in order of preference (the first with a
    # player plays it): the pickup's chord from the first sample, and a cut's accent where no
    # drum hit marks it. A slow-attack string chord would be heard late.
    prompt_parts: tuple[str, ...] = ("comping", "pulse", "pad")
    # How much harder than the band the tune is played (velocity): a tune in a soft-toned
    # genre is touched gently, its piano or kalimba mellow, and the mix's balance keeps
    # it forward (ambient's piano and lo-fi's vibraphone had been struck at a median 108 and
    # 106, 41-44% of their notes at 110 or more: hard, bright hammers; a music review).
    tune_accent: int = TUNE_ACCENT
    # The cymbal that opens a section and rings with the final chord.
    crash: int = CRASH
    # What a strong cut strikes within arrangement.CYMBAL_GAP_BARS of another cymbal: () is
    # its hit without the cymbal.
    spaced_cut_hit: tuple[int, ...] = ()
    # The drums of a calm section after a busier one, by meter, where the genre breaks down
    # (the kick out until the music rises again, on the drop's crash); a meter not here
    # plays the calm level's groove.
    breakdowns: dict[str, tuple[Pattern, ...]] = field(default_factory=dict)
    # A breakdown's last two bars before its drop, by meter, a build that gathers as it goes
    # (no fill goes over them).
    builds: dict[str, tuple[Pattern, Pattern]] = field(default_factory=dict)
    # Players whose timing around the grid differs from a live player's here (ms, standard
    # deviation; performance.TIMING_SD_MS): a sequenced genre's drum machine and bass line
    # sit on the grid (electronic's kick and bass had flammed by 6.8 ms, 19% of their pairs
    # more than 10 ms apart; a music review).
    timing_sd_ms: dict[str, float] = field(default_factory=dict)
    # Delay of each eighth's second sixteenth, as a fraction of an eighth (0 = straight; 0.1
    # is a drum machine's 60% swing, 0.16 its 66%).
    swing: float = 0.0
    # A strum's time from one string to the next (comping_technique "strum"): a downstroke
    # crosses its five strings in about 30 ms. (It had been 0.03 of a beat, 21-30 ms a
    # string: a 0.1 s roll, heard as a harp's arpeggio; a music review.)
    strum_ms: float = 7.5
    programs: dict[str, int] = field(default_factory=dict)
    # The chord before the final tonic: "V" (authentic) or "IV" (plagal).
    cadence: str = "V"
    # At the video's major turn: "up2" (the key rises a whole step) or "none".
    lift: str = "up2"
    # Registers (lowest, highest MIDI pitch) of the parts other than the melody, where they
    # differ from REGISTERS: where a genre's instruments sit is part of its sound.
    registers: dict[str, tuple[int, int]] = field(default_factory=dict)
    # The keys its players favour, by mode: open strings for guitars, flat keys for horns and
    # keyboards. The seed picks a position (the same in every genre) unless the user fixed the
    # key; the brief gives the mode. No two genres list one tonic at one position, so a video
    # scored in two genres with one seed is in two keys (tests check the lists).
    tonics: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Share of free off-beat sixteenths a drummer fills with ghost strokes in busier sections.
    ghost_notes: float = 0.0
    # How it is produced: drum kit, channel strips, reverb and echo sends, the bus.
    production: Production = production.POP
    # Parts that enter at another level than ENTRIES says.
    entries: dict[str, int] = field(default_factory=dict)
    # The chords and the pulse keep under the tune where it dips (arrangement's
    # _keep_under_the_tune); False lets them shimmer over it.
    under_the_tune: bool = True
    # The tune rests for the second phrase of every this many statements of a run of its
    # material (arrangement.STATEMENT_BARS each), and the band plays that phrase alone: an
    # answer without the tune, as a singer breathes between lines (0: it never rests). A
    # tune in 113-125 bars of 118-126 had tired four- and five-minute pieces (a music
    # review); the busiest genres' leads rest least.
    tune_rests: int = 2
    # Bars at the start of each phrase that restate the material's first ones note for note
    # where the chords under them are the same (a hook), rather than develop them (0: every
    # statement develops). Pop's, corporate's and electronic's tunes had come back only as
    # related material: their opening bar returned at its pitches in 0-1 of 17-32 bars (a
    # music review).
    hook_bars: int = 0

    def program(self, instrument: str) -> int:
        if instrument in self.programs:
            return self.programs[instrument]
        first = next((i for i, second in SECOND_PLAYERS.items() if second == instrument), None)
        return self.program(first) if first else DEFAULT_PROGRAMS[instrument]

    def entry(self, part: str) -> int:
        return self.entries.get(part, ENTRIES[part])

    def register(self, part: str) -> tuple[int, int]:
        return self.registers.get(part, REGISTERS[part])


# ---- shared grooves -----------------------------------------------------------------------

_FOUR_ON_FLOOR: Grooves = {
    1: (
        {KICK: "x...x...x...x...", HAT: "..x...x...x...x."},
        {KICK: "x...x...x...x...", SHAKER: "x.o.x.o.x.o.x.o."},
        {KICK: "x...x...x...x...", HAT: "..x...x...x...x.", CLAP: "............x..."},
    ),
    2: (
        {KICK: "X...x...X...x...", CLAP: "....x.......x...", OPEN_HAT: "..x...x...x...x."},
        {KICK: "X...x...X...x...", CLAP: "....x.......x...", HAT: "x.xox.xox.xox.xo"},
        {
            KICK: "X...x...X...x...",
            CLAP: "............x...",
            HAT: "..x...x...x..xx.",
            SNARE: "....x.......x...",
        },
    ),
    3: (
        {
            KICK: "X...x...X...x...",
            CLAP: "....X.......X...",
            HAT: "xo.oxo.oxo.oxo.o",
            OPEN_HAT: "..x...x...x...x.",
        },
        {
            KICK: "X...x...X...x..o",
            CLAP: "....X.......X...",
            HAT: "xx.xxx.xxx.xxx.x",
            OPEN_HAT: "..x...x...x...x.",
        },
        {
            KICK: "X...x...X...x...",
            CLAP: "....X..x....X...",
            OPEN_HAT: "..x...x...x...x.",
            RIDE: "x.x.x.x.x.x.x.x.",
        },
    ),
}
# Pop: a tight hi-hat (the foot's: on the power kit as bright as a closed hat's stick), a snare
# with a clap on two and four, the open hat lifting the end of a busier bar. (Pop had kept
# time on the standard kit's dull pedal hat, a ride and a side stick with ghost strokes, a
# live jazz or rock drummer's vocabulary; music review 7. The stick's closed hat in its
# place had played hip-hop's, electronic's and corporate's hats note for note at one tempo:
# 27% of pop's notes shared with hip-hop's.) A tambourine doubles the backbeat.
_POP: Grooves = {
    1: (
        {KICK: "x.......x.......", CLAP: "....x.......x...", PEDAL_HAT: "x.x.x.x.x.x.x.x."},
        {KICK: "x.....x.x.......", SNARE: "....x.......x...", PEDAL_HAT: "x.x.x.x.x.x.x.x."},
        {
            KICK: "x.......x.x.....",
            CLAP: "....x.......x...",
            TAMBOURINE: "....x.......x...",
            PEDAL_HAT: "x...x...x...x...",
        },
    ),
    2: (
        {
            KICK: "X.....x.x.......",
            SNARE: "....X.......X...",
            CLAP: "....x.......x...",
            PEDAL_HAT: "x.xox.xox.xox.xo",
        },
        {
            KICK: "X.......X.x.....",
            SNARE: "....X.......X...",
            CLAP: "....x.......x...",
            PEDAL_HAT: "x.x.x.x.x.x.x...",
            OPEN_HAT: "..............x.",
        },
        {KICK: "X.....x...x.....", SNARE: "....X.......X...", PEDAL_HAT: "x.x.x.x.x.x.x.x."},
    ),
    3: (
        {
            KICK: "X.....x.X.x.....",
            SNARE: "....X.......X...",
            CLAP: "....X.......X...",
            PEDAL_HAT: "x.x.x.x.x.x.x.x.",
            TAMBOURINE: "....x.......x...",
        },
        {
            KICK: "X.x...x.X.....x.",
            SNARE: "....X.......X...",
            CLAP: "....X.......X...",
            PEDAL_HAT: "x.x.x.x.x.x.x...",
            OPEN_HAT: "..............x.",
        },
        {
            KICK: "X.....x.X.....x.",
            SNARE: "....X.......X...",
            PEDAL_HAT: "x.xox.xox.xox.xo",
            TAMBOURINE: "....x.......x...",
        },
    ),
}
# Boom-bap: the snare cracking on two and four at every level (a side stick there is lo-fi's
# gesture; a clap on it, pop's), swung hats with ghost strokes, in eighths when the section
# is full (sixteenths with ghosts all through it had sounded a machine's line: musicnn's MTT
# "techno" 0.47 on its pieces; music review 12).
_BOOM_BAP: Grooves = {
    1: (
        {KICK: "X.........X.....", SNARE: "....X.......X...", HAT: "x.x.x.x.x.x.x.x."},
        {KICK: "X......x..x.....", SNARE: "....X.......X...", HAT: "x.x.x.x.x.x.x.x."},
    ),
    2: (
        {KICK: "X.......x.x.....", SNARE: "....X.......X...", HAT: "x.x.x.x.x.x.x.x."},
        {KICK: "X..x......x.....", SNARE: "....X.......X...", HAT: "x.xox.x.x.xox.x."},
        {KICK: "X......x..x.....", SNARE: "....X.......X...", HAT: "x.x.x.xox.x.x.xo"},
    ),
    3: (
        {KICK: "X.......X.x.....", SNARE: "....X..o....X...",
         HAT: "x.x.x.x.x.x.x...", OPEN_HAT: "..............x."},
        {KICK: "X..x....X.x..x..", SNARE: "....X.......X.o.", HAT: "x.x.x.x.x.x.x.xo"},
        {KICK: "X.....xx..X.....", SNARE: "....X.......X...",
         HAT: "x.x.x...x.x.x.xo", OPEN_HAT: "......x........."},
    ),
}  # fmt: skip
# Rock: a deep bass drum, the backbeat, and ride or open hats rather than pop's tight hats.
_ROCK: Grooves = {
    1: (
        {ACOUSTIC_KICK: "x.......x.......", SNARE: "....x.......x...", RIDE: "x.x.x.x.x.x.x.x."},
        {
            ACOUSTIC_KICK: "x.......x.x.....",
            SNARE: "....x.......x...",
            PEDAL_HAT: "..x...x...x...x.",
        },
        {
            ACOUSTIC_KICK: "x.....x.x.......",
            SNARE: "....x.......x...",
            PEDAL_HAT: "x.x.x.x.x.x.x.x.",
        },
    ),
    2: (
        {
            ACOUSTIC_KICK: "X.....x.X.......",
            SNARE: "....X.......X...",
            OPEN_HAT: "x.x.x.x.x.x.x.x.",
        },
        {ACOUSTIC_KICK: "X.......X.x.....", SNARE: "....X.......X...", RIDE: "x.x.x.x.x.x.x.x."},
        {ACOUSTIC_KICK: "X.x.....X.x.....", SNARE: "....X.......X...", RIDE: "x.x.x.x.x.x.x.x."},
    ),
    3: (
        {ACOUSTIC_KICK: "X.x...x.X.x...x.", SNARE: "....X.......X...", CRASH_2: "x...x...x...x..."},
        {
            ACOUSTIC_KICK: "X.x.X.x.X.x.X.x.",
            SNARE: "....X.......X...",
            CRASH: "x...............",
            RIDE: "..x...x...x...x.",
        },
        {
            ACOUSTIC_KICK: "X...x.x.X...x.x.",
            SNARE: "....X.......X...",
            OPEN_HAT: "x.x.x.x.x.x.x.x.",
        },
    ),
}
_EPIC: Grooves = {
    1: (
        {LOW_TOM: "x.......x.......", FLOOR_TOM: "............x..."},
        {FLOOR_TOM: "x.......x.......", LOW_TOM: "......x.....x..."},
    ),
    2: (
        {KICK: "X.......x.......", LOW_TOM: "x..x..x...x.x...", SNARE: "............x..."},
        {FLOOR_TOM: "X..x..x.X..x..x.", SNARE: "....x.......x..."},
    ),
    3: (
        {
            KICK: "X..x..x.X..x..x.",
            LOW_TOM: "x.x.x.x.x.x.x.x.",
            SNARE: "....X.......X...",
            MID_TOM: "..............xx",
        },
        {FLOOR_TOM: "X.xxX.xxX.xxX.xx", SNARE: "....X.......X...", KICK: "x.......x......."},
    ),
}
_EPIC_34: Grooves = {
    1: ({FLOOR_TOM: "x...........", LOW_TOM: "........x..."},),
    2: ({KICK: "X...........", LOW_TOM: "....x...x...", SNARE: "........x..."},),
    # The downbeat strongest: accented snares on two and three had struck over it.
    3: ({KICK: "X.......x...", LOW_TOM: "x.x.x.x.x.x.", SNARE: "....x...x..."},),
}
# Folk's 6/8: a jig on a bodhran-like low tom (the hand's stroke, the tipper's ghosts), no
# side stick or snare on four (with them over a root-fifth bass the 6/8 was a country shuffle:
# musicnn's "country" 0.24 first; music review 11).
_JIG: Grooves = {
    1: ({KICK: "x.....", SHAKER: "x..x.."},),
    2: ({KICK: "X.....", LOW_TOM: "x.ox.o", SHAKER: "xooxoo"},),
    3: ({KICK: "X..x..", LOW_TOM: "X.oxoo", TAMBOURINE: "x..x.."},),
}
_GENTLE: Grooves = {
    1: ({SHAKER: "x.o.x.o.x.o.x.o."}, {SHAKER: "x...x.o.x...x.o."}),
    2: (
        {KICK: "x.......x.......", SHAKER: "x.o.x.o.x.o.x.o."},
        {KICK: "x.........x.....", SHAKER: "x...x.o.x...x.o."},
    ),
    3: (
        {KICK: "x.......x.......", SIDE_STICK: "....x.......x...", SHAKER: "xoxoxoxoxoxoxoxo"},
        {KICK: "x.........x.....", SIDE_STICK: "............x...", SHAKER: "x.oxx.oxx.oxx.ox"},
    ),
}
_GENTLE_34: Grooves = {
    1: ({SHAKER: "x.o.x.o.x.o."}, {SHAKER: "x...x.o.x.o."}),
    2: (
        {KICK: "x...........", SHAKER: "x.o.x.o.x.o."},
        {KICK: "x.......x...", SHAKER: "x...x.o.x.o."},
    ),
    3: (
        {KICK: "x...........", SIDE_STICK: "....x...x...", SHAKER: "xoxoxoxoxoxo"},
        {KICK: "x.......x...", SIDE_STICK: "........x...", SHAKER: "x.oxx.oxx.ox"},
    ),
}

# Folk's stomp: a bass drum on every beat as a stamping foot, the tambourine leaning on 2 and 4
# with the floor tom when it builds. No snare backbeat (pop's and rock's), and no off-beat eighths
# (with them a beat tracker heard folk at double time).
_STOMP: Grooves = {
    1: (
        {KICK: "x.......x.......", TAMBOURINE: "....x.......x..."},
        {KICK: "x...x...x...x...", TAMBOURINE: "............x..."},
    ),
    2: (
        {KICK: "X...x...X...x...", TAMBOURINE: "x...X...x...X..."},
        {KICK: "X...x...X...x...", SIDE_STICK: "..x...x...x...x."},
    ),
    3: (
        {
            KICK: "X...x...X...x...",
            FLOOR_TOM: "....X.......X...",
            TAMBOURINE: "x...X...x...X...",
        },
        {
            KICK: "X...x...X...x...",
            FLOOR_TOM: "X.......X.......",
            TAMBOURINE: "....X.......X...",
        },
    ),
}
# Lo-fi: a lazy kick, a rim click on 2 and 4, a cabasa breathing between.
_LAZY: Grooves = {
    1: (
        {KICK: "x.........x.....", SIDE_STICK: "....x.......x...", CABASA: "..o...o...o...o."},
        {KICK: "x.....x...x.....", SIDE_STICK: "....x.......x...", CABASA: "x.o.x.o.x.o.x.o."},
        {KICK: "x......x..x.....", SIDE_STICK: "....x.......x...", CABASA: "..x...x...x...x."},
    ),
    2: (
        {KICK: "x.....x...x.....", SIDE_STICK: "....x.......x...", CABASA: "x.x.x.x.x.x.x.x."},
        {KICK: "x..x......x.....", SIDE_STICK: "....x.......x..o", CABASA: "x.o.x.o.x.o.x.o."},
        {KICK: "x.......x.x.....", SIDE_STICK: "....x.......x...", CABASA: "..x...x...x...x."},
    ),
    3: (
        {
            KICK: "x.....x...x..x..",
            ELECTRIC_SNARE: "....x.......x...",
            CABASA: "xoxoxoxoxoxoxoxo",
        },
        {KICK: "x..x......x..x..", ELECTRIC_SNARE: "....x.......x...", CABASA: "x.xox.xox.xox.xo"},
        {KICK: "x......x.x...x..", ELECTRIC_SNARE: "....x.......x...", CABASA: "x.x.x.xox.x.x.xo"},
    ),
}
# Corporate: a shaker or tambourine in eighths over kick and clap. (Its shaker had run in
# sixteenths with a cowbell, over a marimba and a piano in sixteenths too: three layers of
# machine sixteenths, heard as techno; music review 7.)
_TIDY: Grooves = {
    1: (
        {KICK: "x.......x.......", SHAKER: "x.o.x.o.x.o.x.o."},
        {KICK: "x.......x.....x.", TAMBOURINE: "..x...x...x...x."},
    ),
    2: (
        {KICK: "x.......x.x.....", CLAP: "....x.......x...", SHAKER: "x.o.x.o.x.o.x.o."},
        {KICK: "x...x...x...x...", CLAP: "....x.......x...", TAMBOURINE: "..x...x...x...x."},
        {KICK: "x.....x.x.......", CLAP: "....x.......x...", SHAKER: "x.o.x.o.x.o.x.o."},
    ),
    3: (
        {
            KICK: "X...x...X...x...",
            CLAP: "....X.......X...",
            HAT: "x.x.x.x.x.x.x...",
            OPEN_HAT: "..............x.",
        },
        {
            KICK: "X.....x.X.......",
            SNARE: "....X.......X...",
            TAMBOURINE: "x.x.x.x.x.x.x.x.",
        },
    ),
}
# Orchestral percussion: timpani-like floor toms and a bass drum, cymbals at the peaks (the
# crash that opens a section), no kit cymbal keeping time: a ride in quarter notes had
# played through the orchestra's loudest sections (93 strokes in a 97 s piece; a music
# review heard a rock drummer with timpani).
_TIMPANI: Grooves = {
    1: ({FLOOR_TOM: "x..............."}, {FLOOR_TOM: "x...........x..."}),
    2: (
        {FLOOR_TOM: "x.......x.......", ACOUSTIC_KICK: "x..............."},
        {FLOOR_TOM: "x.....x.x.......", ACOUSTIC_KICK: "x..............."},
    ),
    3: (
        {FLOOR_TOM: "x.x.x...x.x.x...", ACOUSTIC_KICK: "x.......x......."},
        {
            FLOOR_TOM: "x.......x.x.....",
            LOW_TOM: "....x.......x.x.",
            ACOUSTIC_KICK: "x.......x.......",
        },
    ),
}

# Acoustic: acoustic pop's light kit, a shaker keeping time (on the beat and its last
# sixteenth, no off-beat eighths: over the strum's and the pulse's eighths, every eighth had an
# onset and librosa heard 9 of 14 pieces at double time), a side stick on 2 and 4, hand claps
# when the section is full. (A cajon's slap doubled by a tambourine on 2 and 4 over a root-fifth
# bass had been a country record: musicnn's "country" 0.23 first; music review 10.)
_SHAKEN = "x..ox..ox..ox..o"
_SHAKER_KIT: Grooves = {
    1: (
        {ACOUSTIC_KICK: "x.......x.......", SHAKER: _SHAKEN},
        {ACOUSTIC_KICK: "x.....x.........", SHAKER: _SHAKEN},
    ),
    2: (
        {ACOUSTIC_KICK: "x.....x.x.......", SIDE_STICK: "....x.......x...", SHAKER: _SHAKEN},
        {ACOUSTIC_KICK: "x..x....x.......", SIDE_STICK: "....x..o....x...", SHAKER: _SHAKEN},
        {ACOUSTIC_KICK: "x.......x..x....", SIDE_STICK: "....x.......x...", SHAKER: _SHAKEN},
    ),
    3: (
        {ACOUSTIC_KICK: "x.....x.x..x....", CLAP: "....X.......X...", SHAKER: _SHAKEN},
        {ACOUSTIC_KICK: "x..x..x.x.......", CLAP: "....X.......X...", SHAKER: _SHAKEN},
    ),
}

_FILL: tuple[Pattern, ...] = (
    {SNARE: "............xxxx", KICK: "............x..."},
    {SNARE: "............x.xx", HIGH_TOM: "..............x.", KICK: "............x..."},
)
_TOM_FILL: tuple[Pattern, ...] = (
    {HIGH_TOM: "............xx..", MID_TOM: "..............x.", LOW_TOM: "...............x"},
    {SNARE: "............x.x.", LOW_TOM: ".............x.x"},
)
_LIGHT_FILL: tuple[Pattern, ...] = ({SIDE_STICK: "............x.xx", KICK: "............x..."},)
# Folk: the floor tom stamping into the bar line, the tambourine shaken with it.
_STOMP_FILL: tuple[Pattern, ...] = (
    {FLOOR_TOM: "............x.xx", TAMBOURINE: "............xxxx"},
)
# Corporate: hand claps building into the next bar, as a produced track does.
_CLAP_FILL: tuple[Pattern, ...] = ({CLAP: "..........x.x.xx", OPEN_HAT: "..............x."},)
# Electronic: a clap roll building into the next bar over the four-on-the-floor kick, as a
# dance track's build does (a drummer's snare fill on the last beat is pop's and rock's).
# Electronic's breakdown: the kick out, the pulse kept by hats or a shaker accented on the
# beat and the backbeat's clap.
_BREAKDOWN: tuple[Pattern, ...] = (
    {HAT: "x.o.x.o.x.o.x.o.", CLAP: "....x.......x..."},
    {SHAKER: "x.o.x.o.x.o.x.o.", CLAP: "....x.......x..."},
)
# Electronic's build out of a breakdown: a clap roll from the beat to the eighth to the
# sixteenth, louder at the end, the hats thinned under it; the kick waits for the drop.
_BUILD: tuple[Pattern, Pattern] = (
    {HAT: "x.o.x.o.x.o.x.o.", CLAP: "x...x...x...x..."},
    {HAT: "x...x...x...x...", CLAP: "x.x.x.x.xxxxXXXX"},
)
_BUILD_FILL: tuple[Pattern, ...] = (
    {KICK: "........x...x...", CLAP: "........o.o.xxxx"},
    {KICK: "........x...x...", CLAP: "........x.x.x.xx", OPEN_HAT: "..............x."},
)
_FILL_34: tuple[Pattern, ...] = ({SNARE: "........xxxx", KICK: "........x..."},)
_FILL_68: tuple[Pattern, ...] = ({SNARE: "...xxx", KICK: "...x.."},)

# Bass lines and comping shared by several genres.
# Held roots where the band is calm: a sixteenth on one and three left the bass silent for
# most of every bar, and where the others stop at a cut the mix with it (15-18 dB under the
# bar before; a music review).
_BASS_ROCK: Intensities = {
    1: ("R-------R-------", "R-----R-R-------"),
    2: ("R.R.R.R.R.R.R.R.", "R..RR.R.R.R.R.RA"),
    3: ("RRRRRRRRRRRRRRRR", "R.RRR.RRR.RRR.RA"),
}
_BASS_POP: Intensities = {
    1: ("R-------R-------", "R-------5-------"),
    2: ("R.....R.R...5...", "R..R..R.R...R.A."),
    3: ("R.R.R.R.R.R.R.R.", "R..R..R.R..R5.A."),
}
# House's bass: off the kick, on the offbeats (rolling sixteenths between the kicks when the
# section is full), so kick and bass take turns in the low end. (Octaves on the kick's own
# beats, a sustained sub under it, had left the kick's 40-120 Hz 5.5 dB over the bass as
# it struck; a music review.)
_BASS_OFFBEAT: Intensities = {
    1: ("..R...R...R...R.",),
    2: ("..R...R...R...R.", "..R8..R8..R8..R8"),
    3: (".RRR.RRR.RRR.RRR", ".R8R.R8R.R8R.R8R"),
}
# An 808 under the kick: roots held from the kicks every boom-bap groove strikes, one and the
# "and" of three; busier sections' also on three or the "e" of four, where some of their
# grooves kick (the groove and the bass pick their patterns apart). A line of its own, fifths
# and approach notes, had met a kick with about half its notes (music review 12).
_BASS_808: Intensities = {
    1: ("R---------R-----",),
    2: ("R---------R-----", "R-------R-R-----"),
    3: ("R-------R-R-----", "R---------R--R--"),
}
_BASS_PULSE: Intensities = {
    1: ("R-------R-------",),
    2: ("R---R---R---R---",),
    3: ("R.R.R.R.R.R.R.R.",),
}
_BASS_SUSTAIN: Intensities = {
    1: ("R---------------",),
    2: ("R---------------",),
    3: ("R-------5-------",),
}

_COMP_STRUM: Intensities = {
    1: ("X-------x-------",),
    2: ("X---x-x-X-x-x-x-", "X---x-xxX-x-xxx-"),
    3: ("X-x-x-xxX-x-x-xx", "X-xxx-xxX-xxx-xx"),
}
# A chopped sample's loop: a chord held from the bar's downbeat, one or two stabs after it
# (block chords three or four times a bar had been a jazz pianist's comping: MSD "jazz" 0.14
# on hip-hop's pieces; music review 12).
_COMP_LOOP: Intensities = {
    1: ("X---------------",),
    2: ("X-------..x-----", "X-----x---------"),
    3: ("X-----x-..x-----", "X-------..x---x-"),
}
_COMP_STAB: Intensities = {
    1: ("......x.......x.",),
    2: ("..x...x...x...x.", "...x..x....x..x."),
    3: ("..x...x...x.x.x.", "..xx..x...xx..x."),
}
_COMP_POWER: Intensities = {
    1: ("X---------------", "X-------X-------"),
    2: ("X.x.X.x.X.x.X.x.", "X-x-x-x-X-x-x-x-"),
    3: ("XxxxXxxxXxxxXxxx", "Xx.xXx.xXx.xXx.x"),
}
_ARP_UP: Intensities = {
    1: ("0---1---2---1---",),
    2: ("0.1.2.3.2.1.2.1.", "0.2.1.3.0.2.1.3."),
    3: ("0123210123210123", "0213021302130213"),
}

_PULSE_8: Intensities = {
    1: ("0.1.0.1.0.1.0.1.",),
    2: ("0.2.1.2.0.2.1.2.", "0.1.2.1.0.1.2.1."),
    3: ("0202120202121202", "0120012001200120"),
}
_PULSE_Q: Intensities = {
    1: ("0...1...2...1...",),
    2: ("0.1.2.1.0.1.2.1.",),
    3: ("0.1.2.1.0.1.2.1.",),
}

_MAJOR_POP = (("I", "V", "vi", "IV"), ("vi", "IV", "I", "V"), ("I", "vi", "IV", "V"))
_MINOR_POP = (
    ("i", "bVI", "bIII", "bVII"),
    ("i", "iv", "bVI", "bVII"),
    ("i", "bVII", "bVI", "bVII"),
)

STYLES: dict[str, Style] = {
    style.name: style
    for style in [
        Style(
            "ambient",
            meters=("4/4", "3/4"),
            tempo_flex=0.08,
            core=("pads", "piano", "plucks", "bass"),
            colours=("strings", "woodwinds", "synth", "acoustic-guitar"),
            # A sparse piano tune, echoed, over high string chords, the pads and the harp's
            # pulse (with the tune in the strings, a published tagger heard "classical,
            # strings, violin": bench_genre.py). The harp's chord marks the cuts.
            casting={
                "drums": ("drums",),
                "bass": ("bass",),
                "comping": ("strings", "acoustic-guitar", "piano"),
                "pulse": ("plucks", "synth", "piano"),
                "pad": ("pads", "strings"),
                "melody": ("piano", "woodwinds", "synth", "strings"),
            },
            progressions={
                "major": {
                    "A": (("Imaj7", "IVmaj7", "vi7", "IVmaj7"), ("Iadd9", "iii", "IVmaj7", "I")),
                    "B": (("vi7", "IVmaj7", "Iadd9", "V"), ("IVmaj7", "V", "iii7", "vi7")),
                },
                "minor": {
                    "A": (("i", "bVI", "i", "bVI"), ("i", "iv", "bVI", "v")),
                    "B": (("bVI", "bIII", "bVII", "i"), ("iv", "bVI", "bVII", "i")),
                },
            },
            harmonic_rhythm=(2, 2, 1),
            grooves={"4/4": _GENTLE, "3/4": _GENTLE_34},
            fills={"4/4": _LIGHT_FILL, "3/4": _FILL_34},
            bass={
                "4/4": _BASS_SUSTAIN,
                "3/4": {1: ("R-----------",), 2: ("R-----------",), 3: ("R-------5---",)},
            },
            comping={
                "4/4": {
                    1: ("X---------------",),
                    2: ("X-------x-------",),
                    3: ("X---x---x---x---",),
                },
                "3/4": {1: ("X-----------",), 2: ("X---x---x---",), 3: ("X---x---x---",)},
            },
            pulse={
                "4/4": _PULSE_Q,
                "3/4": {1: ("0...1...2...",), 2: ("0.1.2.1.2.1.",), 3: ("0.1.2.3.2.1.",)},
            },
            comping_technique="block",
            melody_density=0.18,
            melody_grid=2,
            melody_range=(64, 84),
            tune_accent=-14,
            registers={"bass": (26, 45), "comping": (64, 88), "pulse": (72, 91)},
            production=production.AMBIENT,
            tonics={"major": ("Db", "E", "A", "Gb"), "minor": ("C#", "F#", "B", "E")},
            programs={"strings": 49, "synth": 88, "plucks": 46, "bass": 38},
            cadence="IV",
            lift="none",
            open_voicing=True,
            cut_hits=((), ()),
            prompt_parts=("pulse", "comping", "pad"),
            # The pads are the genre's bed, from the quietest section.
            entries={"pad": 1},
            # Its harp and high strings shimmer over a sparse tune.
            under_the_tune=False,
            # Its tune comes and goes: every statement's answer is the bed's.
            tune_rests=1,
        ),
        Style(
            "cinematic",
            meters=("4/4",),
            tempo_flex=0.08,
            core=("strings", "piano", "brass", "drums", "bass"),
            colours=("pads", "woodwinds", "plucks", "synth"),
            # Underscore's layout: a horn theme over held string chords, a piano's broken chords
            # as its motor, the contrabass and the timpani under them. (A piano's tune over a
            # string ostinato of one repeated root had carried the cue alone, a piano trio
            # with a band: musicnn's MTT "piano" 0.65, MSD "jazz" 0.15; music review 9. A
            # string tune instead was heard as orchestral, tag for tag.)
            casting={
                "drums": ("drums",),
                "bass": ("bass",),
                "comping": ("strings", "piano"),
                "pulse": ("piano", "plucks", "synth"),
                "pad": ("pads", "woodwinds"),
                "melody": ("brass", "strings", "woodwinds", "piano"),
            },
            progressions={
                "major": {
                    "A": (
                        ("I", "iii", "IV", "iv"),
                        ("I", "bVI", "bVII", "I"),
                        ("vi", "iii", "IV", "I"),
                    ),
                    "B": (("IV", "V", "iii", "vi"), ("vi", "V", "IV", "V")),
                },
                "minor": {
                    "A": (
                        ("i", "bIII", "bVI", "V"),
                        ("i", "bVI", "iv", "V"),
                        ("i", "iv", "bVI", "V"),
                    ),
                    "B": (("bVI", "bIII", "bVII", "i"), ("iv", "bVI", "bVII", "V")),
                },
            },
            harmonic_rhythm=(2, 1, 1),
            grooves={"4/4": _EPIC},
            fills={"4/4": _TOM_FILL},
            bass={
                "4/4": {
                    1: ("R---------------",),
                    2: ("R-------R-------", "R-----R-R-------"),
                    3: ("R.R.R.R.R.R.R.R.", "R..R..R.R..R..R."),
                }
            },
            comping={
                "4/4": {
                    1: ("X---------------",),
                    2: ("X-------x-------",),
                    3: ("X-----x-X-----x-", "X---x---X---x---"),
                }
            },
            # Eighths in quiet sections, driving sixteenths once the cue moves (the engine's
            # pace when the strings had played it).
            pulse={
                "4/4": {
                    1: ("0.1.2.1.0.1.2.1.", "0.2.1.2.0.2.1.2."),
                    2: ("0121012101210121", "0.1.2.1.0.1.2.1."),
                    3: ("0121012101210121", "0212021202120212"),
                }
            },
            comping_technique="block",
            melody_density=0.28,
            melody_grid=2,
            # The horns' singing range.
            melody_range=(55, 74),
            # The pad from C3: down to A2, over the bass's G2, it had voiced thirds at 100 Hz
            # under the strings (a music review, 2 of 6 pieces).
            registers={"bass": (24, 43), "comping": (48, 67), "pad": (48, 69), "pulse": (48, 67)},
            open_voicing=True,
            # A light cut is a triangle over the timpani: the timpani's stroke alone lay under
            # the held final chord, and no onset detector heard the montage's cuts there; a
            # splash, pop's light accent, had marked them as pop marks them.
            cut_hits=((CRASH, LOW_TOM), (TRIANGLE, LOW_TOM)),
            # The timpani alone peak late, under the band: the triangle marks the cut.
            spaced_cut_hit=(TRIANGLE, LOW_TOM),
            production=production.CINEMATIC,
            tonics={"major": ("D", "C", "Gb", "Eb"), "minor": ("D", "C", "E", "G")},
            programs={"brass": 60, "plucks": 45, "bass": 43, "strings": 48, "pads": 94},
            # The piano's ostinato is the underscore's engine, in quiet sections too, and
            # sounds a chord at once (the strings' slow attack would be heard late).
            entries={"pulse": 1},
            prompt_parts=("pulse", "comping", "pad"),
        ),
        Style(
            "orchestral",
            meters=("4/4", "3/4"),
            tempo_flex=0.08,
            core=("strings", "brass", "woodwinds", "plucks", "bass"),
            colours=("piano", "drums"),
            # The violins carry the tune, as in most orchestral writing, over the clarinet's
            # running ostinato (with the tune in the oboe and the ostinato in the strings, a
            # published tagger heard "ambient, slow, synth": bench_genre.py).
            casting={
                "drums": ("drums",),
                "bass": ("bass",),
                "comping": ("plucks", "piano"),
                "pulse": ("woodwinds", "strings"),
                "pad": ("brass",),
                "melody": ("strings", "woodwinds", "brass"),
            },
            progressions={
                "major": {
                    "A": (("I", "IV", "V", "I"), ("I", "vi", "ii", "V"), ("I", "V", "vi", "iii")),
                    "B": (("IV", "V", "iii", "vi"), ("ii", "V", "I", "vi"), ("vi", "ii", "V", "I")),
                },
                "minor": {
                    "A": (("i", "iv", "V", "i"), ("i", "bVI", "iv", "V"), ("i", "bIII", "iv", "V")),
                    "B": (("bIII", "bVII", "bVI", "V"), ("iv", "bVII", "bIII", "V")),
                },
            },
            harmonic_rhythm=(2, 1, 1),
            grooves={"4/4": _TIMPANI, "3/4": _EPIC_34},
            fills={"4/4": _TOM_FILL, "3/4": _FILL_34},
            bass={
                "4/4": _BASS_PULSE,
                "3/4": {1: ("R-----------",), 2: ("R...R...R...",), 3: ("R.R.R.R.R.R.",)},
            },
            comping={
                "4/4": _ARP_UP,
                "3/4": {1: ("0---1---2---",), 2: ("0.1.2.1.2.1.",), 3: ("012321012321",)},
            },
            pulse={
                "4/4": _PULSE_8,
                "3/4": {1: ("0...1...1...",), 2: ("0.1.2.1.2.1.",), 3: ("0.1.2.1.2.1.",)},
            },
            comping_technique="arp",
            melody_density=0.4,
            melody_grid=2,
            # The violins' tune over the harp's arpeggio and the horns (from D4, with the harp
            # to C6, the harp had sounded over a third of its notes, the horns over 30% in a
            # seed).
            melody_range=(65, 88),
            registers={"bass": (28, 47), "comping": (52, 79), "pad": (50, 70), "pulse": (57, 74)},
            production=production.ORCHESTRAL,
            tonics={"major": ("Bb", "D", "Eb", "C"), "minor": ("G", "D", "C", "F")},
            programs={"plucks": 46, "woodwinds": 71, "brass": 60, "bass": 43, "strings": 48},
            open_voicing=True,
            # The side drum's crack with the timpani: in a hall the timpani's and the bass
            # drum's slow attacks peak 30-35 ms after the cut, heard late.
            cut_hits=((CRASH_2, FLOOR_TOM), (SNARE, FLOOR_TOM)),
            spaced_cut_hit=(SNARE, FLOOR_TOM),
        ),
        Style(
            "electronic",
            meters=("4/4",),
            # A programmed groove keeps its tempo (SEQUENCED_FLEX).
            tempo_flex=SEQUENCED_FLEX,
            core=("drums", "bass", "synth", "pads", "plucks"),
            colours=("piano", "strings"),
            casting={
                "drums": ("drums",),
                "bass": ("bass",),
                "comping": ("piano", "electric-guitar"),
                "pulse": ("plucks",),
                "pad": ("pads", "strings"),
                "melody": ("synth", "piano"),
            },
            progressions={
                "major": {
                    "A": (
                        ("vi", "IV", "V", "V"),
                        ("vi", "vi", "IV", "V"),
                        ("I", "iii", "vi", "IV"),
                    ),
                    "B": (("IV", "V", "vi", "vi"), ("ii", "IV", "vi", "V")),
                },
                "minor": {
                    "A": (
                        ("i", "bVII", "bVI", "bVII"),
                        ("i", "bIII", "bVII", "bVI"),
                        ("i", "i", "bVI", "bVII"),
                    ),
                    "B": (("bVI", "bVII", "i", "i"), ("iv", "bVI", "i", "bVII")),
                },
            },
            harmonic_rhythm=(2, 1, 1),
            grooves={"4/4": _FOUR_ON_FLOOR},
            fills={"4/4": _BUILD_FILL},
            # A breakdown keeps the hats and the backbeat, the kick and its pumping out: the
            # kick had played 97-99% of every piece's beats, with no breakdown or drop (a
            # music review).
            breakdowns={"4/4": _BREAKDOWN},
            # One bar of claps had built to the drop (a music review).
            builds={"4/4": _BUILD},
            bass={"4/4": _BASS_OFFBEAT},
            comping={"4/4": _COMP_STAB},
            pulse={"4/4": _ARP_UP},
            comping_technique="block",
            melody_density=0.45,
            melody_grid=4,
            # The lead over the pads (from E4 the pads had sounded over 29% of its notes).
            melody_range=(67, 88),
            registers={"bass": (24, 38), "comping": (60, 79), "pad": (55, 79), "pulse": (55, 74)},
            open_voicing=False,
            # The crash with the kick: a clap there had struck the one, 12% of the claps on a
            # video cut every bar (a music review).
            cut_hits=((CRASH, KICK), (CLAP, KICK)),
            hook_bars=2,
            production=production.ELECTRONIC,
            tonics={"major": ("C", "F", "G", "A"), "minor": ("Eb", "A", "G", "C")},
            # A plucked synth bass (Synth Bass 2: 22 dB down 0.5 s into a note) leaves the kick the
            # sub; the arpeggio a square wave's pluck (the distorted charang, 84, had held a
            # guitar's tone in 1-3 kHz, 36% of its energy; a music review).
            # Its lead sounds from the first milliseconds (Lead 8, bass + lead: the saw lead, 81,
            # swelled for 150 ms from 6-7 dB under its body, and most of the tune's notes
            # last 0.1-0.2 s; music review 9).
            programs={"bass": 39, "pads": 90, "plucks": 80, "piano": 4, "synth": 87},
            # Sequenced: the drum machine, the bass line and the arpeggio on the grid.
            timing_sd_ms={"drums": 0.0, "bass": 0.0, "plucks": 0.0},
        ),
        Style(
            "pop",
            meters=("4/4",),
            tempo_flex=0.07,
            # A pad under the band: a pop cue is never the four-piece alone (music review 7).
            core=("drums", "bass", "piano", "synth", "pads"),
            colours=("electric-guitar", "acoustic-guitar", "strings", "plucks"),
            casting={
                "drums": ("drums",),
                "bass": ("bass",),
                "comping": ("piano", "acoustic-guitar"),
                "pulse": ("electric-guitar", "plucks"),
                "pad": ("strings", "pads"),
                "melody": ("synth", "woodwinds", "plucks", "piano"),
            },
            progressions={
                "major": {
                    "A": _MAJOR_POP,
                    "B": (("IV", "V", "iii", "vi"), ("ii", "IV", "I", "V"), ("IV", "I", "V", "vi")),
                },
                "minor": {
                    "A": _MINOR_POP,
                    "B": (
                        ("bVI", "bVII", "i", "i"),
                        ("iv", "bVI", "bVII", "bVII"),
                        ("bIII", "bVII", "iv", "bVI"),
                    ),
                },
            },
            harmonic_rhythm=(1, 1, 1),
            grooves={"4/4": _POP},
            fills={"4/4": _FILL},
            bass={"4/4": _BASS_POP},
            # Keys in the 3-3-2 push that pop leans on, not every eighth.
            comping={
                "4/4": {
                    1: ("X-------x-------",),
                    2: ("X--x--x-X--x--x-", "X---x--xX---x--x"),
                    3: ("X--x--x-X--x--x-", "X-xX-x-xX-xX-x-x"),
                }
            },
            pulse={"4/4": _PULSE_8},
            comping_technique="block",
            melody_density=0.55,
            melody_grid=2,
            melody_range=(64, 84),
            registers={"bass": (31, 50), "comping": (55, 76), "pulse": (52, 71), "pad": (52, 74)},
            open_voicing=False,
            cut_hits=((CRASH, KICK), (SPLASH, SNARE)),
            hook_bars=2,
            production=production.POP,
            tonics={"major": ("G", "Bb", "C", "F"), "minor": ("A", "C#", "F#", "B")},
            # A voice-like topline (Lead 6, voice): the square lead, 80, a chiptune's sound and
            # electronic's arpeggio, had left pop heard as electronic first (musicnn's MSD
            # "pop" 0.12 under "electronic" 0.19; 0.17 and 0.17 so; music review 9).
            programs={"plucks": 12, "synth": 85, "electric-guitar": 28},
        ),
        Style(
            "rock",
            meters=("4/4",),
            # A rock drummer drives one tempo: at a conductor's 8% its map had spanned up to
            # 15% of a piece's tempo and moved 13% within 3 s to reach the cuts; at 4% it
            # spans 7.5% and still puts 133 of bench_music's 136 cuts on its beats (136).
            tempo_flex=0.04,
            core=("drums", "bass", "electric-guitar"),
            colours=("piano", "strings", "synth", "brass"),
            casting={
                "drums": ("drums",),
                "bass": ("bass",),
                "comping": ("electric-guitar",),
                "pulse": ("piano",),
                "pad": ("strings", "synth", "brass"),
                "melody": ("electric-guitar",),
            },
            progressions={
                "major": {
                    "A": (
                        ("I", "bVII", "IV", "I"),
                        ("I", "IV", "V", "IV"),
                        ("I", "V", "IV", "IV"),
                        ("I", "bIII", "IV", "I"),
                        ("I", "V", "bVII", "IV"),
                    ),
                    "B": (
                        ("bVI", "bVII", "I", "I"),
                        ("IV", "IV", "I", "V"),
                        ("vi", "IV", "V", "V"),
                        ("IV", "V", "IV", "bVII"),
                    ),
                },
                "minor": {
                    "A": (
                        ("i", "bVII", "bVI", "bVII"),
                        ("i", "bIII", "bVII", "iv"),
                        ("i", "iv", "bVII", "i"),
                    ),
                    "B": (
                        ("bVI", "bVII", "i", "i"),
                        ("iv", "bVI", "bVII", "i"),
                        ("bIII", "bVII", "iv", "i"),
                    ),
                },
            },
            harmonic_rhythm=(1, 1, 1),
            grooves={"4/4": _ROCK},
            fills={"4/4": _TOM_FILL + _FILL},
            bass={"4/4": _BASS_ROCK},
            comping={"4/4": _COMP_POWER},
            pulse={"4/4": _PULSE_8},
            comping_technique="power",
            melody_density=0.4,
            melody_grid=2,
            melody_range=(62, 84),
            # The bass under the power chords' lowest string: sharing their register, it had
            # doubled their root in unison on 43% of its notes (a music review).
            registers={"bass": (28, 39), "power": (40, 55), "pulse": (52, 72)},
            open_voicing=False,
            cut_hits=((CHINA, ACOUSTIC_KICK), (ELECTRIC_SNARE, ACOUSTIC_KICK)),
            ghost_notes=0.08,
            production=production.ROCK,
            tonics={"major": ("E", "A", "D", "G"), "minor": ("E", "B", "A", "D")},
            programs={"electric-guitar": 29, "bass": 34, "piano": 1, "synth": 16},
        ),
        Style(
            "hip-hop",
            meters=("4/4",),
            # A programmed groove keeps its tempo (SEQUENCED_FLEX).
            tempo_flex=SEQUENCED_FLEX,
            # A sampled soul record's sound: a piano, a string section's figure, a pizzicato
            # hook, and no synth unless asked for (a Rhodes and a vibraphone, lo-fi's then,
            # under a square lead's arpeggio had sounded a chill synth bed: musicnn's
            # "Hip-Hop" 19th of 50 on its pieces, 0.014; music review 8).
            core=("drums", "bass", "piano", "plucks", "strings"),
            colours=("brass", "pads"),
            casting={
                "drums": ("drums",),
                "bass": ("bass",),
                "comping": ("piano",),
                "pulse": ("strings", "synth"),
                "pad": ("pads", "brass", "synth"),
                "melody": ("plucks", "synth", "brass"),
            },
            progressions={
                "major": {
                    "A": (
                        ("vi7", "IVmaj7", "Imaj7", "V7"),
                        ("IVmaj7", "IVmaj7", "Imaj7", "Imaj7"),
                        ("ii7", "V7", "Imaj7", "vi7"),
                    ),
                    "B": (("IVmaj7", "iii7", "vi7", "V7"), ("vi7", "ii7", "IVmaj7", "V7")),
                },
                "minor": {
                    "A": (
                        ("i7", "bVImaj7", "bIIImaj7", "bVII"),
                        ("i7", "iv7", "bVImaj7", "v7"),
                        ("i7", "i7", "bVImaj7", "bVImaj7"),
                    ),
                    "B": (("iv7", "v7", "i7", "i7"), ("bVImaj7", "bVII", "i7", "i7")),
                },
            },
            harmonic_rhythm=(2, 1, 1),
            grooves={"4/4": _BOOM_BAP},
            fills={"4/4": ({SNARE: "............x.o.", KICK: "..............x."},)},
            bass={"4/4": _BASS_808},
            comping={"4/4": _COMP_LOOP},
            pulse={"4/4": _PULSE_Q},
            comping_technique="block",
            melody_density=0.3,
            melody_grid=4,
            melody_range=(67, 88),
            swing=0.16,
            registers={"bass": (24, 40), "comping": (48, 67), "pad": (45, 65), "pulse": (60, 79)},
            open_voicing=False,
            # A crash or the 808's cowbell with the kick (a snare there had broken the backbeat
            # on the bar's one; pop and corporate take the splash).
            cut_hits=((CRASH, KICK), (COWBELL, KICK)),
            ghost_notes=0.1,
            production=production.HIP_HOP,
            tonics={"major": ("Eb", "Ab", "Db", "Bb"), "minor": ("F", "G", "C#", "Bb")},
            programs={"piano": 0, "strings": 48, "plucks": 45, "synth": 50, "bass": 38},
            lift="none",
            # The beat and its 808 bass programmed (swung on the grid); the keys played.
            timing_sd_ms={"drums": 0.0, "bass": 0.0},
        ),
        Style(
            "lo-fi",
            meters=("4/4",),
            # A programmed groove keeps its tempo (SEQUENCED_FLEX).
            tempo_flex=SEQUENCED_FLEX,
            core=("drums", "bass", "piano", "plucks"),
            colours=("acoustic-guitar", "electric-guitar", "pads", "woodwinds"),
            casting={
                "drums": ("drums",),
                "bass": ("bass",),
                "comping": ("piano", "electric-guitar"),
                "pulse": ("acoustic-guitar",),
                "pad": ("pads",),
                "melody": ("plucks", "woodwinds", "electric-guitar"),
            },
            progressions={
                "major": {
                    "A": (
                        ("Imaj7", "vi7", "ii7", "V7"),
                        ("IVmaj7", "iii7", "vi7", "Imaj7"),
                        ("ii7", "V7", "Imaj7", "IVmaj7"),
                    ),
                    "B": (("IVmaj7", "V7", "iii7", "vi7"), ("ii7", "iii7", "IVmaj7", "V7")),
                },
                "minor": {
                    "A": (("i7", "iv7", "bVII7", "bIIImaj7"), ("i7", "bVImaj7", "iv7", "v7")),
                    "B": (
                        ("bVImaj7", "bVII7", "i7", "i7"),
                        ("iv7", "bVII7", "bIIImaj7", "bVImaj7"),
                    ),
                },
            },
            harmonic_rhythm=(1, 1, 1),
            grooves={"4/4": _LAZY},
            fills={"4/4": _LIGHT_FILL},
            bass={
                "4/4": {
                    1: ("R-------5-------",),
                    2: ("R-----R-..5-....", "R---..R-5---..A."),
                    3: ("R-----R-..5-..A.",),
                }
            },
            # Keys that lean: chords on the beat, some pushed onto the "and" of four.
            comping={
                "4/4": {
                    1: ("X---------------",),
                    2: ("X-------X-----x-", "X-----x-X-------"),
                    3: ("X-----x-X-----x-", "X--x----X--x----"),
                }
            },
            pulse={"4/4": _PULSE_Q},
            comping_technique="block",
            # A short motif with room around it, not a line over every bar (music review 10).
            melody_density=0.15,
            melody_grid=2,
            melody_range=(65, 84),
            tune_accent=-10,
            # An MPC's 60% swing: lazy, not triplets.
            swing=0.1,
            # The Rhodes' chords under the kalimba's tune (both had spanned D4-G5: the chords
            # sounded over half its notes).
            registers={"bass": (28, 45), "comping": (52, 74), "pad": (50, 70), "pulse": (57, 77)},
            open_voicing=False,
            cut_hits=((RIDE_BELL, KICK), (SIDE_STICK, KICK)),
            # The ride's bell is a short ping, not a crash's wash: it marks every strong cut.
            spaced_cut_hit=(RIDE_BELL, KICK),
            production=production.LO_FI,
            tonics={"major": ("Ab", "Eb", "F", "Db"), "minor": ("C", "F", "Bb", "Eb")},
            # A chillhop palette: the Rhodes, a kalimba's tune and a round fretless bass. The
            # vibraphone over an upright bass had been a jazz combo (musicnn: "jazz" 0.33 first,
            # "chillout" 0.19; music review 10).
            programs={"piano": 4, "plucks": 108, "bass": 35, "electric-guitar": 26},
            lift="none",
        ),
        Style(
            "acoustic",
            meters=("4/4",),
            tempo_flex=0.08,
            # A singer-songwriter's guitar and piano: the pianist's broken chords are a second
            # piano ("plucks", program 0), its own part and level under the piano's tune.
            core=("acoustic-guitar", "piano", "plucks", "bass", "drums"),
            colours=("strings", "woodwinds"),
            casting={
                "drums": ("drums",),
                "bass": ("bass",),
                "comping": ("acoustic-guitar",),
                "pulse": ("plucks",),
                "pad": ("strings",),
                "melody": ("piano", "woodwinds", "strings"),
            },
            progressions={
                "major": {
                    "A": (("I", "IV", "vi", "V"), ("I", "iii", "vi", "IV"), ("vi", "V", "IV", "I")),
                    "B": (("IV", "V", "vi", "vi"), ("ii", "IV", "V", "V")),
                },
                "minor": {
                    "A": (("i", "bVII", "bVI", "bVII"), ("i", "iv", "bVII", "bIII")),
                    "B": (("bIII", "bVII", "iv", "i"), ("bVI", "bVII", "i", "i")),
                },
            },
            harmonic_rhythm=(1, 1, 1),
            grooves={"4/4": _SHAKER_KIT},
            fills={"4/4": _LIGHT_FILL},
            # Roots held and pushed into the next bar, not country's root-fifth boom-chick.
            bass={
                "4/4": {
                    1: ("R---------------", "R-----------R---"),
                    2: ("R-------R-----R-", "R-----R-------R-"),
                    3: ("R-----R-R-----R-", "R-----R---R---A-"),
                }
            },
            comping={"4/4": _COMP_STRUM},
            pulse={
                "4/4": {
                    1: ("0...1...2...1...",),
                    2: ("0...2.1.0...2.1.", "0.1.2...0.1.2..."),
                    3: ("0.2.1.2.0.2.1.2.", "0.1.2.1.0.1.2.1."),
                }
            },
            comping_technique="strum",
            melody_density=0.45,
            melody_grid=2,
            melody_range=(66, 86),
            # The nylon guitar strums open chords from G#2, the upright under them, the piano's
            # broken chords and its tune over them (from B2 the chords' tops had reached D5,
            # over 45% of the tune's notes; from B2 to G4 over 26% in a busy piece).
            registers={"bass": (28, 43), "comping": (44, 64), "pulse": (55, 74), "pad": (50, 72)},
            open_voicing=False,
            cut_hits=((CRASH, ACOUSTIC_KICK), (TAMBOURINE, ACOUSTIC_KICK)),
            ghost_notes=0.06,
            production=production.ACOUSTIC,
            # The piano's tune touched over the guitar, not hammered (a median velocity of 110).
            tune_accent=0,
            # A capo'd guitar beside the piano: keys apart from folk's open strings and pop's.
            tonics={"major": ("B", "Gb", "Ab", "E"), "minor": ("F#", "G#", "Eb", "C#")},
            # Nylon strings, warm and soft (the steel guitar over a cajon was heard as country,
            # and steel is folk's fingerpicking).
            programs={"bass": 32, "acoustic-guitar": 24, "plucks": 0},
        ),
        Style(
            "folk",
            meters=("4/4", "6/8"),
            tempo_flex=0.08,
            core=("acoustic-guitar", "strings", "plucks", "bass", "drums"),
            colours=("woodwinds", "piano"),
            casting={
                "drums": ("drums",),
                "bass": ("bass",),
                "comping": ("acoustic-guitar",),
                "pulse": ("plucks",),
                "pad": ("piano",),
                "melody": ("strings", "woodwinds"),
            },
            progressions={
                "major": {
                    "A": (
                        ("I", "IV", "I", "V"),
                        ("I", "V", "IV", "I"),
                        ("I", "I", "IV", "V"),
                        ("I", "vi", "IV", "V"),
                        ("I", "ii", "IV", "I"),
                    ),
                    "B": (
                        ("IV", "I", "V", "I"),
                        ("vi", "IV", "I", "V"),
                        ("IV", "V", "vi", "IV"),
                        ("ii", "V", "I", "IV"),
                    ),
                },
                "minor": {
                    "A": (
                        ("i", "bVII", "i", "v"),
                        ("i", "bIII", "bVII", "i"),
                        ("i", "iv", "bVII", "i"),
                    ),
                    "B": (
                        ("bIII", "bVII", "i", "i"),
                        ("bVI", "bVII", "i", "v"),
                        ("bVII", "bVI", "bVII", "i"),
                    ),
                },
            },
            harmonic_rhythm=(1, 1, 1),
            grooves={"4/4": _STOMP, "6/8": _JIG},
            fills={"4/4": _STOMP_FILL, "6/8": _FILL_68},
            # An upright's roots, in 6/8 droning as a Celtic tune's bass does: root-fifth was
            # country's, and its octaves had taken the bass over its register (music
            # reviews 11 and 13).
            bass={
                "4/4": {
                    1: ("R-------R-------",),
                    2: ("R-------R-------", "R-----R-R-------"),
                    3: ("R---R---R---R---", "R-------R---R-A-"),
                },
                "6/8": {1: ("R-----",), 2: ("R-----", "R--R--"), 3: ("R--R--", "R--5--")},
            },
            # Fingerpicking: the thumb on the low tones, the fingers answering.
            comping={
                "4/4": {
                    1: ("0---2---1---2---",),
                    2: ("0.2.1.3.0.2.1.3.", "0.3.1.2.0.3.1.2."),
                    3: ("0213021302130213", "0.2310230.231023"),
                },
                "6/8": {1: ("0--2--",), 2: ("021312",), 3: ("021312", "031213")},
            },
            pulse={"4/4": _PULSE_8, "6/8": {1: ("0.1.2.",), 2: ("012102",), 3: ("012102",)}},
            comping_technique="arp",
            # A fiddle tune moves in eighths, around D4-B5: held high over the picking it
            # had been a classical violin solo (MTT "classical" first; music review 11).
            melody_density=0.7,
            melody_grid=2,
            melody_range=(60, 83),
            # (The guitar from G2, under the banjo, was heard as more folk, but it picked
            # orchestral's harp's and clarinet's notes: 21-23% of them on one video; the banjo
            # moved over it, over the tune too.)
            registers={"bass": (28, 45), "comping": (50, 74), "pulse": (55, 76), "pad": (52, 74)},
            ghost_notes=0.05,
            production=production.FOLK,
            # The fiddle's and the open strings' keys.
            tonics={"major": ("A", "G", "E", "D"), "minor": ("B", "E", "D", "A")},
            programs={"woodwinds": 78, "strings": 40, "plucks": 105, "bass": 32},
            lift="none",
            open_voicing=False,
            # A fiddle tune runs on, its answers played through most statements.
            tune_rests=3,
            cut_hits=((RIDE, KICK), (TAMBOURINE, KICK)),
            # A ride's stroke is a short ping, not a crash's wash: it marks every strong cut.
            spaced_cut_hit=(RIDE, KICK),
        ),
        Style(
            "corporate",
            meters=("4/4",),
            # A programmed groove keeps its tempo (SEQUENCED_FLEX).
            tempo_flex=SEQUENCED_FLEX,
            core=("piano", "plucks", "bass", "drums", "synth"),
            colours=("strings", "pads", "acoustic-guitar", "electric-guitar"),
            casting={
                "drums": ("drums",),
                "bass": ("bass",),
                "comping": ("piano",),
                "pulse": ("plucks",),
                "pad": ("strings", "pads"),
                "melody": ("synth", "electric-guitar", "piano"),
            },
            progressions={
                "major": {
                    "A": (
                        ("I", "iii", "IV", "V"),
                        ("IV", "V", "I", "I"),
                        ("I", "Vsus4", "IV", "IV"),
                    ),
                    "B": (("IV", "V", "I", "vi"), ("ii", "IV", "V", "V"), ("vi", "IV", "V", "I")),
                },
                "minor": {
                    "A": (
                        ("i", "bIII", "bVI", "bVII"),
                        ("i", "bIII", "bVII", "bVI"),
                        ("i", "bVI", "bIII", "bVII"),
                    ),
                    "B": (
                        ("bVI", "bVII", "bIII", "bIII"),
                        ("iv", "bVI", "bVII", "bVII"),
                        ("bIII", "bVII", "iv", "iv"),
                    ),
                },
            },
            harmonic_rhythm=(2, 1, 1),
            grooves={"4/4": _TIDY},
            fills={"4/4": _CLAP_FILL},
            bass={
                "4/4": {
                    1: ("R...R...R...R...",),
                    2: ("R.R.R.R.R.R.R.R.",),
                    # Eighths that push into the next bar: the pulse's are the sixteenths.
                    3: ("R.R.R.RRR.R.R.5R", "R.R.R.R.R.R.5.A."),
                }
            },
            comping={
                "4/4": {
                    1: ("0...2...1...2...",),
                    2: ("0.2.1.2.0.2.1.2.", "0.1.2.0.1.2.0.1."),
                    # Eighths: the pulse alone runs in sixteenths at the top.
                    3: ("0.2.1.2.0.2.1.2.", "0.1.2.1.0.2.1.2."),
                }
            },
            pulse={"4/4": _PULSE_8},
            comping_technique="arp",
            melody_density=0.35,
            melody_grid=2,
            melody_range=(67, 88),
            # The piano's chords and the marimba under the lead (to C6 and E6, over 30% of
            # its notes; the piano's to G5, over 26% of them with the whole band, busy).
            registers={"bass": (33, 52), "comping": (55, 76), "pulse": (62, 84), "pad": (55, 76)},
            open_voicing=True,
            # Cymbals with the kick: a clap had struck the one (a music review).
            cut_hits=((CRASH_2, KICK), (SPLASH, KICK)),
            hook_bars=2,
            crash=CRASH_2,
            ghost_notes=0.04,
            production=production.CORPORATE,
            tonics={"major": ("F", "Db", "Bb", "Ab"), "minor": ("Bb", "Eb", "F", "G#")},
            # A clean guitar's pulse and a glockenspiel's tune over the piano (a marimba and an
            # FM electric piano had read as electronica; music review 7).
            programs={"plucks": 27, "synth": 9, "electric-guitar": 27},
        ),
    ]
}
