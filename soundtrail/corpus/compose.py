"""Track specs, their captions, and the scores they compose into.

A :class:`TrackSpec` is the whole musical decision for one track (genre, tempo, key, mode, chord
progression, one voice per role); the caption and tags are written from it and nothing else, and
:func:`compose` turns it into note events on a sixteenth-note grid, so the text cannot drift from
the audio::

    bar      | 1 . . . 2 . . . 3 . . . 4 . . . |   16 steps of 60 / bpm / 4 seconds
    chords   | progression[step // (4 * beats_per_chord)], voiced in the harmony voice's register
    harmony  | the style's comping rhythm (sustained, stabs, arpeggio, strum, comp)
    bass     | the chord root on the style's bass rhythm
    lead     | two one-bar rhythms in an A A B A form; a scale walk that lands on chord tones on the beat
    drums    | the style's kick / snare / hat pattern, ghost notes and fills drawn per bar

Tracks are told apart by Chromaprint through their chroma over time, so :class:`Planner` spreads
keys so that tracks share as few chords as it can, and gives each track its own progression, tempo and
melody.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from soundtrail.corpus.timbres import VOICES, DrumKit

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
PROGRESSIONS = {
    "major": (("I", "V", "vi", "IV"), ("I", "IV", "V", "IV"), ("vi", "IV", "I", "V"), ("I", "vi", "ii", "V"),
              ("I", "iii", "IV", "V"), ("ii", "V", "I", "vi"), ("I", "IV", "vi", "V"), ("IV", "I", "V", "vi")),
    "minor": (("i", "VI", "III", "VII"), ("i", "iv", "v", "i"), ("i", "VII", "VI", "VII"), ("i", "iv", "VII", "III"),
              ("i", "VI", "iv", "v"), ("iv", "i", "v", "VI"), ("i", "III", "VII", "iv"), ("VI", "VII", "i", "i")),
}
_DEGREES = {"i": 0, "ii": 1, "iii": 2, "iv": 3, "v": 4, "vi": 5, "vii": 6}
STEPS_PER_BAR = 16

DRUM_PATTERNS: dict[str, dict[str, str]] = {
    "four-on-the-floor": {"kick": "x...x...x...x...", "snare": "....x.......x...", "hat": "..x...x...x...x."},
    "backbeat": {"kick": "x.......x.x.....", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
    "boom bap": {"kick": "x......x..x.....", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
    "two-step breakbeat": {"kick": "x.........x.....", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
    "half-time": {"kick": "x.........x.....", "snare": "........x.......", "hat": "x...x...x...x..."},
}


@dataclass(frozen=True)
class Style:
    """A genre as a recipe: tempo range, voices allowed per role, and the rhythms each role plays."""

    bpm: tuple[int, int]
    leads: tuple[str, ...]
    harmonies: tuple[str, ...]
    basses: tuple[str, ...]
    drums: str
    comping: str  # sustained | stabs | arpeggio | strum | comp
    bass_line: str  # offbeat | eighths | root-fifth | syncopated | whole
    swing: float = 0.0  # offbeat eighths delayed by this fraction of an eighth (1/3: triplet feel)
    beats_per_chord: int = 4  # harmonic rhythm: slow tempos change chords every two beats


GENRES: dict[str, Style] = {
    "house": Style((118, 128), ("bell", "square lead", "organ"), ("organ", "electric piano"),
                   ("fm bass", "sine bass"), "four-on-the-floor", "stabs", "offbeat"),
    "lo-fi hip hop": Style((72, 90), ("electric piano", "flute", "harp"), ("electric piano", "warm pad"),
                           ("sine bass", "plucked bass"), "boom bap", "comp", "syncopated", swing=0.3,
                           beats_per_chord=2),
    "synthwave": Style((94, 112), ("square lead", "bell"), ("warm pad",), ("fm bass",), "backbeat",
                       "sustained", "eighths"),
    "folk": Style((88, 116), ("flute", "harp"), ("nylon guitar",), ("plucked bass", "sine bass"), "half-time",
                  "arpeggio", "root-fifth"),
    "drum and bass": Style((164, 176), ("bell", "electric piano", "flute"), ("warm pad",), ("sine bass", "fm bass"),
                           "two-step breakbeat", "sustained", "syncopated"),
    "pop rock": Style((100, 132), ("square lead", "organ", "electric piano"), ("nylon guitar", "organ"),
                      ("plucked bass",), "backbeat", "strum", "eighths"),
    "ambient": Style((66, 80), ("bell", "flute", "harp"), ("warm pad",), ("sine bass",), "half-time", "sustained",
                     "whole", beats_per_chord=2),
}

_ADJECTIVES = ("Amber", "Quiet", "Copper", "Velvet", "Distant", "Paper", "Neon", "Silver", "Hollow", "Golden",
               "Northern", "Sleepy", "Glass", "Wandering", "Crimson", "Misty", "Electric", "Little", "Salt", "Cobalt")
_NOUNS = ("Harbor", "Lanterns", "Orchard", "Skyline", "Tides", "Meadow", "Circuit", "Foxes", "Rooftops", "Compass",
          "Embers", "Lighthouse", "Signals", "Riverbank", "Kites", "Dunes", "Archive", "Garden", "Satellites", "Fog")


def mood_for(mode: str, bpm: int) -> str:
    """The mood word a caption uses, read off the mode and tempo (the two cues listeners lean on most)."""
    if mode == "major":
        return "upbeat" if bpm >= 115 else "cheerful" if bpm >= 90 else "calm"
    return "driving" if bpm >= 115 else "moody" if bpm >= 90 else "melancholic"


@dataclass(frozen=True)
class TrackSpec:
    """Everything one track is; ``seed`` drives the melody, rhythm variations and noise of the render."""

    title: str
    genre: str
    bpm: int
    key: str
    mode: str
    progression: tuple[str, ...]
    lead: str
    harmony: str
    bass: str
    seed: int

    @property
    def style(self) -> Style:
        return GENRES[self.genre]

    @property
    def mood(self) -> str:
        return mood_for(self.mode, self.bpm)

    @property
    def drums(self) -> str:
        return self.style.drums

    @property
    def caption(self) -> str:
        """One sentence for text conditioning, every word of it taken from the spec."""
        style = self.style
        article = "An" if self.mood[0] in "aeiou" else "A"
        swing = "swung " if style.swing else ""
        return (f"{article} {self.mood} {self.genre} track in {self.key} {self.mode} at {self.bpm} BPM: "
                f"{self.lead} melody, {self.harmony} {_COMPING_WORDS[style.comping]}, {self.bass} line, "
                f"{swing}{self.drums} drums; chords {'-'.join(self.progression)}.")

    @property
    def tags(self) -> list[str]:
        families = sorted({VOICES[name].family for name in (self.lead, self.harmony, self.bass)})
        return [self.genre, self.mood, f"{self.bpm} bpm", f"{self.key} {self.mode}", self.lead, self.harmony,
                self.bass, self.drums, *(_FAMILY_TAGS[family] for family in families)]

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "progression": list(self.progression), "mood": self.mood, "drums": self.drums}


_FAMILY_TAGS = {"additive": "additive synthesis", "fm": "fm synthesis", "plucked": "karplus-strong synthesis"}
_COMPING_WORDS = {"sustained": "chords", "stabs": "chord stabs", "arpeggio": "arpeggios",
                  "strum": "strummed chords", "comp": "comping"}


def _collection(key_slot: int) -> int:
    """The major key whose notes a key slot (tonic * 2 + minor) uses: a minor key uses its relative major's."""
    tonic, minor = divmod(key_slot, 2)
    return (tonic + 3 * minor) % 12


def _key_similarity() -> np.ndarray:
    """``[24, 24]``: how much two keys' chords overlap, by fifths between their note collections (0 to 6).

    Relative keys (C major, A minor) share every chord and score 36; keys a tritone apart share none and score 0.
    """
    collections = np.array([_collection(slot) for slot in range(24)])
    steps = (collections[:, None] - collections[None, :]) * 7 % 12
    return (6 - np.minimum(steps, 12 - steps)) ** 2.0


class Planner:
    """Draws track specs one at a time, each in the key least like the keys drawn before it.

    Genres take turns in a seed-wide order that shifts by one each round, so two tracks share a genre
    at most once a round. For each track, :meth:`candidates` offers specs in keys ranked by how much
    their chords overlap with the keys already committed (twice the weight for tracks of the same
    genre, unused keys first); the caller commits the one it keeps. Chromaprint tells tracks apart by
    their chroma over time, and chords are most of the chroma. Track ``i`` depends only on the seed and
    the tracks before it, so a larger corpus starts with the same tracks as a smaller one.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._genres = list(GENRES)
        order = np.random.default_rng([seed, 0])
        self._genre_order = order.permutation(len(self._genres))
        self._tie_break = order  # a little noise, so seeds differ in which of two equal keys comes first
        self._similarity = _key_similarity()
        self._overlap = np.zeros(24)
        self._overlap_by_genre = np.zeros((len(self._genres), 24))
        self._uses = np.zeros(24)
        self.count = 0

    def _genre_id(self, index: int) -> int:
        return int(self._genre_order[(index + index // len(self._genres)) % len(self._genres)])

    def candidates(self, attempts: int) -> Iterator[TrackSpec]:
        """Up to ``attempts`` specs for the next track, the best-placed key first."""
        genre_id = self._genre_id(self.count)
        unused = self._uses - self._uses.min()
        cost = self._overlap + self._overlap_by_genre[genre_id] + 1e3 * unused
        ranking = np.argsort(cost + self._tie_break.uniform(0.0, 0.5, 24), kind="stable")
        for attempt in range(attempts):
            yield _draw_track(self.seed, self.count, attempt, self._genres[genre_id], int(ranking[attempt % 24]))

    def commit(self, spec: TrackSpec) -> None:
        key_slot = 2 * NOTE_NAMES.index(spec.key) + (spec.mode == "minor")
        self._overlap += self._similarity[key_slot]
        self._overlap_by_genre[self._genres.index(spec.genre)] += self._similarity[key_slot]
        self._uses[key_slot] += 1
        self.count += 1


def _draw_track(seed: int, index: int, attempt: int, genre: str, key_slot: int) -> TrackSpec:
    rng = np.random.default_rng([seed, 1, index, attempt])
    style = GENRES[genre]
    mode = ("major", "minor")[key_slot % 2]
    progressions = PROGRESSIONS[mode]
    return TrackSpec(
        title=f"{_ADJECTIVES[rng.integers(len(_ADJECTIVES))]} {_NOUNS[rng.integers(len(_NOUNS))]}",
        genre=genre,
        bpm=int(rng.integers(style.bpm[0], style.bpm[1] + 1)),
        key=NOTE_NAMES[key_slot // 2],
        mode=mode,
        progression=progressions[int(rng.integers(len(progressions)))],
        lead=str(rng.choice(style.leads)),
        harmony=str(rng.choice(style.harmonies)),
        bass=str(rng.choice(style.basses)),
        seed=int(rng.integers(2**31)),
    )


# ---------------------------------------------------------------------------------------------
# Scores


@dataclass(frozen=True)
class Note:
    start_s: float
    duration_s: float
    midi: int
    velocity: float


@dataclass(frozen=True)
class Hit:
    start_s: float
    drum: str
    velocity: float


@dataclass
class Score:
    """Note events per role (lead, harmony, bass), drum hits, and the drum kit that plays them."""

    notes: dict[str, list[Note]] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    kit: DrumKit = field(default_factory=DrumKit)


class _Grid:
    """Sixteenth-note steps to seconds, with swing applied to the offbeat eighths."""

    def __init__(self, bpm: int, swing: float) -> None:
        self.step_s = 60.0 / bpm / 4.0
        self.swing = swing

    def time(self, step: float) -> float:
        offbeat = int(step) == step and int(step) % 4 == 2
        return (step + (2.0 * self.swing if offbeat else 0.0)) * self.step_s


def _chord(spec: TrackSpec, numeral: str) -> tuple[int, int, int]:
    """Pitch classes (root, third, fifth) of a diatonic triad named by a Roman numeral."""
    scale = SCALES[spec.mode]
    degree = _DEGREES[numeral.lower()]
    tonic = NOTE_NAMES.index(spec.key)
    root, third, fifth = ((tonic + scale[(degree + k) % 7]) % 12 for k in (0, 2, 4))
    return root, third, fifth


def same_arrangement(a: TrackSpec, b: TrackSpec, max_semitones: int = 2, max_tempo_change: float = 0.08) -> bool:
    """Whether ``b`` is ``a``'s backing track at another key and tempo: the same genre (so drum pattern, comping
    and bass line), the same harmony voice, and the same chord cycle, from any starting chord, transposed by at
    most ``max_semitones``, at a tempo within ``max_tempo_change``.

    Two such tracks differ in their melody, fills and drum-kit tuning only. Screening that must see through pitch
    shifts and tempo changes (benchmarks/release.py) can match one with the other's accompaniment, so its false
    positives on new music are counted apart from these.
    """
    if (a.genre, a.harmony) != (b.genre, b.harmony) or abs(b.bpm / a.bpm - 1.0) > max_tempo_change:
        return False
    ours = [frozenset(_chord(a, numeral)) for numeral in a.progression]
    theirs = [frozenset(_chord(b, numeral)) for numeral in b.progression]
    rotations = [ours[start:] + ours[:start] for start in range(len(ours))]
    return any([frozenset((pitch + shift) % 12 for pitch in chord) for chord in theirs] in rotations
               for shift in range(-max_semitones, max_semitones + 1))


def _nearest(pitch_class: int, target: int) -> int:
    """The MIDI note of ``pitch_class`` closest to ``target``."""
    return target + ((pitch_class - target + 6) % 12) - 6


def _lowest(pitch_class: int, floor: int) -> int:
    return floor + (pitch_class - floor) % 12


class _Changes:
    """The chord sounding at each sixteenth step: the progression, one chord every ``beats_per_chord`` beats."""

    def __init__(self, spec: TrackSpec) -> None:
        self.span = 4 * spec.style.beats_per_chord
        self.chords = [_chord(spec, numeral) for numeral in spec.progression]

    def at(self, step: int) -> tuple[int, int, int]:
        return self.chords[(step // self.span) % len(self.chords)]


def compose(spec: TrackSpec, seconds: float) -> Score:
    """Write the notes and hits of ``spec`` for ``seconds`` (a bar more, so the end is cut, not silent)."""
    rng = np.random.default_rng([spec.seed, 7])
    grid = _Grid(spec.bpm, spec.style.swing)
    bars = int(np.ceil(seconds / (STEPS_PER_BAR * grid.step_s))) + 1
    changes = _Changes(spec)
    score = Score(kit=DrumKit(kick_hz=float(rng.uniform(46, 62)), kick_decay_s=float(rng.uniform(0.22, 0.4)),
                              snare_tone_hz=float(rng.uniform(160, 240)), snare_decay_s=float(rng.uniform(0.1, 0.2)),
                              hat_decay_s=float(rng.uniform(0.03, 0.07))))
    score.notes["harmony"] = _harmony(spec, changes, bars, grid, rng)
    score.notes["bass"] = _bass(spec, changes, bars, grid, rng)
    score.notes["lead"] = _lead(spec, changes, bars, grid, rng)
    score.hits = _drums(spec, bars, grid, rng)
    return score


_ARPEGGIOS = ((0, 1, 2, 3, 2, 1, 0, 1), (0, 2, 1, 3, 0, 2, 1, 3), (3, 2, 1, 0, 1, 2, 3, 2))  # eighths over 4 tones
_COMP_RHYTHMS = {"stabs": ((2, 6, 10, 14), 1.5), "strum": ((0, 6, 8, 12), 3.0), "comp": ((0, 6, 10, 14), 2.5)}


def _harmony(spec: TrackSpec, changes: _Changes, bars: int, grid: _Grid, rng: np.random.Generator) -> list[Note]:
    low, high = VOICES[spec.harmony].register
    center = low + (high - low) // 3
    comping = spec.style.comping

    def voicing(step: int) -> list[int]:
        return sorted(_nearest(pc, center) for pc in changes.at(step))

    notes: list[Note] = []
    if comping == "sustained":
        for step in range(0, bars * STEPS_PER_BAR, changes.span):
            notes += [Note(grid.time(step), changes.span * grid.step_s, pitch, 0.55) for pitch in voicing(step)]
        return notes
    for base in range(0, bars * STEPS_PER_BAR, STEPS_PER_BAR):
        if comping == "arpeggio":
            shape = _ARPEGGIOS[int(rng.integers(len(_ARPEGGIOS)))]
            for k, slot in enumerate(shape):
                tones = voicing(base + 2 * k)
                pitch = [*tones, tones[0] + 12][slot]
                notes.append(Note(grid.time(base + 2 * k), 4 * grid.step_s, pitch, 0.5 if k % 2 else 0.65))
            continue
        steps, length = _COMP_RHYTHMS[comping]
        for step in steps:
            for k, pitch in enumerate(voicing(base + step)):  # strummed strings sound 12 ms apart
                offset = 0.012 * k if comping == "strum" else 0.0
                notes.append(Note(grid.time(base + step) + offset, length * grid.step_s, pitch,
                                  0.6 if step % 8 == 0 else 0.48))
    return notes


_BASS_LINES = {  # (step, length in steps, which note: root, fifth, octave, or jump: octave or fifth by chance)
    "offbeat": ((2, 2, "root"), (6, 2, "root"), (10, 2, "root"), (14, 2, "root")),
    "eighths": tuple((step, 2, "root") for step in range(0, 12, 2)) + ((12, 2, "jump"), (14, 2, "jump")),
    "root-fifth": ((0, 4, "root"), (4, 4, "fifth"), (8, 4, "root"), (12, 4, "fifth")),
    "syncopated": ((0, 3, "root"), (3, 3, "root"), (6, 4, "jump"), (10, 2, "root"), (12, 4, "fifth")),
}


def _bass(spec: TrackSpec, changes: _Changes, bars: int, grid: _Grid, rng: np.random.Generator) -> list[Note]:
    low, _ = VOICES[spec.bass].register
    line = spec.style.bass_line
    if line == "whole":  # one note a chord
        events = [(step, changes.span, "root") for step in range(0, bars * STEPS_PER_BAR, changes.span)]
    else:
        events = [(base + step, length, which) for base in range(0, bars * STEPS_PER_BAR, STEPS_PER_BAR)
                  for step, length, which in _BASS_LINES[line]]
    notes: list[Note] = []
    jump = "octave"
    for step, length, which in events:
        if step % STEPS_PER_BAR == 0:
            jump = "octave" if rng.random() < 0.5 else "fifth"
        chord = changes.at(step)
        root = _lowest(chord[0], low)
        choice = jump if which == "jump" else which
        pitch = {"root": root, "fifth": _lowest(chord[2], root), "octave": root + 12}[choice]
        notes.append(Note(grid.time(step), length * grid.step_s * 0.9, pitch, 0.85))
    return notes


_PLAIN_CELLS = ((4,), (2, 2), (3, 1), (2, 2), (4,), (6, 2), (8,))  # durations in 16ths; a cell fills one beat or two
_BUSY_CELLS = (*_PLAIN_CELLS, (1, 1, 2), (2, 1, 1), (1, 1, 1, 1), (3, 3, 2))


def _rhythm(rng: np.random.Generator, busy: bool) -> list[tuple[int, int, bool]]:
    """One bar of (step, length, is_rest): cells drawn until the bar is full, a few of the notes made rests."""
    cells = _BUSY_CELLS if busy else _PLAIN_CELLS
    out: list[tuple[int, int, bool]] = []
    step = 0
    while step < STEPS_PER_BAR:
        cell = cells[int(rng.integers(len(cells)))]
        if step + sum(cell) > STEPS_PER_BAR:
            cell = (STEPS_PER_BAR - step,)
        for length in cell:
            out.append((step, length, step > 0 and rng.random() < 0.18))
            step += length
    return out


def _lead(spec: TrackSpec, changes: _Changes, bars: int, grid: _Grid, rng: np.random.Generator) -> list[Note]:
    """A scale walk in the lead voice's register, on the A A B A rhythm form, chord tones on the beats."""
    low, high = VOICES[spec.lead].register
    scale = SCALES[spec.mode]
    tonic = NOTE_NAMES.index(spec.key)
    ladder = [p for p in range(low, high + 1) if (p - tonic) % 12 in scale]  # the scale's notes in the register
    position = len(ladder) // 2
    busy = spec.bpm < 110
    forms = [_rhythm(rng, busy), _rhythm(rng, busy)]
    notes: list[Note] = []
    for bar in range(bars):
        for step, length, rest in forms[1 if bar % 4 == 2 else 0]:
            start = bar * STEPS_PER_BAR + step
            position = int(np.clip(position + rng.choice((-3, -2, -1, -1, 0, 1, 1, 2, 3)), 0, len(ladder) - 1))
            if step % 4 == 0:  # on the beat: move to the nearest chord tone
                chord = changes.at(start)
                tones = [k for k, pitch in enumerate(ladder) if pitch % 12 in chord]
                position = min(tones, key=lambda k: abs(k - position))
            if not rest:
                notes.append(Note(grid.time(start), length * grid.step_s * 0.92, ladder[position],
                                  0.75 if step % 4 == 0 else 0.6))
    return notes


def _drums(spec: TrackSpec, bars: int, grid: _Grid, rng: np.random.Generator) -> list[Hit]:
    pattern = DRUM_PATTERNS[spec.drums]
    hits: list[Hit] = []
    for bar in range(bars):
        base = bar * STEPS_PER_BAR
        for drum, row in pattern.items():
            for step, mark in enumerate(row):
                if mark == "x":
                    accent = 1.0 if drum != "hat" else 0.7 if step % 4 == 0 else 0.5
                    hits.append(Hit(grid.time(base + step), drum, accent))
        for step in range(1, STEPS_PER_BAR, 2):  # ghost hats on odd sixteenths
            if rng.random() < 0.12:
                hits.append(Hit(grid.time(base + step), "hat", 0.3))
        if bar % 4 == 3 and rng.random() < 0.6:  # a short snare fill into the next phrase
            hits += [Hit(grid.time(base + step), "snare", 0.55) for step in (13, 14, 15)]
    return hits
