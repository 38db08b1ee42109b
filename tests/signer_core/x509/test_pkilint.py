"""Lint every profile's output with pkilint (PyPI environment only).

RFC 5280 (pkilint.pkix): no finding at WARNING or above, for every profile,
subject key type and root. CA/B Forum linters where they apply (TLS server
profiles 5-7, S/MIME profiles 0-2): the built-in profiles reproduce the
deployed CA, which predates those Baseline Requirements, so their ERRORs
must be exactly the documented deviations below; the same profiles,
configured with the CA/B reserved policy OIDs, must lint without ERROR.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from signer_core.x509.issue import (
    SignRequest,
    new_serial,
    plan_certificate,
    sign_certificate,
)
from tests.support.x509 import NOW, World, csr_pem

pytest.importorskip("pkilint")
from pkilint import finding_filter, loader
from pkilint.cabf import serverauth, smime
from pkilint.pkix import certificate, extension, name
from pkilint.validation import ValidationFindingSeverity as Sev

# Deviations of the built-in profiles from the CA/B Forum requirements: the
# deployed CA's profiles.md is followed, the operator may add the reserved
# OIDs (x509.profiles.N.policy_oids), and some cannot be met by design.
KNOWN_CABF_ERRORS = {
    # no CA/B reserved policy OID unless configured
    "cabf.serverauth.subscriber_missing_reserved_policy_oid",
    "cabf.smime.no_required_reserved_policy_oid",
    # without a reserved OID pkilint assumes DV, which forbids O and C (profile 6)
    "cabf.serverauth.dv.unknown_attribute_present",
    # the XMPP otherName of profile 7 is not allowed in TLS BR certificates
    "cabf.serverauth.prohibited_san_type",
    # without a reserved OID pkilint assumes the legacy S/MIME generation
    "cabf.smime.legacy_generation_certificate_issued_after_prohibition",
    # the web side puts a person's name in CN, without givenName/surname
    "cabf.smime.common_name_value_unknown_source",
    "cabf.smime.missing_required_attribute",
    # profile 2 (code signing) carries codeSigning next to emailProtection
    "cabf.smime.prohibited_eku_present",
}
SERVER_P2 = {
    5: b"DNS:www.example.org,DNS:example.org",
    6: b"DNS:example.org",
    7: b"DNS:example.org,otherName:1.3.6.1.5.5.7.8.5;UTF8:example.org",
}
CABF_CONFIG = """[x509.profiles.5]
policy_oids = ["2.23.140.1.2.1"]
[x509.profiles.6]
policy_oids = ["2.23.140.1.2.2"]
[x509.profiles.0]
policy_oids = ["2.23.140.1.5.1.2"]
"""


@pytest.fixture(scope="module")
def cabf_world(tmp_path_factory):
    return World(tmp_path_factory.mktemp("x509lintcabf"), extra_toml=CABF_CONFIG)


def issue(world, root, profile, key, payload2, payload3, days=180):
    req = SignRequest(root, profile, 0, days, False, csr_pem(key), payload2, payload3)
    cert = sign_certificate(plan_certificate(world.cfg, world.store, req, NOW), new_serial())
    der = cert.public_bytes(serialization.Encoding.DER)
    return loader.RFC5280CertificateDocumentLoader().load_der_document(der, "issued")


def findings(results, worst: Sev) -> set[str]:
    return {
        f"{fd.finding.severity.name} {fd.finding.code}"
        for r in results
        for fd in r.finding_descriptions
        if fd.finding.severity <= worst
    }


def pkix_findings(doc) -> set[str]:
    validator = certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(
            name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS
        ),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )
    return findings(validator.validate(doc.root), Sev.WARNING)


def serverauth_findings(doc) -> set[str]:
    kind = serverauth.determine_certificate_type(doc)
    validator = certificate.create_pkix_certificate_validator_container(
        serverauth.create_decoding_validators(), serverauth.create_validators(kind)
    )
    results, _ = finding_filter.filter_results(
        serverauth.create_serverauth_finding_filters(kind), validator.validate(doc.root)
    )
    return findings(results, Sev.WARNING)


def smime_findings(doc) -> set[str]:
    level_gen = smime.determine_validation_level_and_generation(doc)
    if level_gen is None:
        level_gen = smime.guess_validation_level_and_generation(doc)
    validator = certificate.create_pkix_certificate_validator_container(
        smime.create_decoding_validators(), smime.create_subscriber_validators(*level_gen)
    )
    return findings(validator.validate(doc.root), Sev.WARNING)


def errors(found: set[str]) -> set[str]:
    return {f.split(" ", 1)[1] for f in found if f.startswith(("ERROR", "FATAL"))}


@pytest.mark.parametrize("profile", range(12))
@pytest.mark.parametrize("root", [0, 1])
def test_rfc5280_lint(world, root, profile):
    p2 = {11: b"", 0: b"", 1: b"", 2: b"", 4: b""}.get(
        profile, SERVER_P2.get(profile, b"DNS:h.example.org")
    )
    for key in (world.rsa_key, world.ec_key):
        subject = (
            b"/CN=Sub CA" if profile == 11 else b"/CN=Alice Example/emailAddress=alice@example.org"
        )
        if profile in SERVER_P2:  # a server's commonName is among its SANs
            subject = b"/CN=example.org/emailAddress=alice@example.org"
        doc = issue(world, root, profile, key, p2, subject)
        assert pkix_findings(doc) == set()


@pytest.mark.parametrize("profile", [5, 6, 7])
def test_cabf_serverauth_builtin(world, profile):
    subject = b"/C=DE/O=Example Org/CN=example.org" if profile == 6 else b"/CN=example.org"
    for key in (world.rsa_key, world.ec_key):
        found = serverauth_findings(issue(world, 0, profile, key, SERVER_P2[profile], subject))
        assert errors(found) <= KNOWN_CABF_ERRORS, found


@pytest.mark.parametrize("profile", [0, 1, 2])
def test_cabf_smime_builtin(world, profile):
    subject = b"/CN=Alice Example/emailAddress=alice@example.org"
    if profile == 1:
        subject = b"/C=DE/O=Example Org" + subject
    for key in (world.rsa_key, world.ec_key):
        found = smime_findings(issue(world, 1, profile, key, b"", subject))
        assert errors(found) <= KNOWN_CABF_ERRORS, found


def test_cabf_configured_profiles_lint_clean(cabf_world):
    w = cabf_world
    for key in (w.rsa_key, w.ec_key):
        dv = issue(w, 0, 5, key, b"DNS:www.example.org", b"/CN=www.example.org")
        assert errors(serverauth_findings(dv)) == set()
        ov = issue(
            w,
            1,
            6,
            key,
            b"DNS:www.example.org",
            b"/C=DE/ST=Berlin/L=Berlin/O=Example Org/CN=www.example.org",
        )
        assert errors(serverauth_findings(ov)) == set()
        mail = issue(w, 1, 0, key, b"", b"/CN=alice@example.org/emailAddress=alice@example.org")
        assert errors(smime_findings(mail)) == set()
