"""Sign-in rules on SQLite and PostgreSQL: argon2id hashes, rehash, lockout, TOTP with
replay refused, the launcher's access rules, invitations, and no secret in clear."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import inspect, text
from sqlmodel import select

from mno import clock
from mno.access import invites, teams, users
from mno.errors import BadInput, Conflict, Forbidden
from mno.sso import launcher, mfa, passwords, sessions, signin
from mno.store.models.core import AuditEntry, Event
from mno.store.models.signin import UserCredential
from tests.sso.signin_support import PASSWORD, estate, light_argon2, person

# an /authorize URL as an OpenID Connect provider sends it: long, with an encoded URI
AUTHORIZE = "/authorize?response_type=code&client_id=crm&redirect_uri=" + (
    "https%3A%2F%2Fcrm.example.com%2Foidc%2Fcallback&scope=openid%20profile%20email&state="
    + "s" * 300
    + "&nonce="
    + "n" * 300
    + "&code_challenge_method=S256&code_challenge="
    + "c" * 43
)


@pytest.fixture(autouse=True)
def _light(mno_env):
    light_argon2(mno_env)


def _cred(s, email="ada@example.com"):
    return passwords.credential(s, users.get(s, email))


def test_password_is_an_argon2id_hash_and_checks(session):
    with session() as s:
        person(s)
    with session(write=False) as s:
        row = _cred(s)
        assert row.password_hash.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
        assert PASSWORD not in row.password_hash
    with session() as s:
        assert passwords.verify_user(s, "ada@example.com", PASSWORD).ok
        assert passwords.verify_user(s, "ADA@example.com ", PASSWORD).ok
        assert not passwords.verify_user(s, "ada@example.com", PASSWORD + "x").ok
        assert not passwords.verify_user(s, "nobody@example.com", PASSWORD).ok
    with session() as s, pytest.raises(BadInput, match="at least 10"):
        passwords.set_password(s, "ada@example.com", "short")


def test_rehash_on_sign_in_when_parameters_change(session, mno_env):
    with session() as s:
        person(s)
    light = (mno_env / "config.yaml").read_text()
    (mno_env / "config.yaml").write_text(light.replace("time_cost: 1", "time_cost: 2"))
    with session() as s:
        assert signin.sign_in(s, "ada@example.com", PASSWORD).status == "signed_in"
    with session(write=False) as s:
        assert _cred(s).password_hash.startswith("$argon2id$v=19$m=8192,t=2,p=1$")
        actions = [a.action for a in s.exec(select(AuditEntry)).all()]
        assert "user.password_rehash" in actions


def test_same_answer_for_unknown_user_wrong_password_and_disabled(session):
    with session() as s:
        person(s)
        person(s, "bob@example.com")
        users.set_status(s, "bob@example.com", "disabled")
    with session() as s:
        answers = [
            signin.sign_in(s, "nobody@example.com", PASSWORD),
            signin.sign_in(s, "ada@example.com", "wrong password!"),
            signin.sign_in(s, "bob@example.com", PASSWORD),
        ]
    assert {(o.status, o.started, o.challenge) for o in answers} == {("invalid", None, None)}
    with session(write=False) as s:
        failed = [e.payload for e in s.exec(select(Event)).all() if e.type == "sso.signin_failed"]
        assert [f["reason"] for f in failed] == ["invalid"] * 3
        assert [f["email"] for f in failed] == [None, "ada@example.com", "bob@example.com"]


def test_what_is_typed_as_an_unknown_email_is_not_recorded(session):
    with session() as s:
        signin.sign_in(s, "my secret password", "whatever it is")
    with session(write=False) as s:
        entries = s.exec(select(AuditEntry)).all()
        events = s.exec(select(Event)).all()
        assert "my secret password" not in str([e.model_dump() for e in [*entries, *events]])
        assert [e.target for e in entries] == ["(unknown user)"]


def test_lockout_after_five_failures_then_unlocks(session):
    with session() as s:
        person(s)
    for _ in range(4):
        with session() as s:
            assert signin.sign_in(s, "ada@example.com", "wrong password!").status == "invalid"
    with session() as s:
        assert signin.sign_in(s, "ada@example.com", "wrong password!").status == "locked"
    with session() as s:
        # the right password is refused while locked
        assert signin.sign_in(s, "ada@example.com", PASSWORD).status == "locked"
    with session(write=False) as s:
        types = [e.type for e in s.exec(select(Event)).all()]
        assert types.count("sso.locked_out") == 1
        assert "sso.signed_in" not in types
    clock.set_now(clock.now() + timedelta(minutes=16))
    with session() as s:
        assert signin.sign_in(s, "ada@example.com", PASSWORD).status == "signed_in"
    with session(write=False) as s:
        row = _cred(s)
        assert (row.failures, row.locked_until) == (0, None)


def test_failures_outside_the_window_do_not_add_up(session):
    with session() as s:
        person(s)
    for _ in range(4):
        with session() as s:
            signin.sign_in(s, "ada@example.com", "wrong password!")
    clock.set_now(clock.now() + timedelta(minutes=20))
    with session() as s:
        assert signin.sign_in(s, "ada@example.com", "wrong password!").status == "invalid"
    with session(write=False) as s:
        assert _cred(s).failures == 1


def test_totp_second_step_and_replay_refused(session):
    with session() as s:
        person(s)
        enabled = mfa.enable(s, "ada@example.com")
        assert enabled.uri.startswith("otpauth://totp/mno:ada%40example.com?secret=")
    with session() as s, pytest.raises(Conflict):
        mfa.enable(s, "ada@example.com")
    with session() as s:
        first = signin.sign_in(s, "ada@example.com", PASSWORD, next_url=AUTHORIZE)
    assert first.status == "mfa" and first.started is None and first.challenge
    with session() as s:
        wrong = signin.second_factor(s, first.challenge, "000000")
    assert wrong.status in ("invalid", "expired")
    code = mfa.code_now(enabled.secret)
    if wrong.status == "expired":  # pragma: no cover - "000000" was the real code
        return
    with session() as s:
        done = signin.second_factor(s, first.challenge, code)
    assert done.status == "signed_in" and done.next_url == AUTHORIZE
    with session(write=False) as s:
        row = sessions.find(s, done.started.token)
        assert row is not None and row.mfa_at is not None
    # the challenge is single use, and the same code is refused on a new challenge
    with session() as s:
        assert signin.second_factor(s, first.challenge, code).status == "expired"
    with session() as s:
        again = signin.sign_in(s, "ada@example.com", PASSWORD)
    with session() as s:
        assert signin.second_factor(s, again.challenge, code).status == "invalid"
    # the next step's code works
    clock.set_now(clock.now() + timedelta(seconds=30))
    with session() as s:
        later = signin.second_factor(s, again.challenge, mfa.code_now(enabled.secret))
        assert later.status == "signed_in"
    with session() as s:
        mfa.disable(s, "ada@example.com")
    with session() as s:
        assert signin.sign_in(s, "ada@example.com", PASSWORD).status == "signed_in"


@pytest.mark.parametrize(
    "value",
    [
        "//evil.com",
        "https://evil.com",
        "/\\evil.com",
        "\\\\evil.com",
        "http:/evil.com",
        "javascript:alert(1)",
        "/\t/evil.com",
        "evil.com",
        "",
        None,
        "/" + "a" * 2100,
    ],
)
def test_next_must_be_a_path_on_this_hub(value):
    assert signin.safe_next(value) == "/launcher"


def test_next_paths_are_kept():
    assert signin.safe_next("/authorize?client_id=a&state=b") == "/authorize?client_id=a&state=b"
    assert signin.safe_next("/launcher?tenant=acme") == "/launcher?tenant=acme"


def test_launcher_follows_access_rules(session):
    with session() as s:
        person(s)
        ids = estate(s)
    with session(write=False) as s:
        ada = users.get(s, "ada@example.com")
        tenants, acme = launcher.launcher(s, ada, None)
        assert tenants == [("acme", "Acme Corp"), ("globex", "Globex")]
        assert acme.key == "acme"
        assert [(t.code, t.kind, t.url) for t in acme.tiles] == [
            ("books", "nex", "https://acme-books.apps.example.com"),
            ("crm", "cloud", "https://crm.example.com/"),
        ]
        _, globex = launcher.launcher(s, ada, "globex")
        assert [t.code for t in globex.tiles] == ["wiki", "crm"]  # crm: access any
        _, fallback = launcher.launcher(s, ada, "not-mine")
        assert fallback.key == "acme"
    # a member in a team without the instance does not see it
    with session() as s:
        person(s, "bob@example.com")
        from mno.access import members

        members.add(s, "acme", "bob@example.com", "member")
        teams.create(s, "acme", "sales")
        teams.add_member(s, "acme", "sales", "bob@example.com")
    with session(write=False) as s:
        bob = users.get(s, "bob@example.com")
        _, acme = launcher.launcher(s, bob, "acme")
        assert [t.code for t in acme.tiles] == ["crm"]
    with session() as s:
        teams.add_instance(s, "acme", "sales", str(ids["instance"]))
    with session(write=False) as s:
        _, acme = launcher.launcher(s, users.get(s, "bob@example.com"), "acme")
        assert [t.code for t in acme.tiles] == ["books", "crm"]


def test_invite_sets_password_and_starts_session(session):
    with session() as s:
        estate_owner = person(s, "ops@example.com")
        assert estate_owner
        from mno.tenancy import tenants

        tenants.create(s, "acme", name="Acme Corp")
        token = invites.create(s, "acme", "new@example.com", "member").token
    with session() as s, pytest.raises(BadInput, match="differ"):
        signin.accept_invite(s, token, PASSWORD, confirm=PASSWORD + "x")
    with session(write=False) as s:
        assert users.find(s, "new@example.com") is None
        assert signin.invite_view(s, token).status == "pending"
    with session() as s:
        started = signin.accept_invite(s, token, PASSWORD, confirm=PASSWORD, name="Nia")
    with session() as s:
        assert sessions.user_for(s, started.token) == users.get(s, "new@example.com").id
        assert users.memberships(s, users.get(s, "new@example.com")) == [
            {"tenant": "acme", "role": "member"}
        ]
        assert signin.sign_in(s, "new@example.com", PASSWORD).status == "signed_in"
        assert signin.invite_view(s, token).status == "accepted"
    # an existing user with a password proves it to accept
    with session() as s:
        token2 = invites.create(s, "acme", "ops@example.com", "member").token
    with session() as s, pytest.raises(Forbidden):
        signin.accept_invite(s, token2, "not the password")
    with session() as s:
        signin.accept_invite(s, token2, PASSWORD)


def test_no_password_or_secret_in_clear_in_any_table(session, store_url):
    with session() as s:
        person(s)
        enabled = mfa.enable(s, "ada@example.com")
        out = signin.sign_in(s, "ada@example.com", PASSWORD)
    with session() as s:
        done = signin.second_factor(s, out.challenge, mfa.code_now(enabled.secret))
        signin.sign_in(s, "ada@example.com", "Wrong-" + PASSWORD)
    assert done.status == "signed_in"
    needles = [PASSWORD, enabled.secret, out.challenge, done.started.token]
    dump = []
    with session(write=False) as s:
        conn = s.connection()
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                dump.append(repr(tuple(row)))
        assert s.exec(select(UserCredential)).one().totp_secret_enc
    blob = "\n".join(dump)
    assert "ada@example.com" in blob  # the dump did read the tables
    for needle in needles:
        assert needle not in blob


def test_a_check_made_before_a_password_change_is_not_trusted(session):
    with session() as s:
        person(s)
    with session(write=False) as s:
        checked = passwords.check(s, "ada@example.com", PASSWORD)
        assert checked.ok
    with session() as s:
        passwords.set_password(s, "ada@example.com", "a brand new password")
    with session() as s:
        out = signin.sign_in(s, "ada@example.com", PASSWORD, checked=checked)
    assert out.status == "invalid"
    with session(write=False) as s:
        fresh = passwords.check(s, "ada@example.com", "a brand new password")
    with session() as s:
        out = signin.sign_in(s, "ada@example.com", "a brand new password", checked=fresh)
    assert out.status == "signed_in"
