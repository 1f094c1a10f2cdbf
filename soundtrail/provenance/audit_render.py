"""The audit report rendered: three formats of the same dict (:func:`~soundtrail.provenance.audit_report.build_report`).

    html  one self-contained page for a reader: inline CSS, spectrograms (PNG) and players (WAV) as
          ``data:`` URIs, a Content-Security-Policy that forbids every fetch, so it opens offline
          and can be mailed to a rights holder as one file
    md    the same tables as Markdown, for a repository or a ticket
    json  the dict itself, for tools

Every string that came from a user (titles, prompts, reasons, paths) is escaped: HTML through
Jinja2's autoescape, Markdown through :func:`markdown_escape`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from soundtrail.provenance.outputs import released_path
from soundtrail.workspace import Workspace

AUDIO_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".opus": "audio/ogg",
               ".mp3": "audio/mpeg"}
_TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class AuditConfig:
    """How much media goes into the HTML page (everything else is the same in every format)."""

    embed_limit_bytes: int = 32 * 1024 * 1024  # larger released files are listed, not embedded
    max_media: int = 50  # the newest released outputs get a spectrogram and a player; older ones are listed
    spectrogram_max_s: float = 30.0  # only the start of a long output is drawn
    spectrogram_inches: tuple[float, float] = (7.0, 2.2)
    spectrogram_dpi: int = 96


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&#])")


def markdown_escape(value: Any) -> str:
    """A value as inert Markdown text: one line, every character that could start markup escaped."""
    if value is None:
        return ""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def _markdown_link(text: str, url: str | None) -> Markup:
    """``[text](url)`` for a licence page (urls come from :func:`license_url`, never from users)."""
    return Markup(f"[{markdown_escape(text)}]({url})" if url else markdown_escape(text))


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _finalize_html(value: Any) -> Any:
    return "" if value is None else value


def _finalize_markdown(value: Any) -> Any:
    return value if isinstance(value, Markup) else markdown_escape(value)


def _environment(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=autoescape, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        finalize=_finalize_html if autoescape else _finalize_markdown,
    )
    env.filters["md_link"] = _markdown_link
    env.filters["seconds"] = _seconds
    env.filters["basename"] = lambda value: Path(value).name
    env.filters["short"] = lambda value, n=12: "" if value is None else str(value)[:n]
    env.filters["tojson_pretty"] = lambda value: json.dumps(value, indent=2, sort_keys=True, default=str)
    return env


def render_markdown(report: dict[str, Any]) -> str:
    return _environment(autoescape=False).get_template("audit.md.j2").render(r=report)


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False, ensure_ascii=False, allow_nan=False) + "\n"


def render_html(report: dict[str, Any], workspace: Workspace, config: AuditConfig | None = None) -> str:
    """The self-contained page: released outputs get a spectrogram and a player as ``data:`` URIs."""
    config = config or AuditConfig()
    released = [row for row in report["releases"] if row["status"] == "released" and row["file"] == "ok"]
    newest = released[-config.max_media:] if config.max_media > 0 else []
    media = {row["id"]: _release_media(released_path(workspace, row), config) for row in newest}
    script = (_TEMPLATES / "media_check.js").read_text()
    script_hash = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    return _environment(autoescape=True).get_template("audit.html.j2").render(
        r=report, media=media, script=Markup(script), script_hash=script_hash,
        css=Markup((_TEMPLATES / "audit.css").read_text()))


def _release_media(path: Path, config: AuditConfig) -> dict[str, str | None]:
    """``{"spectrogram": data URI | None, "audio": data URI | None, "problem": text | None}`` for one file."""
    from soundtrail.audio import AudioError, decode, mono

    try:
        audio, rate = decode(path)
    except AudioError as exc:
        return {"spectrogram": None, "audio": None, "problem": f"cannot decode: {exc}"}
    spectrogram = _data_uri("image/png", _spectrogram_png(mono(audio)[: int(config.spectrogram_max_s * rate)],
                                                         rate, config))
    size = path.stat().st_size
    if size > config.embed_limit_bytes:
        return {"spectrogram": spectrogram, "audio": None,
                "problem": f"{size / 2**20:.1f} MiB is over the {config.embed_limit_bytes / 2**20:.0f} MiB embed limit"}
    mime = AUDIO_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return {"spectrogram": spectrogram, "audio": _data_uri(mime, path.read_bytes()), "problem": None}


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _spectrogram_png(signal: Any, rate: int, config: AuditConfig) -> bytes:
    """A log-magnitude spectrogram drawn with matplotlib's Agg canvas (no pyplot, no global state)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=config.spectrogram_inches, dpi=config.spectrogram_dpi, layout="constrained")
    axes = figure.subplots()
    nfft = 1024 if rate >= 22_050 else 512
    axes.specgram(signal, NFFT=nfft, Fs=rate, noverlap=nfft * 3 // 4, cmap="magma", scale="dB")
    axes.set_xlabel("time (s)")
    axes.set_ylabel("frequency (Hz)")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


