"""Content credentials (C2PA) for released audio: who made it, with which model, from which data.

A released WAV carries a signed C2PA manifest embedded in a ``C2PA`` RIFF chunk::

    c2pa.actions            c2pa.created, digitalSourceType = IPTC trainedAlgorithmicMedia,
                            softwareAgent soundtrail, the model id; c2pa.watermarked.bound when
                            the audio carries a watermark that names this manifest's output
    org.soundtrail.training model_id, output_id, sha256 of the canonical JSON of the
                            training-data licence summary (the ledger can recompute it)
    c2pa.soft-binding       the watermark: alg (its name and version), one block over the whole
                            clip (scope.timespan in ms) whose value is the payload
    c2pa.ingredient.v3      for a model fine-tuned from a pretrained base model: that model, as C2PA
                            names the models behind generated media (relationship inputTo, data type
                            c2pa.types.model), with its licence and its publisher's training-data statement
    c2pa.hash.data          (added by the SDK) hash of every byte outside the manifest

The soft binding is what lets credentials and mark find each other: stripped of its manifest, a
file's watermark still names the output (and through the ledger its manifest); a file whose mark
and manifest disagree was tampered with or re-marked.

Validation has two independent halves, and :class:`CredentialReport` keeps them apart:

* **integrity**: the claim signature verifies, every assertion's hashed URI matches, and the
  data hash matches the audio bytes. Any change to the audio after signing breaks it
  (``assertion.dataHash.mismatch``).
* **trust**: the signing certificate chains to an anchor the reader trusts. The local demo CA
  made by :func:`ensure_signing_identity` is in no public trust list, so a default reader lists
  ``signingCredential.untrusted`` among the failures of an intact file while c2pa's overall
  state stays ``Valid`` (well formed, intact); a broken file is ``Invalid``. Reading with
  ``trust_anchors=`` the local CA (or signing with a certificate from a CA on the C2PA trust
  list, in production) makes the state ``Trusted``.

So ``validation_ok`` means "intact and correctly signed"; ``trusted`` means "and by someone the
reader trusts". Release checks want the first; publishing wants both.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from soundtrail.atomic import atomic_path, atomic_write_bytes, sha256_file
from soundtrail.provenance.ledger import canonical_json

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
TRAINING_ASSERTION = "org.soundtrail.training"
SOFT_BINDING_ASSERTION = "c2pa.soft-binding"
WATERMARKED_ACTION = "c2pa.watermarked.bound"  # C2PA 2.2: a watermark that binds to this manifest was added
DEMO_SIGNER = "soundtrail local signer"  # the common name of every workspace's demo signing certificate
WAV_MIME = "audio/wav"
# id-kp-documentSigning (RFC 9336), named by the C2PA 2.x trust model. c2pa-rs 0.91's default EKU
# list still requires emailProtection, so the demo certificate carries both.
DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
# Failure codes that concern who signed, not whether the file is intact.
TRUST_CODES = frozenset({"signingCredential.untrusted", "timeStamp.untrusted"})

CA_CERT = "ca.pem"
SIGNER_KEY = "signer-key.pem"
SIGNER_CHAIN = "signer-chain.pem"  # written last: its presence marks a complete identity
CA_YEARS = 10
SIGNER_YEARS = 3


class CredentialError(RuntimeError):
    """Credentials could not be made or read; the message says which file and why."""


@dataclass(frozen=True)
class SigningIdentity:
    """A certificate chain (end entity first) and its private key, both PEM files.

    ``trust_anchor`` is the root to trust when reading back locally made credentials; it is
    None for a production chain whose root is on a public trust list.
    """

    cert_chain_pem_path: Path
    key_pem_path: Path
    alg: str = "es256"
    trust_anchor: Path | None = None
    tsa_url: str | None = None


@dataclass(frozen=True)
class SoftBinding:
    """A watermark as a manifest declares it: the algorithm's name and the payload over the whole clip."""

    alg: str
    value: str  # the payload as the algorithm writes it
    duration_ms: int
    name: str | None = None
    alg_params: str | None = None

    def assertion(self) -> dict[str, Any]:
        """The ``c2pa.soft-binding`` assertion data (C2PA soft-binding-map: alg, blocks, name, alg_params, pad)."""
        data: dict[str, Any] = {"alg": self.alg, "pad": [],
                                "blocks": [{"scope": {"timespan": {"start": 0, "end": self.duration_ms}},
                                            "value": self.value}]}
        data.update({key: value for key, value in (("name", self.name), ("alg_params", self.alg_params)) if value})
        return data

    @classmethod
    def from_assertion(cls, data: Mapping[str, Any]) -> SoftBinding | None:
        """The first block of a read-back assertion; None when it names no algorithm or holds no block."""
        blocks = data.get("blocks") or []
        if not data.get("alg") or not blocks or not isinstance(blocks[0], Mapping):
            return None
        span = (blocks[0].get("scope") or {}).get("timespan") or {}
        return cls(str(data["alg"]), str(blocks[0].get("value", "")), int(span.get("end", 0)), data.get("name"),
                   data.get("alg_params"))


@dataclass(frozen=True)
class CredentialRecord:
    """What the ledger keeps about one signing: enough to find and re-verify the file."""

    manifest_label: str
    signed_sha256: str  # the signed WAV as written, manifest included
    manifest_sha256: str  # the embedded manifest store (JUMBF) bytes
    model_id: str
    output_id: str
    training_digest: str
    alg: str
    signer: str  # the signing certificate's common name

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CredentialReport:
    """A manifest read back, with integrity and trust judged separately (see the module doc)."""

    manifest: dict[str, Any]
    manifest_label: str
    validation_state: str  # c2pa's own verdict: Invalid, Valid or Trusted
    validation_ok: bool  # no integrity failure
    trusted: bool
    validation_errors: list[dict[str, Any]] = field(default_factory=list)
    trust_errors: list[dict[str, Any]] = field(default_factory=list)
    model_id: str | None = None
    output_id: str | None = None
    training_digest: str | None = None
    digital_source_type: str | None = None
    soft_binding: SoftBinding | None = None
    signer: str | None = None  # the signing certificate's common name
    issuer: str | None = None  # its issuer's organisation, as c2pa reports it

    @property
    def demo_signer(self) -> bool:
        """Signed by a soundtrail workspace's local demo CA: valid, but trusted nowhere else."""
        return self.signer == DEMO_SIGNER

    def assertion(self, label: str) -> dict[str, Any] | None:
        """The data of the first assertion with ``label`` (``c2pa.actions`` also finds ``.v2``)."""
        return _assertion(self.manifest, label)


def training_digest(license_summary: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, compact, UTF-8) of a training licence summary.

    The ledger's own canonical form, so an auditor recomputes the digest from the ledger's
    summary of a model's training data and compares it with the one in the credentials.
    """
    return hashlib.sha256(canonical_json(dict(license_summary)).encode("utf-8")).hexdigest()


def ensure_signing_identity(directory: Path, *, sign_cert: Path | None = None,
                            sign_key: Path | None = None) -> SigningIdentity:
    """The identity to sign with: the user's own chain and key when given, else a local demo CA.

    The demo identity is made once in ``directory`` and reused while its certificate is valid,
    so every output of a workspace is signed by the same signer. The private key file is
    created owner-readable only.
    """
    if sign_cert or sign_key:
        if not (sign_cert and sign_key):
            raise CredentialError("credentials: sign_cert and sign_key must be given together")
        return _user_identity(Path(sign_cert), Path(sign_key))
    directory = Path(directory)
    chain_path = directory / SIGNER_CHAIN
    now = dt.datetime.now(dt.UTC)
    if not (chain_path.exists() and _signer_current(chain_path, now)):
        _issue_demo_identity(directory, now)
    return SigningIdentity(chain_path, directory / SIGNER_KEY, "es256", trust_anchor=directory / CA_CERT)


def sign_wav(in_path: Path, out_path: Path, identity: SigningIdentity, *, model_id: str,
             training_license_summary: Mapping[str, Any], output_id: str, title: str | None = None,
             soft_binding: SoftBinding | None = None) -> CredentialRecord:
    """Write ``out_path``: ``in_path`` with an embedded, signed manifest (atomically; in place is fine).

    ``soft_binding`` declares the watermark ``in_path`` already carries.
    """
    digest = training_digest(training_license_summary)
    manifest = _manifest(title or Path(out_path).name, model_id, output_id, digest, soft_binding,
                         training_license_summary.get("base_model"))
    signer = _signer(identity)
    context = _context()
    try:
        with atomic_path(out_path) as tmp:
            with c2pa.Builder(manifest, context=context) as builder, \
                    open(in_path, "rb") as source, open(tmp, "w+b") as dest:
                manifest_bytes = builder.sign(signer, WAV_MIME, source, dest)
            label, signer_name = _label_and_signer(tmp)
            signed_sha256 = sha256_file(tmp)
    except c2pa.C2paError as exc:
        raise CredentialError(f"{in_path}: signing failed: {exc}") from exc
    finally:
        signer.close()
        context.close()
    return CredentialRecord(
        manifest_label=label, signed_sha256=signed_sha256,
        manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(), model_id=model_id,
        output_id=output_id, training_digest=digest, alg=identity.alg, signer=signer_name)


def read_credentials(path: Path, *, trust_anchors: Path | None = None) -> CredentialReport:
    """Read and validate the credentials embedded in ``path``.

    ``trust_anchors`` (PEM roots) are added to the reader's trust list; pass the identity's
    ``trust_anchor`` to have locally signed files come out ``Trusted``. Raises
    :class:`CredentialError` when the file has no credentials or they cannot be parsed.
    """
    anchors = Path(trust_anchors).read_text() if trust_anchors else None
    context = _context(anchors)
    try:
        reader = c2pa.Reader.try_create(str(path), context=context)
        if reader is None:
            raise CredentialError(f"{path}: no content credentials")
        with reader:
            store = json.loads(reader.json())
    except c2pa.C2paError as exc:
        raise CredentialError(f"{path}: unreadable content credentials: {exc}") from exc
    finally:
        context.close()
    label = store["active_manifest"]
    manifest = store["manifests"][label]
    failures = (store.get("validation_results") or {}).get("activeManifest", {}).get("failure", [])
    state = store.get("validation_state", "Invalid")
    training = _assertion(manifest, TRAINING_ASSERTION) or {}
    actions = (_assertion(manifest, "c2pa.actions") or {}).get("actions", [])
    created = next((action for action in actions if action.get("action") == "c2pa.created"), {})
    integrity = [item for item in failures if item.get("code") not in TRUST_CODES]
    binding = _assertion(manifest, SOFT_BINDING_ASSERTION)
    signature = manifest.get("signature_info") or {}
    return CredentialReport(
        manifest=manifest, manifest_label=label, validation_state=state,
        validation_ok=not integrity and state != "Invalid", trusted=state == "Trusted", validation_errors=integrity,
        trust_errors=[item for item in failures if item.get("code") in TRUST_CODES],
        model_id=training.get("model_id"), output_id=training.get("output_id"),
        training_digest=training.get("training_digest"), digital_source_type=created.get("digitalSourceType"),
        soft_binding=SoftBinding.from_assertion(binding) if binding else None,
        signer=signature.get("common_name"), issuer=signature.get("issuer"))


def _assertion(manifest: Mapping[str, Any], label: str) -> dict[str, Any] | None:
    for item in manifest.get("assertions", []):
        if item.get("label") in (label, f"{label}.v2"):
            return item.get("data")
    return None


def _manifest(title: str, model_id: str, output_id: str, digest: str,
              soft_binding: SoftBinding | None, base_model: Mapping[str, Any] | None = None) -> dict[str, Any]:
    agent = {"name": "soundtrail", "version": importlib.metadata.version("soundtrail")}
    actions: list[dict[str, Any]] = [{
        "action": "c2pa.created",
        "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
        "softwareAgent": agent,
        "description": f"generated by soundtrail model {model_id}",
        "parameters": {"model_id": model_id},
    }]
    assertions: list[dict[str, Any]] = [
        {"label": "c2pa.actions", "data": {"actions": actions}},
        {"label": TRAINING_ASSERTION, "data": {
            "model_id": model_id,
            "output_id": output_id,
            "training_digest": digest,
            "training_digest_alg": "sha256 of canonical JSON (sorted keys, compact separators, UTF-8)",
        }},
    ]
    if soft_binding is not None:
        actions.append({"action": WATERMARKED_ACTION, "softwareAgent": agent,
                        "description": f"watermark {soft_binding.alg} carrying {soft_binding.value}"})
        assertions.append({"label": SOFT_BINDING_ASSERTION, "data": soft_binding.assertion()})
    manifest: dict[str, Any] = {
        "claim_generator_info": [agent],
        "title": title,
        "format": WAV_MIME,
        "assertions": assertions,
    }
    if base_model:
        manifest["ingredients"] = [base_model_ingredient(base_model)]
    return manifest


def base_model_ingredient(base_model: Mapping[str, Any]) -> dict[str, Any]:
    """The pretrained model a generator was fine-tuned from, as a C2PA ingredient that was input to the output."""
    return {
        "title": base_model["name"],
        "format": "application/octet-stream",
        "relationship": "inputTo",
        "instance_id": f"soundtrail:base-model:{base_model['id']}",
        "data_types": [{"type": "c2pa.types.model"}, {"type": "c2pa.types.generator"}],
        "description": f"pretrained base model {base_model['name']} ({base_model['id']}), licence "
                       f"{base_model.get('license') or 'NOASSERTION'}; trained on: {base_model.get('training_data')}",
    }


def _context(trust_anchors_pem: str | None = None) -> c2pa.Context:
    """Offline settings: embedded manifests only, no OCSP or remote manifest fetches."""
    settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
    if trust_anchors_pem:
        settings["trust"] = {"user_anchors": trust_anchors_pem}
    return c2pa.Context.from_dict(settings)


def _signer(identity: SigningIdentity) -> c2pa.Signer:
    info = c2pa.C2paSignerInfo(identity.alg.encode(), identity.cert_chain_pem_path.read_bytes(),
                               identity.key_pem_path.read_bytes(), identity.tsa_url)
    try:
        return c2pa.Signer.from_info(info)
    except c2pa.C2paError as exc:
        raise CredentialError(f"{identity.cert_chain_pem_path}: not a usable signing identity: {exc}") from exc


def _label_and_signer(signed: Path) -> tuple[str, str]:
    """Read the just-signed file back: its manifest label and the signer's common name."""
    with _context() as context, open(signed, "rb") as stream, \
            c2pa.Reader(WAV_MIME, stream, context=context) as reader:
        manifest = reader.get_active_manifest() or {}
    return manifest["label"], manifest.get("signature_info", {}).get("common_name", "")


def _user_identity(cert_path: Path, key_path: Path) -> SigningIdentity:
    """Check a user's chain and key belong together and pick the C2PA algorithm from the key."""
    for path in (cert_path, key_path):
        if not path.is_file():
            raise CredentialError(f"credentials: {path} does not exist")
    try:
        leaf = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except ValueError as exc:
        raise CredentialError(f"credentials: {cert_path} / {key_path}: not PEM certificate and key: {exc}") from exc
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if (leaf.public_key().public_bytes(serialization.Encoding.DER, public)
            != key.public_key().public_bytes(serialization.Encoding.DER, public)):
        raise CredentialError(f"credentials: {key_path} is not the key of the first certificate in {cert_path}")
    return SigningIdentity(cert_path, key_path, _alg_for(key))


def _alg_for(key: Any) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        curves = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name in curves:
            return curves[key.curve.name]
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    elif isinstance(key, rsa.RSAPrivateKey):
        return "ps256"  # C2PA allows RSA only with PSS padding
    raise CredentialError(f"credentials: {type(key).__name__} keys cannot sign C2PA manifests")


def _signer_current(chain_path: Path, now: dt.datetime) -> bool:
    leaf = x509.load_pem_x509_certificates(chain_path.read_bytes())[0]
    return leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc - dt.timedelta(days=1)


def _issue_demo_identity(directory: Path, now: dt.datetime) -> None:
    """A root CA and an end-entity signing certificate meeting C2PA's certificate profile.

    The CA key is never written: nothing else can be issued under this root, and a fresh
    identity is simply made again when the signer expires.
    """
    ca_key = ec.generate_private_key(ec.SECP256R1())
    signer_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("soundtrail local root CA")
    ca = (_certificate(ca_name, ca_name, ca_key.public_key(), now, CA_YEARS)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (_certificate(_name(DEMO_SIGNER), ca_name, signer_key.public_key(), now, SIGNER_YEARS)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, DOCUMENT_SIGNING]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    atomic_write_bytes(directory / CA_CERT, ca.public_bytes(pem))
    atomic_write_bytes(directory / SIGNER_KEY, signer_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), mode=0o600)
    atomic_write_bytes(directory / SIGNER_CHAIN, leaf.public_bytes(pem))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "soundtrail"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: x509.Name, issuer: x509.Name, public_key: Any, now: dt.datetime,
                 years: int) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365 * years)))


def _key_usage(*, digital_signature: bool = False, key_cert_sign: bool = False,
               crl_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=digital_signature, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=key_cert_sign,
                         crl_sign=crl_sign, encipher_only=False, decipher_only=False)
