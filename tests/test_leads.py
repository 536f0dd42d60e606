"""Leads: codes (hash only, expiry, single use, lockout), email delivery, conversion."""

from __future__ import annotations

import hashlib
import json
import re
import time
from datetime import timedelta

import pytest

from mno import clock
from mno.errors import BadInput, Conflict, InvalidTransition
from mno.store.models.tenancy import Lead
from mno.tenancy import leads, tenants
from tests.conftest import counts

LEAD = {"email": "ann@acme.com", "first_name": "Ann", "last_name": "Lee", "company": "Acme"}


def _create(session, **extra):
    with session() as s:
        created = leads.create(s, **(LEAD | extra))
    return created.lead.id, created.verification_code


def test_code_is_random_hashed_and_single_use(session):
    lead_id, code = _create(session)
    assert code and len(code) >= 22  # 16 random bytes, url-safe base64
    with session(write=False) as s:
        stored = s.get(Lead, lead_id)
        assert stored.code_hash == hashlib.sha256(code.encode()).hexdigest()
        assert code not in str(stored.model_dump())
    with session() as s:
        assert leads.verify(s, str(lead_id), code).status == "verified"
    with pytest.raises(InvalidTransition, match="already verified"), session() as s:
        leads.verify(s, str(lead_id), code)


def test_expiry(session):
    lead_id, code = _create(session)
    clock.set_now(clock.now() + timedelta(hours=24, seconds=1))
    with pytest.raises(InvalidTransition, match="expired"), session() as s:
        leads.verify(s, str(lead_id), code)


def test_profile_sets_ttl(session, mno_env):
    (mno_env / "config.yaml").write_text("profiles:\n  default:\n    leads: {code_ttl: 1h}\n")
    lead_id, code = _create(session)
    clock.set_now(clock.now() + timedelta(minutes=61))
    with pytest.raises(InvalidTransition, match="expired"), session() as s:
        leads.verify(s, str(lead_id), code)


def test_five_wrong_attempts_lock(session):
    lead_id, code = _create(session)
    for attempt in range(1, 5):
        with session() as s:
            _, error = leads.verify_attempt(s, str(lead_id), "wrong")
        assert isinstance(error, BadInput) and f"{5 - attempt} attempt(s) left" in str(error)
    with session() as s:
        lead, error = leads.verify_attempt(s, str(lead_id), "wrong")
    assert isinstance(error, InvalidTransition) and lead.status == "locked"
    with pytest.raises(InvalidTransition, match="locked"), session() as s:
        leads.verify(s, str(lead_id), code)  # even the right code


def test_concurrent_wrong_guesses_cannot_pass_the_lockout(session, store_url):
    """40 wrong guesses at once, each in its own transaction: every one is counted, the
    lead locks at the fifth, and the right code is refused afterwards."""
    import threading

    from mno.store.db import session_scope

    lead_id, code = _create(session)
    barrier = threading.Barrier(40)
    errors: list[Exception | None] = []
    failures: list[BaseException] = []

    def guess() -> None:
        try:
            barrier.wait()
            with session_scope(store_url) as s:
                errors.append(leads.verify_attempt(s, str(lead_id), "wrong")[1])
        except BaseException as exc:  # the thread's failure is asserted below
            failures.append(exc)

    threads = [threading.Thread(target=guess) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    assert sum(isinstance(e, BadInput) for e in errors) == 4  # attempts 1-4
    assert sum(isinstance(e, InvalidTransition) for e in errors) == 36  # the 5th locks
    with session(write=False) as s:
        stored = s.get(Lead, lead_id)
        assert (stored.status, stored.failed_attempts) == ("locked", 5)
    with pytest.raises(InvalidTransition, match="locked"), session() as s:
        leads.verify(s, str(lead_id), code)


def test_duplicate_validated_email_refused(session, store_url):
    lead_id, code = _create(session)
    _create(session)  # a second pending lead with the same email is allowed
    with session() as s:
        leads.verify(s, str(lead_id), code)
    before = counts(store_url)
    with pytest.raises(Conflict), session() as s:
        leads.create(s, **LEAD)
    assert counts(store_url) == before


@pytest.mark.parametrize("email", ["", "nobody", "a@b", "a b@c.com", "x@@y.com", "a..b@c.com"])
def test_invalid_email_writes_nothing(session, store_url, email):
    with session() as s:
        tenants.ensure_system(s)
    before = counts(store_url)
    with pytest.raises(BadInput), session() as s:
        leads.create(s, **(LEAD | {"email": email}))
    assert counts(store_url) == before


def test_convert(session, store_url):
    lead_id, code = _create(session, country="fr", city="Paris")
    with pytest.raises(InvalidTransition, match="verify it first"), session() as s:
        leads.convert(s, str(lead_id), key="acme", domains=["acme.com"])
    with session() as s:
        leads.verify(s, str(lead_id), code)
    before = counts(store_url)
    with pytest.raises(BadInput, match="email domain"), session() as s:
        leads.convert(s, str(lead_id), key="acme", domains=["other.com"])
    assert counts(store_url) == before
    with session() as s:
        tenant = leads.convert(s, str(lead_id), key="acme", domains=["acme.com"])
        assert tenant.status == "pending_provision" and tenant.country == "FR"
        contacts = tenants.list_contacts(s, "acme")
        assert [(c.email, c.primary, c.type) for c in contacts] == [("ann@acme.com", True, "admin")]
    with pytest.raises(InvalidTransition, match="already converted"), session() as s:
        leads.convert(s, str(lead_id), key="acme2", domains=["acme.com"])
    lead2, code2 = _create(session, email="bob@gmail.com")
    with session() as s:
        leads.verify(s, str(lead2), code2)
        t2 = leads.convert(s, str(lead2), key="bobco", domains=["bob.co"], skip_domain_check=True)
        assert t2.key == "bobco"


def test_code_is_emailed_over_smtp(cli, sqlite_url, mno_env, smtp_server):
    port, received = smtp_server
    assert cli("secret", "init-master-key").exit_code == 0  # seals the queued code
    (mno_env / "config.yaml").write_text(
        "profiles:\n  default:\n"
        f"    smtp: {{host: 127.0.0.1, port: {port}, from: hub@example.com}}\n"
    )
    result = cli(
        "lead",
        "create",
        "--email",
        "ann@acme.com",
        "--first-name",
        "Ann",
        "--last-name",
        "Lee",
        "--company",
        "Acme",
        "-o",
        "json",
    )
    assert result.exit_code == 0, result.stderr
    assert "verification_code" not in result.stdout
    assert received == []  # the dispatcher sends it
    assert cli.json("agents", "tick", "dispatcher")["done"] == 1
    for _ in range(50):
        if received:
            break
        time.sleep(0.05)
    assert len(received) == 1
    message = received[0]
    assert message["To"] == "ann@acme.com" and message["From"] == "hub@example.com"
    code = re.search(r"code is: (\S+)", message.get_payload()).group(1)
    lead_id = json.loads(result.stdout)["id"]
    verified = cli.json("lead", "verify", lead_id, "--code", code)
    assert verified["status"] == "verified"


def test_cli_flow_and_exit_codes(cli, sqlite_url):
    created = cli.json(
        "lead",
        "create",
        "--email",
        "ann@acme.com",
        "--first-name",
        "Ann",
        "--last-name",
        "Lee",
        "--company",
        "Acme",
    )
    code = created["verification_code"]
    wrong = cli("lead", "verify", created["id"], "--code", "nope")
    assert wrong.exit_code == 2 and "4 attempt(s) left" in wrong.stderr
    assert cli("lead", "verify", created["id"], "--code", code).exit_code == 0
    tenant = cli.json("lead", "convert", created["id"], "--key", "acme", "--domain", "acme.com")
    assert tenant["status"] == "pending_provision" and tenant["name"] == "Acme"
    assert (
        cli("lead", "convert", created["id"], "--key", "x2", "--domain", "acme.com").exit_code == 1
    )
    assert [row["status"] for row in cli.json("lead", "list")] == ["converted"]
    assert cli("lead", "show", "not-a-uuid").exit_code == 2
