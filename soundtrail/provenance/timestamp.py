"""RFC 3161 timestamps: a trusted third party's signed word that some bytes existed at a given time.

A checkpoint signed by the operator's own key says what the ledger held, but its ``created_at``
is the operator's word too: a rewritten ledger could be signed afresh with a back-dated time. A
timestamp authority (TSA) countersigns the hash of the checkpoint's signature (as RFC 3161
appendix A does for signatures), so a checkpoint cannot be made later than the token says.

The token kept is the TSA's whole ``TimeStampResp`` (DER), read and checked with Trail of Bits'
``rfc3161-client``. Checking has two halves, kept apart like the C2PA credentials' integrity
and trust: the token's message imprint must be the hash of the stamped bytes (always checked),
and the token's signature must chain to a TSA root the reader trusts (checked when roots are
given; a token from an unknown TSA proves nothing about time).
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

GRANTED = (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS)


class TimestampError(RuntimeError):
    """The timestamp authority could not be reached or answered with something unusable."""


@dataclass(frozen=True)
class Timestamp:
    """A TSA's token over some bytes: who issued it, the time it states, and the DER ``TimeStampResp``."""

    authority: str
    time: str
    token: bytes


@dataclass(frozen=True)
class TimestampCheck:
    """What a token proves: ``problem`` when it does not match the bytes or does not verify."""

    time: str | None
    trusted: bool
    problem: str | None = None


def request_timestamp(url: str, message: bytes, timeout_s: float = 30.0) -> Timestamp:
    """Ask the TSA at ``url`` to stamp ``message`` (its SHA-256, with a nonce); check the answer before keeping it."""
    request = TimestampRequestBuilder().data(message).hash_algorithm(HashAlgorithm.SHA256).build()
    http = urllib.request.Request(url, data=request.as_bytes(), method="POST",
                                  headers={"Content-Type": "application/timestamp-query",
                                           "Accept": "application/timestamp-reply"})
    try:
        with urllib.request.urlopen(http, timeout=timeout_s) as answer:  # noqa: S310 - the configured TSA URL
            body = answer.read()
    except (urllib.error.URLError, OSError) as exc:
        raise TimestampError(f"timestamp authority {url} did not answer: {exc}") from exc
    try:
        response = decode_timestamp_response(body)
    except ValueError as exc:
        raise TimestampError(f"timestamp authority {url} answered with no RFC 3161 response: {exc}") from exc
    if response.status not in GRANTED:
        raise TimestampError(f"timestamp authority {url} refused: status {response.status} "
                             f"{' '.join(response.status_string)}".rstrip())
    if response.tst_info.nonce != request.nonce:
        raise TimestampError(f"timestamp authority {url} answered another request (nonce differs)")
    if response.tst_info.message_imprint.message != hashlib.sha256(message).digest():
        raise TimestampError(f"timestamp authority {url} stamped other bytes than those sent")
    return Timestamp(url, response.tst_info.gen_time.isoformat(), response.as_bytes())


def check_timestamp(token: bytes, message: bytes, roots: Sequence[x509.Certificate] | None) -> TimestampCheck:
    """Does ``token`` stamp ``message``, and (with ``roots``) was it signed by a TSA chaining to one of them?"""
    try:
        response = decode_timestamp_response(token)
    except ValueError as exc:
        return TimestampCheck(None, False, f"the timestamp token is not an RFC 3161 response: {exc}")
    time = response.tst_info.gen_time.isoformat()
    imprint = response.tst_info.message_imprint
    if imprint.message != _digest(imprint.hash_algorithm.dotted_string, message):
        return TimestampCheck(time, False, "the timestamp token stamps other bytes than this checkpoint's signature")
    if not roots:
        return TimestampCheck(time, False)
    try:
        VerifierBuilder(roots=list(roots)).build().verify_message(response, message)
    except VerificationError as exc:
        return TimestampCheck(time, False, f"the timestamp token does not verify against the trusted TSA roots: {exc}")
    return TimestampCheck(time, True)


def load_roots(path: Path) -> list[x509.Certificate]:
    """The TSA root certificates in a PEM file (one or several)."""
    try:
        return x509.load_pem_x509_certificates(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise TimestampError(f"{path}: cannot read TSA root certificates: {exc}") from exc


def _digest(oid: str, message: bytes) -> bytes | None:
    names = {"2.16.840.1.101.3.4.2.1": "sha256", "2.16.840.1.101.3.4.2.2": "sha384",
             "2.16.840.1.101.3.4.2.3": "sha512"}
    return hashlib.new(names[oid], message).digest() if oid in names else None
