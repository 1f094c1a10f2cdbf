"""Content credentials: a C2PA-conformant local signer, manifests that read back, tampering detected."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from soundtrail.atomic import sha256_file
from soundtrail.provenance import credentials as cc

SUMMARY = {"licenses": {"CC0-1.0": 3, "CC-BY-4.0": 2}, "assets": ["a1", "a2", "a3", "a4", "a5"], "shards": "set-1"}


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> cc.SigningIdentity:
    return cc.ensure_signing_identity(tmp_path_factory.mktemp("keys"))


@pytest.fixture()
def wav(tmp_path: Path) -> Path:
    path = tmp_path / "clip.wav"
    audio = 0.2 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000).astype(np.float32)
    sf.write(path, audio, 16000, subtype="PCM_16")
    return path


def _sign(src: Path, dst: Path, identity: cc.SigningIdentity) -> cc.CredentialRecord:
    return cc.sign_wav(src, dst, identity, model_id="ar-0001", training_license_summary=SUMMARY,
                       output_id="out-0001", title="demo clip")


def _data_chunk_offset(data: bytes) -> int:
    """Byte offset of the first sample of the RIFF ``data`` chunk."""
    pos = 12
    while pos < len(data):
        chunk_id, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if chunk_id == b"data":
            return pos + 8
        pos += 8 + size + (size & 1)
    raise AssertionError("no data chunk")


def test_demo_identity_meets_the_c2pa_certificate_profile(identity: cc.SigningIdentity) -> None:
    leaf = x509.load_pem_x509_certificates(identity.cert_chain_pem_path.read_bytes())[0]
    ca = x509.load_pem_x509_certificate(identity.trust_anchor.read_bytes())
    leaf.verify_directly_issued_by(ca)
    assert identity.alg == "es256"

    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    ekus = set(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert {ExtendedKeyUsageOID.EMAIL_PROTECTION, cc.DOCUMENT_SIGNING} <= ekus
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert aki == ca_ski
    assert leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)

    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert identity.key_pem_path.stat().st_mode & 0o077 == 0, "private key readable by others"


def test_identity_is_made_once_and_remade_when_expired(tmp_path: Path) -> None:
    first = cc.ensure_signing_identity(tmp_path)
    chain = first.cert_chain_pem_path.read_bytes()
    again = cc.ensure_signing_identity(tmp_path)
    assert again == first and again.cert_chain_pem_path.read_bytes() == chain

    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=365 * (cc.SIGNER_YEARS + 1))
    cc._issue_demo_identity(tmp_path, long_ago)
    renewed = cc.ensure_signing_identity(tmp_path)
    leaf = x509.load_pem_x509_certificates(renewed.cert_chain_pem_path.read_bytes())[0]
    assert leaf.not_valid_after_utc > dt.datetime.now(dt.UTC)


def test_user_supplied_chain_and_key_are_checked(identity: cc.SigningIdentity, tmp_path: Path) -> None:
    own = cc.ensure_signing_identity(tmp_path / "unused", sign_cert=identity.cert_chain_pem_path,
                                     sign_key=identity.key_pem_path)
    assert (own.cert_chain_pem_path, own.key_pem_path, own.alg, own.trust_anchor) == (
        identity.cert_chain_pem_path, identity.key_pem_path, "es256", None)
    assert not (tmp_path / "unused").exists(), "no demo CA is made when the user brings one"

    other = cc.ensure_signing_identity(tmp_path / "other")
    with pytest.raises(cc.CredentialError, match="not the key"):
        cc.ensure_signing_identity(tmp_path, sign_cert=identity.cert_chain_pem_path, sign_key=other.key_pem_path)
    with pytest.raises(cc.CredentialError, match="together"):
        cc.ensure_signing_identity(tmp_path, sign_cert=identity.cert_chain_pem_path)


def test_signed_wav_reads_back_with_its_assertions(identity: cc.SigningIdentity, wav: Path, tmp_path: Path) -> None:
    out = tmp_path / "released" / "clip.wav"
    record = _sign(wav, out, identity)

    assert record.signed_sha256 == sha256_file(out)
    assert record.manifest_label.startswith("urn:c2pa:")
    assert record.signer == "soundtrail local signer"
    expected_digest = hashlib.sha256(
        json.dumps(SUMMARY, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert record.training_digest == expected_digest
    json.dumps(record.as_dict())  # the ledger stores it as JSON

    original, _ = sf.read(wav, dtype="int16")
    signed, _ = sf.read(out, dtype="int16")
    np.testing.assert_array_equal(signed, original)  # credentials never touch the samples
    assert [p.name for p in out.parent.iterdir()] == ["clip.wav"], "temporary file left behind"

    report = cc.read_credentials(out)
    assert report.manifest_label == record.manifest_label
    assert report.manifest["title"] == "demo clip"
    assert report.digital_source_type == cc.TRAINED_ALGORITHMIC_MEDIA
    assert report.assertion("c2pa.actions")["actions"][0]["action"] == "c2pa.created"
    assert (report.model_id, report.output_id, report.training_digest) == ("ar-0001", "out-0001", expected_digest)
    # Intact and correctly signed; the local CA is simply not on the reader's trust list.
    assert report.validation_ok and report.validation_errors == []
    assert report.validation_state == "Valid" and not report.trusted
    assert [error["code"] for error in report.trust_errors] == ["signingCredential.untrusted"]

    trusted = cc.read_credentials(out, trust_anchors=identity.trust_anchor)
    assert trusted.trusted and trusted.validation_state == "Trusted" and trusted.trust_errors == []


def test_changing_one_audio_byte_breaks_validation(identity: cc.SigningIdentity, wav: Path, tmp_path: Path) -> None:
    out = tmp_path / "clip.wav"
    _sign(wav, out, identity)
    data = bytearray(out.read_bytes())
    data[_data_chunk_offset(data) + 1001] ^= 0x40
    out.write_bytes(bytes(data))

    report = cc.read_credentials(out, trust_anchors=identity.trust_anchor)
    assert not report.validation_ok and report.validation_state == "Invalid" and not report.trusted
    assert "assertion.dataHash.mismatch" in {error["code"] for error in report.validation_errors}


def test_in_place_signing_and_unsigned_files(identity: cc.SigningIdentity, wav: Path) -> None:
    with pytest.raises(cc.CredentialError, match="no content credentials"):
        cc.read_credentials(wav)
    record = _sign(wav, wav, identity)
    assert cc.read_credentials(wav).manifest_label == record.manifest_label


def test_training_digest_ignores_key_order() -> None:
    reordered = dict(reversed(list(SUMMARY.items())))
    assert cc.training_digest(reordered) == cc.training_digest(SUMMARY)
    assert cc.training_digest({**SUMMARY, "shards": "set-2"}) != cc.training_digest(SUMMARY)
