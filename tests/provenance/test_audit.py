"""Audit reports: content of every format, escaping, self-containment, media that really loads, the CLI."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from markdown_it import MarkdownIt

from soundtrail.atomic import sha256_file
from soundtrail.audio import write_wav
from soundtrail.provenance import credentials as cc
from soundtrail.provenance.audit import write_report
from soundtrail.provenance.audit_render import AuditConfig, markdown_escape
from soundtrail.provenance.audit_report import build_report, license_url
from soundtrail.provenance.ledger import Ledger
from soundtrail.provenance.lineage import training_license_summary
from soundtrail.provenance.overrides import Override, record_override
from soundtrail.provenance.takedown import revoke, takedown_id_for
from soundtrail.workspace import Workspace
from tests.conftest import run_cli
from tests.provenance.test_lineage import build_ledger

RATE = 16_000
OUTPUT_SECONDS = 1.5
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ALLOWED_LINKS = re.compile(r"https://(creativecommons\.org/(licenses|publicdomain)/|spdx\.org/licenses/)")


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> cc.SigningIdentity:
    return cc.ensure_signing_identity(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def workspace(tmp_path: Path, identity: cc.SigningIdentity) -> Workspace:
    """The lineage fixture's ledger in a workspace; o1 and o2 under outputs/, o1 signed as the release gate does."""
    ws = Workspace(tmp_path / "ws")
    outputs = ws.path("outputs")
    t = np.arange(int(OUTPUT_SECONDS * RATE)) / RATE
    for name, pitch in (("o1-unsigned", 440.0), ("o2", 660.0)):
        write_wav(outputs / f"{name}.wav", (0.3 * np.sin(2 * np.pi * pitch * t)).astype(np.float32)[None], RATE)
    ledger = Ledger(ws.ledger_url)
    build_ledger(ledger, outputs)
    signed = cc.sign_wav(outputs / "o1-unsigned.wav", outputs / "o1.wav", identity, model_id="m1", output_id="o1",
                         training_license_summary=training_license_summary(ledger, "m1"), title="o1")
    (outputs / "o1-unsigned.wav").unlink()
    ledger.record("outputs", "o1", {"sha256": signed.signed_sha256, "credential": signed.as_dict()}, "output.released")
    ledger.record("outputs", "o2", {"sha256": sha256_file(outputs / "o2.wav")}, "output.released")
    ledger.record("blocklist", "b1", {"path": "/refs/hit.flac", "reason": "label reference"}, "blocklist.added")
    ledger.close()
    return ws


def _report(ws: Workspace) -> dict:
    ledger = Ledger(ws.ledger_url)
    try:
        return build_report(ws, ledger)
    finally:
        ledger.close()


def test_report_content(workspace: Workspace) -> None:
    report = _report(workspace)
    assert report["ledger"]["verified"] and report["ledger"]["events"] > 20
    licences = {row["license"]: row for row in report["licences"]}
    assert sorted(licences) == ["CC-BY-4.0", "CC-BY-NC-4.0", "CC-BY-SA-4.0", "CC0-1.0"]
    assert licences["CC-BY-4.0"] | {"url": None, "name": None} == {
        "license": "CC-BY-4.0", "name": None, "url": None, "policy": "allow", "policy_recorded": None,
        "requires_attribution": True, "assets": 2, "seconds": 13.0, "trained": 2, "excluded": 1}
    assert licences["CC-BY-NC-4.0"]["policy"] == "deny" and licences["CC-BY-NC-4.0"]["excluded"] == 1

    assert [entry["asset_id"] for entry in report["attribution"]] == ["a1", "a3", "a4"]
    assert (report["attribution"][0]["models"], report["attribution"][0]["codecs"]) == (["m1"], ["c1"])
    assert {(row["id"], row["status"], row["reason"]) for row in report["excluded"]} == {
        ("a5", "quarantined", "licence CC-BY-NC-4.0 is denied"), ("a6", "duplicate", "near copy of asset a1"),
        ("a7", "blocked", "matches blocklisted work b1")}

    models = {row["id"]: row for row in report["models"]}
    assert (models["m1"]["shards"], models["m1"]["superseded_shards"], models["m1"]["assets"]) == (2, 1, 4)
    assert sorted(models["m1"]["licenses"]) == ["CC-BY-4.0", "CC-BY-SA-4.0", "CC0-1.0"]

    releases = {row["id"]: row for row in report["releases"]}
    assert [row["id"] for row in report["releases"]] == ["o1", "o2", "o3"]
    assert (releases["o1"]["status"], releases["o1"]["verdict"], releases["o1"]["watermark_payload"]) == (
        "released", "pass", "a1b2c3d4")
    assert releases["o1"]["credential_digest_matches"] is True
    assert releases["o2"]["credential_digest_matches"] is False, "a credential that disagrees with the ledger shows"
    assert releases["o3"]["top_match"]["asset_id"] == "a1" and releases["o3"]["matches"] == 2
    assert (releases["o1"]["file"], releases["o3"]["file"]) == ("ok", None)

    summary = report["training_data_summary"]
    assert summary["volume"]["assets"] == 4 and summary["volume"]["segments"] == 16
    assert [source["source"] for source in summary["sources"]] == [
        "Label B archive", "field recordings", "https://label-a.example/catalogue"]
    processing = summary["processing"]
    assert (processing["quarantined"], processing["duplicates"], processing["blocked"], processing["revoked"],
            processing["blocklist_works"]) == (1, 1, 1, 0, 1)
    assert "soundtrail takedown" in processing["takedown_procedure"]


def test_figures_credits_signers_and_model_status_are_right(workspace: Workspace) -> None:
    """Segments count each shard once however many models read it; a credit line that already names its title is
    not wrapped in another; demo-CA signatures and takedown marks and overrides show."""
    with Ledger(workspace.ledger_url) as ledger:
        ledger.record("models", "m3", {"kind": "diffusion", "codec_id": "c1", "shards": ["sh1", "sh2"],
                                       "path": "/ck/m3", "created_at": "2025-03-02T00:00:00"}, "model.trained")
        ledger.record("assets", "a4", {"title": "Sleepy Garden",
                                       "attribution": '"Sleepy Garden" by Dana Reyes, CC BY 4.0'}, "asset.edited")
        revoke(ledger, "a3", "Label B request")
        record_override(ledger, "takedown-o9", "takedown", Override("alice", "cleared with Label B"),
                        {"model_id": "m1", "output_id": "o9", "takedowns": [takedown_id_for("a3")]})
    report = _report(workspace)
    assert report["training_data_summary"]["volume"]["segments"] == 16, "sh1 and sh2 counted once, not per model"
    credits = {entry["asset_id"]: entry for entry in report["attribution"]}
    assert credits["a4"]["credit"] == '"Sleepy Garden" by Dana Reyes, CC BY 4.0'
    assert credits["a1"]["credit"] == '"Dawn" by Artist One' and credits["a1"]["credit_holder"] == "Label A"
    markdown = write_report(workspace, "md").read_text()
    assert markdown.count("Sleepy Garden") == 1 and "by \"Sleepy" not in markdown
    releases = {row["id"]: row for row in report["releases"]}
    assert releases["o1"]["demo_signer"] and not releases["o2"]["demo_signer"]
    assert report["demo_signed_releases"] == 1 and "demo CA: untrusted outside this workspace" in markdown
    models = {row["id"]: row for row in report["models"]}
    assert (models["m1"]["status"], models["m1"]["takedowns"]) == ("affected-by-takedown", [takedown_id_for("a3")])
    assert models["m2"]["status"] == "current"
    assert [(row["kind"], row["by"]) for row in report["overrides"]] == [("takedown", "alice")]
    assert report["outputs_check"]["ok"] and "holds exactly the 2 released file(s)" in markdown
    html = write_report(workspace, "html").read_text()
    assert "demo CA: untrusted outside this workspace" in html and "cleared with Label B" in html


def test_changed_or_missing_release_files_are_flagged(workspace: Workspace) -> None:
    outputs = workspace.path("outputs")
    (outputs / "o1.wav").write_bytes((outputs / "o1.wav").read_bytes()[:-10])
    (outputs / "o2.wav").unlink()
    releases = {row["id"]: row for row in _report(workspace)["releases"]}
    assert (releases["o1"]["file"], releases["o2"]["file"]) == ("changed", "missing")
    html = (write_report(workspace, "html")).read_text()
    assert "data:audio/wav" not in html, "a file that is not what was released is never embedded as if it were"


def test_markdown_and_json_carry_the_same_items(workspace: Workspace) -> None:
    markdown = write_report(workspace, "md").read_text()
    document = json.loads(write_report(workspace, "json").read_text())
    assert write_report(workspace, "md").parent == workspace.root / "reports"
    for text in (markdown, json.dumps(document)):
        for item in ("a5", "a6", "a7", "m1", "m2", "o3", "a1b2c3d4", "Artist One", "near copy of asset a1",
                     "Label B archive"):
            assert item in text, item
    assert "[CC-BY-4.0](https://creativecommons.org/licenses/by/4.0/)" in markdown
    # Rendered by a CommonMark renderer that passes raw HTML through: escaping is what keeps the script out.
    rendered = MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)
    assert "<script>" not in rendered and "&lt;script&gt;alert(1)&lt;/script&gt; lo-fi | *piano*" in rendered
    o1_row = next(row for row in rendered.split("<tr>") if "<code>o1</code>" in row)
    assert o1_row.count("<td") == 10, "a '|' in a prompt must not split the table row"
    assert '<a href="https://creativecommons.org/licenses/by/4.0/">CC-BY-4.0</a>' in rendered
    assert "<em>" not in rendered, "asterisks in titles and prompts stay literal"
    assert document["releases"][0]["prompt"] == "<script>alert(1)</script> lo-fi | *piano*"


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))


def _elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Elements()
    parser.feed(html)
    return parser.elements


def test_html_is_self_contained_and_escaped(workspace: Workspace, tmp_path: Path) -> None:
    html = write_report(workspace, "html").read_text()
    elements = _elements(html)
    for tag, attrs in elements:
        assert tag not in ("link", "iframe", "object", "embed", "base"), tag
        if "src" in attrs:
            assert attrs["src"].startswith("data:"), f"<{tag} src> fetches {attrs['src'][:60]}"
        if "href" in attrs:
            href = attrs["href"]
            assert href.startswith("#") or (tag == "a" and ALLOWED_LINKS.match(href)), href
    sources = [(tag, attrs["src"].split(",")[0]) for tag, attrs in elements if "src" in attrs]
    assert sources == [("img", "data:image/png;base64"), ("audio", "data:audio/wav;base64")] * 2
    policy = next(attrs["content"] for tag, attrs in elements if tag == "meta" and attrs.get("http-equiv"))
    assert "default-src 'none'" in policy
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert [attrs for tag, attrs in elements if tag == "script"] == [{}], "one inline script, allowed by its hash"
    for name in ("Licences", "Credits", "Excluded from training", "Release log", "Summary of the training content"):
        assert name in html
    newest_only = write_report(workspace, "html", tmp_path / "one.html", AuditConfig(max_media=1)).read_text()
    assert newest_only.count("<audio") == 1 and 'id="output-o2"' in newest_only, "media for the newest release only"


def test_html_media_loads_in_headless_chromium(workspace: Workspace, tmp_path: Path) -> None:
    """Chromium opens the page offline; the page's own check marks each spectrogram and player as decoded."""
    assert CHROMIUM, "chromium is missing: `make setup` installs Debian's chromium"
    page = write_report(workspace, "html")
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    elements = _elements(result.stdout)
    images = [attrs for tag, attrs in elements if tag == "img"]
    players = [attrs for tag, attrs in elements if tag == "audio"]
    assert len(images) == 2 and len(players) == 2
    assert all(attrs.get("data-media") == "ok" for attrs in images), [attrs.get("data-media") for attrs in images]
    assert all(attrs.get("data-media") == "ok" for attrs in players), [attrs.get("data-media") for attrs in players]
    assert [float(attrs["data-duration"]) for attrs in players] == pytest.approx([OUTPUT_SECONDS] * 2, abs=0.01)


def test_markdown_escape_and_licence_urls() -> None:
    assert markdown_escape("a|b *c* [x](y) <i>\nnext") == "a\\|b \\*c\\* \\[x\\](y) \\<i\\> next"
    assert markdown_escape(None) == ""
    assert license_url("CC-BY-SA-2.0-UK") == "https://creativecommons.org/licenses/by-sa/2.0/uk/"
    assert license_url("CC0-1.0") == "https://creativecommons.org/publicdomain/zero/1.0/"
    assert license_url("MIT") == "https://spdx.org/licenses/MIT.html"
    assert license_url("LicenseRef-Acme") is None and license_url(None) is None


def test_audit_cli(workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = ["--workspace", workspace.root]
    code, out, err = run_cli(["audit", "model", "m1", "--json", *ws], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert [row["id"] for row in result["assets"]] == ["a1", "a2", "a3", "a4"]
    assert [row["id"] for row in result["outputs"]] == ["o1", "o3"]
    code, out, _ = run_cli(["audit", "asset", "a2", "--json", *ws], capsys)
    assert [row["id"] for row in json.loads(out)["models"]] == ["m1", "m2"]
    code, out, _ = run_cli(["audit", "output", "o2", "--json", *ws], capsys)
    assert [row["id"] for row in json.loads(out)["assets"]] == ["a2"]
    code, _, err = run_cli(["audit", "model", "m1", *ws], capsys)
    assert code == 0 and "a4" in err and "codec" in err
    code, _, err = run_cli(["audit", "asset", "nope", *ws], capsys)
    assert code == 1 and "no asset 'nope'" in err and "Traceback" not in err

    target = tmp_path / "elsewhere" / "audit.md"
    code, out, _ = run_cli(["audit", "report", "--format", "md", "--out", target, "--json", *ws], capsys)
    assert code == 0 and json.loads(out) == {"path": str(target), "format": "md"} and target.is_file()
    code, _, err = run_cli(["audit", "report", *ws], capsys)
    assert code == 0 and str(workspace.root / "reports" / "audit.html") in err
    code, _, _ = run_cli(["audit", "report", "--format", "pdf", *ws], capsys)
    assert code == 2
