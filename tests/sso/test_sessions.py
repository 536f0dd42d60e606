"""Hub browser sessions: only a digest is stored, and a session ends, expires or dies with
its user at once."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlmodel import select

from mno import clock
from mno.access import users
from mno.sso import sessions
from mno.store.models.core import Event
from mno.store.models.sso import SsoSession


def _user(session, email="ada@example.com"):
    with session() as s:
        user, _ = users.create(s, email)
        return user.id


def test_cookie_value_is_not_stored_and_finds_its_user(session):
    user_id = _user(session)
    with session() as s:
        started = sessions.start(s, users.get(s, user_id), mfa=True, user_agent="ua")
        token = started.token
    with session(write=False) as s:
        row = s.exec(select(SsoSession)).one()
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert token not in str(row.model_dump())
        assert row.mfa_at is not None
        assert sessions.user_for(s, token) == user_id
        assert sessions.user_for(s, token + "x") is None
        assert sessions.user_for(s, "") is None
        assert sessions.user_for(s, None) is None
        types = [e.type for e in s.exec(select(Event)).all()]
        assert "sso.signed_in" in types


def test_end_expiry_and_disabled_user(session):
    user_id = _user(session)
    with session() as s:
        first = sessions.start(s, users.get(s, user_id)).token
        second = sessions.start(s, users.get(s, user_id)).token
        third = sessions.start(s, users.get(s, user_id)).token
    with session() as s:
        assert sessions.end(s, first) is True
        assert sessions.end(s, first) is False
    with session(write=False) as s:
        assert sessions.user_for(s, first) is None
        assert sessions.user_for(s, second) == user_id
    with session() as s:
        users.set_status(s, "ada@example.com", "disabled")
    with session(write=False) as s:
        assert sessions.user_for(s, second) is None
    with session() as s:
        users.set_status(s, "ada@example.com", "active")
    with session(write=False) as s:
        assert sessions.user_for(s, second) == user_id
    with session() as s:
        assert sessions.end_all(s, users.get(s, user_id)) == 2
    with session(write=False) as s:
        assert sessions.user_for(s, second) is None
        assert sessions.user_for(s, third) is None
    with session() as s:
        fourth = sessions.start(s, users.get(s, user_id)).token
    clock.set_now(clock.now() + sessions.ttl() + timedelta(seconds=1))
    with session(write=False) as s:
        assert sessions.user_for(s, fourth) is None
