"""Scores to stereo audio: each note rendered by its voice, parts panned and mixed, the mix levelled.

::

    lead ----- voice, pan ~ U(-0.3, 0.3) --\\
    harmony -- voice, pan opposite lead ----+--> sum --> peak at -3 dBFS, 5 ms fade in, 50 ms fade out
    bass ----- voice, centre ---------------|
    drums ---- kick centre, snare left, hat right
"""

from __future__ import annotations

import numpy as np

from soundtrail.corpus.compose import Hit, Note, TrackSpec, compose
from soundtrail.corpus.timbres import SAMPLE_RATE, VOICES, Voice, midi_to_hz

PEAK = 10.0 ** (-3.0 / 20.0)  # headroom, so a near copy a few dB louder still does not clip
_PART_GAIN = {"lead": 0.55, "harmony": 0.32, "bass": 0.6, "kick": 0.9, "snare": 0.55, "hat": 0.35}
_DRUM_PAN = {"kick": 0.0, "snare": -0.15, "hat": 0.35}
_NOTE_FADE = 64  # samples: a note cut short at its ring limit ends without a click


def _add_panned(mix: np.ndarray, mono: np.ndarray, gain: float, position: float) -> None:
    """Constant-power pan into ``mix``: ``position`` -1 is hard left, 0 centre, +1 hard right."""
    angle = (position + 1.0) * np.pi / 4.0
    mix[0] += (gain * np.cos(angle)) * mono
    mix[1] += (gain * np.sin(angle)) * mono


def _render_part(voice: Voice, notes: list[Note], length: int, rng: np.random.Generator) -> np.ndarray:
    """One voice's notes summed into a mono buffer.

    Music repeats itself: a part plays a handful of pitches at a handful of lengths, so each distinct
    (pitch, gate, length) is rendered once and reused, as a sampler would (a repeated pluck reuses its burst).
    """
    out = np.zeros(length)
    fade = np.linspace(1.0, 0.0, _NOTE_FADE)
    ring = int(voice.ring_s * SAMPLE_RATE)
    rendered: dict[tuple[int, int, int], np.ndarray] = {}
    for note in notes:
        start = int(round(note.start_s * SAMPLE_RATE))
        if start >= length:
            continue
        gate = max(1, int(note.duration_s * SAMPLE_RATE))
        count = min(gate + ring, length - start)
        key = (note.midi, gate, count)
        if key not in rendered:
            sound = voice.render(midi_to_hz(note.midi), count, gate, rng)
            tail = min(_NOTE_FADE, count)
            sound[-tail:] *= fade[-tail:]
            rendered[key] = sound
        out[start:start + count] += note.velocity * rendered[key]
    return out


def _render_drum(sample: np.ndarray, hits: list[Hit], length: int) -> np.ndarray:
    out = np.zeros(length)
    for hit in hits:
        start = int(round(hit.start_s * SAMPLE_RATE))
        count = min(len(sample), length - start)
        if count > 0:
            out[start:start + count] += hit.velocity * sample[:count]
    return out


def render_track(spec: TrackSpec, seconds: float) -> np.ndarray:
    """The audio of ``spec``: float32 ``[2, round(seconds * 44100)]``, peak at -3 dBFS."""
    length = int(round(seconds * SAMPLE_RATE))
    score = compose(spec, seconds)
    rng = np.random.default_rng([spec.seed, 11])
    lead_pan = float(rng.uniform(-0.3, 0.3))
    pans = {"lead": lead_pan, "harmony": -np.sign(lead_pan) * 0.35, "bass": 0.0}
    voices = {"lead": spec.lead, "harmony": spec.harmony, "bass": spec.bass}
    mix = np.zeros((2, length))
    for part, name in voices.items():
        mono = _render_part(VOICES[name], score.notes[part], length, rng)
        _add_panned(mix, mono, _PART_GAIN[part], pans[part])
    for drum, sample in score.kit.sounds(rng).items():
        mono = _render_drum(sample, [hit for hit in score.hits if hit.drum == drum], length)
        _add_panned(mix, mono, _PART_GAIN[drum], _DRUM_PAN[drum])
    top = float(np.abs(mix).max())
    if top > 0:
        mix *= PEAK / top
    fade_in, fade_out = min(length, int(0.005 * SAMPLE_RATE)), min(length, int(0.05 * SAMPLE_RATE))
    mix[:, :fade_in] *= np.linspace(0.0, 1.0, fade_in)
    mix[:, length - fade_out:] *= np.linspace(1.0, 0.0, fade_out)
    return mix.astype(np.float32)
