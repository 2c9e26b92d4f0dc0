"""How a genre is produced: channel strips, the space the parts are sent to, the bus.

Data a mix engineer could edit; mixing.py plays it with pedalboard. Each genre's style row
(styles.py) names its Production.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Strip:
    """An instrument's channel strip, in signal order: high-pass, shelves and one bell of EQ,
    then compression."""

    highpass_hz: float = 40.0
    # (corner Hz, gain dB)
    low_shelf: tuple[float, float] | None = None
    # (centre Hz, gain dB, Q)
    bell: tuple[float, float, float] | None = None
    high_shelf: tuple[float, float] | None = None
    # (threshold dB, ratio), and how fast it clamps down
    compression: tuple[float, float] | None = None
    attack_ms: float = 10.0


# What a mix engineer starts every genre from: low end cleared below each instrument's
# range, mud and harshness taken down, the rhythm section held steady.
STRIPS: dict[str, Strip] = {
    "drums": Strip(30.0, compression=(-16.0, 3.0)),
    "bass": Strip(35.0, low_shelf=(90.0, 2.0), bell=(250.0, -2.0, 1.0), compression=(-20.0, 4.0)),
    "piano": Strip(70.0, bell=(300.0, -1.5, 1.0), high_shelf=(9000.0, 1.5)),
    "strings": Strip(90.0, bell=(2800.0, -1.5, 1.2), high_shelf=(10000.0, 1.0)),
    "pads": Strip(120.0, bell=(400.0, -2.0, 0.8), high_shelf=(7000.0, -2.0)),
    "acoustic-guitar": Strip(
        90.0, bell=(220.0, -2.5, 1.0), high_shelf=(10000.0, 2.0), compression=(-18.0, 2.0)
    ),
    "electric-guitar": Strip(90.0, bell=(2500.0, 2.0, 1.0), compression=(-20.0, 3.0)),
    "lead-guitar": Strip(110.0, bell=(1800.0, 2.5, 1.0), compression=(-20.0, 3.0)),
    "brass": Strip(90.0, bell=(1200.0, 1.0, 1.0), compression=(-18.0, 2.0)),
    "woodwinds": Strip(150.0, bell=(3000.0, 1.0, 1.0)),
    "synth": Strip(100.0, bell=(500.0, -1.5, 1.0)),
    "plucks": Strip(120.0, high_shelf=(8000.0, 1.5)),
}


# A room's ring (and a plate's): what every genre's final chord had been left.
ROOM_RING_S = 0.9


@dataclass(frozen=True)
class Space:
    """The reverb the parts are sent to (pedalboard's Reverb: Freeverb)."""

    name: str
    room_size: float
    damping: float
    width: float = 1.0
    # Seconds the final chord's release is left to ring before the piece ends (its last
    # seconds fade along a half cosine): about half the space's T60. A hall's 2.8 s ring had
    # been faded in 0.5-0.7 s, at 32-48 dB/s where the hall decays at 21 (a music review).
    ring_s: float = ROOM_RING_S


HALL = Space("hall", room_size=0.88, damping=0.35, ring_s=1.6)
ROOM = Space("room", room_size=0.35, damping=0.55, width=0.8)
PLATE = Space("plate", room_size=0.62, damping=0.15)
SMALL_ROOM = Space("small room", room_size=0.22, damping=0.7, width=0.6)


# Where each part sits in the mix: its loudness as it plays, in LU from the melody's
# (balance.py measures and sets it). The tune on top, the rhythm section just under it, the
# harmony behind them and the pad a bed; a genre may move a part (Production.levels).
LEVELS = {"melody": 0.0, "drums": -1.0, "bass": -3.0, "comping": -4.0, "pulse": -6.0, "pad": -7.0}
# The harmony parts, and the most they may sum to together (LU from the melody): each at its
# own level, the comping, a pulse and a pad of a calm cinematic or ambient piece had summed
# to the tune's own loudness, and its piano was heard under them half the time. A genre may
# move it (Production.harmony_level).
HARMONY_PARTS = ("comping", "pulse", "pad")
HARMONY_LEVEL = -3.0


# The GS drum kits by program number, as the demo reel names them.
GS_KITS = {0: "Standard", 8: "Room", 16: "Power", 24: "Electronic", 25: "TR-808", 32: "Jazz",
           40: "Brush", 48: "Orchestra"}  # fmt: skip


@dataclass(frozen=True)
class Production:
    space: Space
    # Part levels where the genre differs from LEVELS (LU from the melody).
    levels: dict[str, float] = field(default_factory=dict)
    harmony_level: float = HARMONY_LEVEL
    # Send level to the space per instrument (others take `send`).
    sends: dict[str, float] = field(default_factory=dict)
    send: float = 0.15
    # A tempo-synced echo: (beats, feedback) and send levels per instrument.
    delay: tuple[float, float] | None = None
    delay_sends: dict[str, float] = field(default_factory=dict)
    # Sidechain pumping: how deep the non-drum parts dip under each kick (0 = none), and how
    # many beats they take to come back.
    pump: float = 0.0
    pump_beats: float = 0.5
    # The bus: glue compression (threshold dB, ratio), tape saturation (drive dB), a low-pass
    # (Hz) and vinyl crackle (level, linear).
    bus_compression: tuple[float, float] = (-14.0, 2.0)
    saturation_db: float = 0.0
    lowpass_hz: float | None = None
    crackle: float = 0.0
    # The drum kit: a preset of the bank's percussion bank 128, by GS number (GS_KITS).
    kit: int = 0
    # Channel strips where the genre's instrument needs another than STRIPS's.
    strips: dict[str, Strip] = field(default_factory=dict)

    @property
    def bus_distorts(self) -> bool:
        """Whether the bus changes the parts' balance: its saturation, or the drive of its
        low-pass, takes more from the louder."""
        return self.saturation_db > 0 or self.lowpass_hz is not None

    @property
    def chain(self) -> list[str]:
        """What the genre's own strips, the sends and the bus do, in words (the demo reel's
        notes)."""
        notes = [f"{name} compressed {strip.compression[1]:g}:1 in {strip.attack_ms:g} ms"
                 if strip.compression else f"{name}'s own strip"
                 for name, strip in self.strips.items()]  # fmt: skip
        notes.append(f"{self.space.name} reverb")
        if self.delay:
            notes.append(f"{self.delay[0]:g}-beat echo")
        if self.pump:
            notes.append("sidechain pumping")
        notes.append(f"bus compression {self.bus_compression[1]:g}:1")
        if self.saturation_db:
            notes.append("tape saturation")
        if self.lowpass_hz:
            notes.append(f"low-pass {self.lowpass_hz / 1000:g} kHz")
        if self.crackle:
            notes.append("vinyl crackle")
        return notes

    def level_of(self, part: str) -> float:
        return self.levels.get(part, LEVELS[part])

    def strip_of(self, instrument: str) -> Strip:
        return self.strips.get(instrument, STRIPS[instrument])

    def send_of(self, instrument: str) -> float:
        return self.sends.get(instrument, self.send)

    def delay_send_of(self, instrument: str) -> float:
        return self.delay_sends.get(instrument, 0.0)


# ---- per genre --------------------------------------------------------------------------------

AMBIENT = Production(
    HALL, sends={"pads": 0.45, "piano": 0.35, "plucks": 0.4, "bass": 0.05}, send=0.3,
    delay=(0.75, 0.45), delay_sends={"piano": 0.2, "plucks": 0.25, "synth": 0.2},
    bus_compression=(-18.0, 1.5),
    levels={"pad": -5.0},
)  # fmt: skip
CINEMATIC = Production(
    HALL, sends={"strings": 0.3, "brass": 0.25, "piano": 0.25, "drums": 0.18, "bass": 0.05},
    send=0.22, bus_compression=(-16.0, 1.8), kit=48,
    levels={"drums": -3.0, "pulse": -4.0},
)  # fmt: skip
ORCHESTRAL = Production(
    HALL, sends={"strings": 0.32, "brass": 0.28, "woodwinds": 0.3, "drums": 0.2, "bass": 0.08},
    send=0.25, bus_compression=(-18.0, 1.5), kit=48,
    levels={"drums": -3.0},
)  # fmt: skip
ELECTRONIC = Production(
    PLATE, sends={"pads": 0.25, "synth": 0.2, "plucks": 0.2, "drums": 0.06, "bass": 0.0},
    send=0.12, delay=(0.75, 0.35), delay_sends={"synth": 0.18, "plucks": 0.22},
    pump=0.55, pump_beats=0.5, bus_compression=(-12.0, 3.0), kit=24,
    levels={"drums": 0.0, "bass": -2.0},
)  # fmt: skip
POP = Production(
    PLATE, sends={"piano": 0.18, "synth": 0.16, "drums": 0.08, "bass": 0.0}, send=0.15,
    delay=(0.5, 0.25), delay_sends={"synth": 0.12},
    # The power kit's bright snare: the standard kit's (a 614 Hz centroid) gave the backbeat
    # no crack, 4.6-5.4 dB at 1.5-6 kHz on a stroke (music review 7).
    bus_compression=(-12.0, 2.5), kit=16,
)  # fmt: skip
ROCK = Production(
    ROOM, sends={"drums": 0.14, "electric-guitar": 0.12, "lead-guitar": 0.18, "bass": 0.0},
    send=0.1, bus_compression=(-10.0, 3.0), saturation_db=4.0, kit=16,
    # The rhythm guitar's power chords are a wall, the lead just over them.
    levels={"drums": 0.0, "comping": -2.0}, harmony_level=-2.0,
)  # fmt: skip
HIP_HOP = Production(
    ROOM, sends={"drums": 0.05, "bass": 0.0, "piano": 0.15, "synth": 0.12}, send=0.1,
    pump=0.2, pump_beats=0.4, bus_compression=(-12.0, 3.0), saturation_db=2.0, kit=25,
    # The beat leads the mix, the sampled keys well behind the tune (drums at +1 LU had been
    # a band's balance; music review 12).
    levels={"drums": 3.0, "bass": -1.0, "comping": -6.0},
)  # fmt: skip
LO_FI = Production(
    SMALL_ROOM, sends={"piano": 0.2, "plucks": 0.18, "drums": 0.1, "bass": 0.0}, send=0.15,
    # A sampled break up front on the standard kit, the keys breathing under its kick: the
    # jazz kit at the tune's level had been a combo's drummer (music review 10).
    pump=0.3, pump_beats=0.5,
    bus_compression=(-14.0, 2.5), saturation_db=6.0, lowpass_hz=6500.0, crackle=0.05,
    kit=0,
    levels={"drums": 2.0, "bass": -2.0},
)  # fmt: skip
ACOUSTIC = Production(
    ROOM, sends={"acoustic-guitar": 0.15, "piano": 0.16, "strings": 0.2, "bass": 0.03},
    send=0.14, bus_compression=(-16.0, 1.8), kit=40,
    # The strummed guitar is the genre's sound: just under the tune, not 4-5 LU under the
    # piano's (music review 7: the piano carried the piece), the pianist's broken chords
    # under it (with the harmony held to the tune's level, they had pushed it to -2.6 LU).
    levels={"drums": -3.0, "comping": -1.0}, harmony_level=0.5,
)  # fmt: skip
FOLK = Production(
    # Close-miked players in a room, a session's sound: sent to it as acoustic's are, the
    # room's wash was heard as an instrumental or classical record (music review 13: MSD
    # "instrumental" over "folk" on its pieces).
    ROOM, sends={"acoustic-guitar": 0.04, "woodwinds": 0.08, "strings": 0.08, "bass": 0.0},
    send=0.05, bus_compression=(-16.0, 1.8), kit=40,
    levels={"drums": -3.0},
)  # fmt: skip
CORPORATE = Production(
    PLATE, sends={"piano": 0.16, "plucks": 0.15, "synth": 0.12, "drums": 0.06, "bass": 0.0},
    send=0.12, delay=(0.5, 0.2), delay_sends={"plucks": 0.12},
    # The glockenspiel's tune clamped at its strike (steel struck by a mallet, its peaks 20 dB
    # over its loudness), on pop's punchy power kit (the standard kit's kick peaked 4-5 dB
    # higher for its loudness): the master's limiter had cut into 12-13% of the mix, other
    # genres' 0-4%, its cut hits 1.8-3.4 dB down. Its top taken down above 4 kHz: its loudest
    # partial, 5-7 times its note and 11-19 dB over it, had made a shrill lead, 60% of the
    # mix's energy above 4 kHz (music review 6).
    strips={"synth": replace(STRIPS["synth"], high_shelf=(4000.0, -6.0), compression=(-24.0, 4.0),
                             attack_ms=0.5)},
    bus_compression=(-12.0, 2.5), kit=16,
)  # fmt: skip
