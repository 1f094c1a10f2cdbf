"""Codec and tokenize: one interface over every codec, and the corpus encoded into token shards.

Pure: :mod:`.codecs` (the ``Codec`` protocol, soundtrail and EnCodec codecs behind it, batched encoding),
:mod:`.quality` (segment checks, reconstruction losses, held-out metrics).
Stage code: :mod:`.stage` (which codec the workspace uses, pretrained imports, ``codec eval``),
:mod:`.tokenize` (accepted assets -> Parquet shards, incrementally).
Training soundtrail's own codec is :mod:`soundtrail.train.codec`, through the same loop as the generators.
"""
