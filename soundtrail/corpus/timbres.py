"""Instrument voices for the demo corpus: additive, FM, plucked (Karplus-Strong) and noise drums.

Every voice renders one note as a mono float array, vectorised over samples, from four arguments::

    voice(freq_hz, length, gate, rng)      length: samples to return (note plus release tail)
                                           gate:   samples the note is held before it is let go

    additive   sum_k a_k sin(k theta(t)), summed once into a one-period wavetable read at the note's phase
    fm         sin(theta_c(t) + I(t) sin(theta_m(t))), the modulation index decaying for a bright attack
    plucked    Karplus-Strong string: y[n] = g (y[n-P] + y[n-P-1]) / 2, run one period P at a time
    drums      kick (pitch-swept sine), snare (filtered noise + body tone), hat (high-passed noise)

The names in :data:`VOICES` are the words captions use, so a caption can only name what was played.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

SAMPLE_RATE = 44_100
_NYQUIST_MARGIN = 0.45  # partials above 0.45 * rate are dropped so nothing aliases
_TABLE_BITS = 16  # wavetable of 65,536 float32 samples (256 kB): read without interpolation, error under -55 dB
_TO_INDEX = np.uint32(32 - _TABLE_BITS)

Render = Callable[[float, int, int, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Voice:
    """A named timbre: ``family`` is how it is made (additive, fm, plucked), ``register`` its MIDI range,
    ``ring_s`` how long a note goes on sounding after its gate closes (release, or a string's free decay)."""

    name: str
    family: str
    register: tuple[int, int]
    ring_s: float
    render: Render


def midi_to_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def _time(length: int) -> np.ndarray:
    return np.arange(length, dtype=np.float32) / np.float32(SAMPLE_RATE)


def _adsr(length: int, gate: int, attack_s: float, decay_s: float, sustain: float, release_s: float) -> np.ndarray:
    """Attack, exponential decay to ``sustain`` while held, exponential release after ``gate`` samples."""
    t = _time(length)
    held = sustain + (1.0 - sustain) * np.exp(-t / np.float32(max(decay_s, 1e-4)))
    env = np.minimum(t / np.float32(max(attack_s, 1e-4)), np.float32(1.0)) * held
    if gate < length:
        level = env[max(gate - 1, 0)]
        env[gate:] = level * np.exp(-(t[gate:] - t[gate]) / np.float32(max(release_s, 1e-4)))
    return env


# ---------------------------------------------------------------------------------------------
# Oscillators: a phase is a uint32 fraction of a period, so it wraps for free; its top bits index a table


@functools.lru_cache(maxsize=64)  # ~50 distinct tables in use, 256 kB each
def _wavetable(amplitudes: tuple[float, ...]) -> np.ndarray:
    """One period of ``sum_k amplitudes[k-1] sin(k x)``.

    Summing the partials once into a table and reading it at the note's phase makes an additive
    tone cost the same few operations per sample whatever its partial count.
    """
    theta = 2.0 * np.pi * np.arange(1 << _TABLE_BITS) / (1 << _TABLE_BITS)
    return sum(a * np.sin(k * theta) for k, a in enumerate(amplitudes, start=1) if a).astype(np.float32)


def _increment(freq: float | np.ndarray) -> np.ndarray:
    """Per-sample phase step of a frequency, in uint32 fractions of a period."""
    return np.asarray(np.round(np.asarray(freq) / SAMPLE_RATE * 2.0**32), dtype=np.int64).astype(np.uint32)


def _phase(freq: float, length: int, vibrato_hz: float = 0.0, vibrato_depth: float = 0.0,
           detune_cents: float = 0.0) -> np.ndarray:
    """Phase of a tone with optional vibrato (depth as a fraction of the frequency), fading in as players do."""
    base = freq * 2.0 ** (detune_cents / 1200.0)
    steps = np.arange(length, dtype=np.uint32)
    if vibrato_depth == 0.0:
        return steps * _increment(base)
    onset = np.minimum(_time(length) / np.float32(0.25), np.float32(1.0))
    wobble = _sine(steps * _increment(vibrato_hz))
    return np.cumsum(_increment(base * (1.0 + vibrato_depth * onset * wobble)), dtype=np.uint32)


def _harmonics(phase: np.ndarray, amplitudes: np.ndarray) -> np.ndarray:
    """The additive tone of ``amplitudes`` at ``phase``."""
    return _wavetable(tuple(float(a) for a in amplitudes))[phase >> _TO_INDEX]


def _sine(phase: np.ndarray) -> np.ndarray:
    return _wavetable((1.0,))[phase >> _TO_INDEX]


def _audible(freq: float, amplitudes: np.ndarray) -> np.ndarray:
    """The partials of ``amplitudes`` that stay below the Nyquist margin at ``freq``."""
    count = max(1, min(len(amplitudes), int(_NYQUIST_MARGIN * SAMPLE_RATE / freq)))
    return amplitudes[:count]


# ---------------------------------------------------------------------------------------------
# Additive


_ORGAN = np.array([1.0, 0.75, 0.5, 0.35, 0.0, 0.22, 0.0, 0.15])  # drawbar-like: octaves and fifths
_SAW = 1.0 / np.arange(1, 17)
_SQUARE = np.array([1.0 / k if k % 2 else 0.0 for k in range(1, 20)])
_FLUTE = np.array([1.0, 0.22, 0.08, 0.03])


def organ(freq: float, length: int, gate: int, rng: np.random.Generator) -> np.ndarray:
    env = _adsr(length, gate, 0.008, 1.0, 1.0, 0.06)
    return 0.45 * env * _harmonics(_phase(freq, length, 6.5, 0.002), _audible(freq, _ORGAN))


def warm_pad(freq: float, length: int, gate: int, rng: np.random.Generator) -> np.ndarray:
    """Two saw-spectrum tones detuned by +-7 cents (chorus) with a slow swell; upper partials rolled off."""
    amps = _audible(freq, _SAW * np.exp(-np.arange(len(_SAW)) / 5.0))
    tone = _harmonics(_phase(freq, length, detune_cents=7.0), amps)
    tone += _harmonics(_phase(freq, length, detune_cents=-7.0), amps)
    env = _adsr(length, gate, 0.35, 1.5, 0.8, 0.45)
    return 0.3 * env * tone


def flute(freq: float, length: int, gate: int, rng: np.random.Generator) -> np.ndarray:
    """Nearly pure tone with delayed vibrato and a breath of band-limited noise in the attack."""
    env = _adsr(length, gate, 0.06, 0.4, 0.85, 0.08)
    tone = _harmonics(_phase(freq, length, 5.2, 0.006), _audible(freq, _FLUTE))
    breath = lfilter([0.2], [1.0, -0.8], rng.standard_normal(length)) * np.exp(-_time(length) / 0.08)
    return 0.6 * env * (tone + 0.15 * breath)


def square_lead(freq: float, length: int, gate: int, rng: np.random.Generator) -> np.ndarray:
    env = _adsr(length, gate, 0.01, 0.25, 0.6, 0.1)
    return 0.35 * env * _harmonics(_phase(freq, length, 5.8, 0.004), _audible(freq, _SQUARE))


def sine_bass(freq: float, length: int, gate: int, rng: np.random.Generator) -> np.ndarray:
    env = _adsr(length, gate, 0.012, 0.6, 0.7, 0.05)
    return 0.9 * env * _harmonics(_phase(freq, length), _audible(freq, np.array([1.0, 0.3, 0.08])))


# ---------------------------------------------------------------------------------------------
# FM


def _fm(freq: float, length: int, ratio: float, index: float, index_decay_s: float) -> np.ndarray:
    """``sin(carrier + I(t) sin(modulator))``, the deviation ``I(t)`` (radians) added to the carrier's phase."""
    steps = np.arange(length, dtype=np.uint32)
    modulator = _sine(steps * _increment(freq * ratio))
    deviation = (index / (2.0 * np.pi) * 2.0**32) * np.exp(-_time(length) / np.float32(index_decay_s)) * modulator
    return _sine(steps * _increment(freq) + deviation.astype(np.int64).astype(np.uint32))


def electric_piano(freq: float, length: int, gate: int, rng: np.random.Generator) -> np.ndarray:
    """1:1 FM whose brightness falls away, plus a faint 14:1 'tine' partial in the attack."""
    body = _fm(freq, length, 1.0, 1.8, 0.35)
    env = _adsr(length, gate, 0.003, 0.9, 0.25, 0.15)
    if freq * 14.0 < _NYQUIST_MARGIN * SAMPLE_RATE:
        body += 0.15 * _sine(_phase(freq * 14.0, length)) * np.exp(-_time(length) / np.float32(0.02))
    return 0.55 * env * body


def bell(freq: float, length: int, gate: int, rng: np.random.Generator) -> np.ndarray:
    """Inharmonic 3.5:1 FM with a long free decay: a struck metal bar rings past its gate."""
    env = _adsr(length, length, 0.002, 0.9, 0.0, 0.5)
    return 0.5 * env * _fm(freq, length, 3.5, 3.0, 0.5)


def fm_bass(freq: float, length: int, gate: int, rng: np.random.Generator) -> np.ndarray:
    env = _adsr(length, gate, 0.004, 0.3, 0.55, 0.04)
    return 0.75 * env * _fm(freq, length, 1.0, 3.5, 0.08)


# ---------------------------------------------------------------------------------------------
# Plucked (Karplus-Strong)


_PLUCK_AT = 0.27


def karplus_strong(freq: float, length: int, rng: np.random.Generator, t60_s: float, brightness: float) -> np.ndarray:
    """A plucked string: one period of excitation recirculated through an averaging loop filter.

    The excitation is the string's shape when plucked at 27 % of its length (a triangle, harmonics
    falling as 1/k^2, so the fundamental leads as in a real string) plus some noise for the pick's
    grit, low-passed by ``brightness`` (0..1). The recurrence ``y[n] = g (y[n-P] + y[n-P-1]) / 2``
    only looks one period back, so a whole period is computed per NumPy call; ``buffer`` carries one
    leading zero so that ``y[n-P-1]`` is a plain slice.
    """
    period = max(2, int(round(SAMPLE_RATE / freq - 0.5)))  # the loop filter adds half a sample of delay
    blocks = -(-length // period) + 1
    buffer = np.zeros(1 + blocks * period)
    position = np.arange(period) / period
    shape = np.where(position < _PLUCK_AT, position / _PLUCK_AT, (1.0 - position) / (1.0 - _PLUCK_AT))
    excitation = 2.0 * (shape - shape.mean()) + 0.5 * rng.uniform(-1.0, 1.0, period)
    buffer[1:1 + period] = lfilter([brightness], [1.0, brightness - 1.0], excitation)
    gain = 10.0 ** (-3.0 * period / (t60_s * SAMPLE_RATE))  # -60 dB after t60_s
    for block in range(1, blocks):
        start = 1 + block * period
        np.add(buffer[start - period:start], buffer[start - period - 1:start - 1], out=buffer[start:start + period])
        buffer[start:start + period] *= 0.5 * gain
    return buffer[1:1 + length]


def nylon_guitar(freq: float, length: int, gate: int, rng: np.random.Generator) -> np.ndarray:
    env = _adsr(length, gate, 0.001, 10.0, 1.0, 0.12)
    return 0.8 * env * karplus_strong(freq, length, rng, t60_s=2.2, brightness=0.55)


def harp(freq: float, length: int, gate: int, rng: np.random.Generator) -> np.ndarray:
    return 0.75 * karplus_strong(freq, length, rng, t60_s=3.5, brightness=0.9)


def plucked_bass(freq: float, length: int, gate: int, rng: np.random.Generator) -> np.ndarray:
    env = _adsr(length, gate, 0.001, 10.0, 1.0, 0.05)
    return 0.85 * env * karplus_strong(freq, length, rng, t60_s=1.6, brightness=0.3)


VOICES: dict[str, Voice] = {voice.name: voice for voice in (
    Voice("organ", "additive", (55, 79), 0.3, organ),
    Voice("warm pad", "additive", (52, 76), 1.2, warm_pad),
    Voice("flute", "additive", (72, 91), 0.4, flute),
    Voice("square lead", "additive", (64, 84), 0.5, square_lead),
    Voice("sine bass", "additive", (31, 48), 0.3, sine_bass),
    Voice("electric piano", "fm", (55, 81), 0.8, electric_piano),
    Voice("bell", "fm", (72, 93), 1.5, bell),
    Voice("fm bass", "fm", (33, 50), 0.25, fm_bass),
    Voice("nylon guitar", "plucked", (48, 76), 0.6, nylon_guitar),
    Voice("harp", "plucked", (60, 88), 1.2, harp),
    Voice("plucked bass", "plucked", (33, 52), 0.3, plucked_bass),
)}


# ---------------------------------------------------------------------------------------------
# Drums


@dataclass(frozen=True)
class DrumKit:
    """The few numbers that make one track's drums sound unlike another's."""

    kick_hz: float = 52.0
    kick_decay_s: float = 0.32
    snare_tone_hz: float = 190.0
    snare_decay_s: float = 0.14
    hat_decay_s: float = 0.045

    def sounds(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One sample per drum, rendered once a track and placed at every hit."""
        return {"kick": self._kick(rng), "snare": self._snare(rng), "hat": self._hat(rng)}

    def _kick(self, rng: np.random.Generator) -> np.ndarray:
        t = _time(int(4 * self.kick_decay_s * SAMPLE_RATE))
        sweep = self.kick_hz + 3.0 * self.kick_hz * np.exp(-t / 0.035)  # the pitch drop is the 'thump'
        body = np.sin(2.0 * np.pi * np.cumsum(sweep) / SAMPLE_RATE) * np.exp(-t / self.kick_decay_s)
        click = rng.standard_normal(len(t)) * np.exp(-t / 0.003)
        return 0.95 * body + 0.12 * click

    def _snare(self, rng: np.random.Generator) -> np.ndarray:
        t = _time(int(5 * self.snare_decay_s * SAMPLE_RATE))
        noise = lfilter([1.0, -1.0], [1.0, -0.3], rng.standard_normal(len(t)))  # high-passed: the wires
        tone = np.sin(2.0 * np.pi * self.snare_tone_hz * t) * np.exp(-t / 0.05)  # the drum head
        return 0.45 * noise * np.exp(-t / self.snare_decay_s) + 0.5 * tone

    def _hat(self, rng: np.random.Generator) -> np.ndarray:
        t = _time(int(6 * self.hat_decay_s * SAMPLE_RATE))
        noise = np.diff(rng.standard_normal(len(t) + 2), n=2) / 4.0  # a second difference tilts noise to the top
        return 0.5 * noise * np.exp(-t / self.hat_decay_s)

