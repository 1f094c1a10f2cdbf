"""A procedurally composed, licensed demo corpus (``soundtrail corpus synth DIR``).

Tracks are composed from a seed (melody, chords, bass, drums; key, tempo and timbres varied), rendered
with vectorised NumPy voices (:mod:`.timbres`), kept apart from each other under Chromaprint
(:mod:`.distinct`), and written with a manifest whose captions are derived from the same parameters
that made the audio (:mod:`.compose`). Extras meant to fail ingestion (a denied licence, no licence,
an excerpt of a protected work, a re-encoded copy) come with the status each should get
(:mod:`.build`).
"""

from soundtrail.corpus.build import CorpusConfig, CorpusSummary, CorpusTrack, synthesize_corpus
from soundtrail.corpus.compose import TrackSpec
from soundtrail.corpus.render import render_track

__all__ = ["CorpusConfig", "CorpusSummary", "CorpusTrack", "TrackSpec", "render_track", "synthesize_corpus"]
