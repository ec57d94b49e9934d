import datetime as dt

from cryptography.hazmat.primitives.asymmetric import ec
from identity_helpers import TD, rsa_key, self_signed
from meshlet.identity.certcheck import Status, check_anchors, check_ca_pem, check_issuer
from meshlet.identity.issuer import cert_pem, new_anchor, new_issuer

NOW = dt.datetime.now(dt.UTC)


def _by_status(results):
    return {r.name: r.status for r in results}


def test_fresh_ca_passes():
    anchor, key = new_anchor(TD, now=NOW)
    issuer, _ = new_issuer(TD, anchor, key, now=NOW)
    results = check_ca_pem(cert_pem(anchor), cert_pem(issuer))
    assert all(r.status is Status.OK for r in results), results
    assert "issuer is signed by the trust anchor" in _by_status(results)


def test_expired_issuer_is_an_error():
    anchor, key = new_anchor(TD, now=NOW)
    issuer, _ = new_issuer(TD, anchor, key, now=NOW - dt.timedelta(days=400))
    statuses = _by_status(check_issuer(issuer, [anchor], now=NOW))
    assert statuses["issuer is valid"] is Status.ERROR


def test_less_than_60_days_is_a_warning():
    anchor, key = new_anchor(TD, now=NOW)
    issuer, _ = new_issuer(TD, anchor, key, lifetime=dt.timedelta(days=30), now=NOW)
    results = check_issuer(issuer, [anchor], now=NOW)
    statuses = _by_status(results)
    assert statuses["issuer is valid"] is Status.OK
    assert statuses["issuer is valid for at least 60 days"] is Status.WARNING
    assert all(r.ok for r in results)


def test_wrong_algorithm():
    anchor = self_signed(ec.generate_private_key(ec.SECP384R1()))
    statuses = _by_status(check_anchors([anchor], now=NOW))
    assert statuses["trust anchor uses a supported algorithm"] is Status.ERROR
    rsa_anchor = self_signed(rsa_key())
    assert _by_status(check_anchors([rsa_anchor], now=NOW))["trust anchor uses a supported algorithm"] is Status.OK
    # An RSA issuer is not allowed.
    rsa_issuer = self_signed(rsa_key(), cn="issuer")
    assert _by_status(check_issuer(rsa_issuer, [rsa_anchor], now=NOW))["issuer uses a supported algorithm"] is Status.ERROR


def test_issuer_not_signed_by_anchor():
    anchor, key = new_anchor(TD, now=NOW)
    other, _ = new_anchor(TD, now=NOW)
    issuer, _ = new_issuer(TD, anchor, key, now=NOW)
    results = check_issuer(issuer, [other], now=NOW)
    bad = [r for r in results if r.status is Status.ERROR]
    assert [r.name for r in bad] == ["issuer is signed by the trust anchor"]
    assert "not signed by any trust anchor" in bad[0].message


def test_not_a_ca_and_garbage():
    leafish = self_signed(ec.generate_private_key(ec.SECP256R1()), ca=False)
    assert _by_status(check_anchors([leafish], now=NOW))["trust anchor is a CA"] is Status.ERROR
    results = check_ca_pem(b"nope", b"nope")
    assert results[0].status is Status.ERROR and "not PEM" in results[0].message
