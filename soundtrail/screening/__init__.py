"""Screening: does audio copy a stretch of a protected or training work?

Pure: :mod:`.method` (the contract every screening method keeps, and its one match type), :mod:`.registry` (the
methods, one line each), :mod:`.screener` (the methods together, their thresholds and the verdict); the methods
:mod:`.chromaprint` (Chromaprint items: same recording, re-encodes; also ingest's duplicate and blocklist checks),
:mod:`.tokens` (memorised codec n-grams), :mod:`.landmarks` (pitch- and tempo-robust peak triplets), with
:mod:`.arrays` and :mod:`.index_file` beneath them.
Stage code: :mod:`.stage` (the workspace's screening index, built from the ledger and cached on disk).
"""
