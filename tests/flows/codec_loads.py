"""Counting codec loads in Ray's worker processes, where a test cannot look: a worker setup hook.

Ray runs :func:`count_codec_loads` in every worker it starts (``runtime_env["worker_process_setup_hook"]``);
from then on each codec load by the tokenizer, still the real one, leaves an empty file named after the worker's
process id in the folder ``$SOUNDTRAIL_TEST_CODEC_LOADS``. Kept apart from the test module so that workers import
nothing but this.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

ENV = "SOUNDTRAIL_TEST_CODEC_LOADS"


def count_codec_loads() -> None:
    import soundtrail.codec.tokenize as tokenize

    real_load = tokenize.load_codec

    def counted_load(*args, **kwargs):
        Path(os.environ[ENV], f"{os.getpid()}-{uuid.uuid4().hex}").touch()
        return real_load(*args, **kwargs)

    tokenize.load_codec = counted_load


def loads_by_process(folder: Path) -> dict[int, int]:
    """How many codec loads each worker process made (files left by :func:`count_codec_loads`)."""
    counts: dict[int, int] = {}
    for path in folder.iterdir():
        pid = int(path.name.split("-")[0])
        counts[pid] = counts.get(pid, 0) + 1
    return counts
