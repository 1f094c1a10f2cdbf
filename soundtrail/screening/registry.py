"""The screening methods the release screen runs, one line each (as audiocraft's builders name their classes).

A method is a :class:`~soundtrail.screening.method.ScreeningMethod` in a module of its own. Its line here is all
the wiring it needs: the :class:`~soundtrail.screening.screener.Screener` builds, queries, saves and loads it,
``[screening]`` in ``soundtrail.toml`` accepts its ``<name>_flag`` and ``<name>_block``, and the workspace's
cached index is rebuilt with it. Matches are listed in this order.
"""

from __future__ import annotations

from soundtrail.screening.chromaprint import ChromaprintMethod
from soundtrail.screening.landmarks.index import LandmarksMethod
from soundtrail.screening.method import ScreeningMethod
from soundtrail.screening.tokens import TokensMethod

METHODS: tuple[type[ScreeningMethod], ...] = (
    ChromaprintMethod,
    LandmarksMethod,
    TokensMethod,
)
