"""Hub API members, teams, invites, access checks and app grants on a live server."""

from __future__ import annotations

from sqlmodel import select

from mno.store.models.access import Invite


def test_members_list_add_change_remove(hub, world):
    admin = hub.as_(world["admin"])
    r = admin.get("/v1/hub/tenants/acme/members", params={"limit": 2})
    assert r.status_code == 200
    assert [m["email"] for m in r.json()["members"]] == ["admin@acme.io", "bob@acme.io"]
    assert 'rel="next"' in r.headers["link"]
    r = admin.post("/v1/hub/tenants/acme/members", json={"email": "Dana@Acme.io"})
    assert r.status_code == 201, r.text
    assert r.json()["email"] == "dana@acme.io"
    assert r.json()["role"] == "member"
    # the CLI's rules and words: an admin cannot grant super_admin
    r = admin.patch("/v1/hub/tenants/acme/members/dana@acme.io", json={"role": "super_admin"})
    assert r.status_code == 403
    assert r.json()["detail"] == "an admin cannot grant super_admin"
    r = admin.patch("/v1/hub/tenants/acme/members/dana@acme.io", json={"role": "power_user"})
    assert r.json()["role"] == "power_user"
    r = admin.post("/v1/hub/tenants/acme/members", json={"email": "dana@acme.io"})
    assert r.status_code == 409
    assert admin.delete("/v1/hub/tenants/acme/members/dana@acme.io").status_code == 204
    emails = [m["email"] for m in admin.get("/v1/hub/tenants/acme/members").json()["members"]]
    assert "dana@acme.io" not in emails
    owner = hub.as_(world["owner"])
    r = owner.delete("/v1/hub/tenants/acme/members/owner@acme.io")
    assert r.status_code == 409
    assert r.json()["detail"] == "owner@acme.io is the last super_admin of acme"


def test_member_routes_deny_by_scope_and_visibility(hub, world):
    bob = hub.as_(world["bob"])
    assert bob.get("/v1/hub/tenants/acme/members").status_code == 200
    r = bob.post("/v1/hub/tenants/acme/members", json={"email": "x@acme.io"})
    assert r.status_code == 403
    carol = hub.as_(world["carol"])
    assert carol.get("/v1/hub/tenants/acme/members").status_code == 404
    assert carol.post("/v1/hub/tenants/acme/members", json={"email": "x@y.io"}).status_code == 404
    assert carol.delete("/v1/hub/tenants/acme/members/bob@acme.io").status_code == 404
    assert carol.get("/v1/hub/tenants/acme/teams").status_code == 404
    assert carol.get("/v1/hub/tenants/acme/invites").status_code == 404
    roles = hub.as_(world["bob"]).get("/v1/hub/roles").json()["roles"]
    assert [r["name"] for r in roles] == ["member", "power_user", "admin", "super_admin"]


def test_teams(hub, world):
    admin = hub.as_(world["admin"])
    r = admin.post("/v1/hub/tenants/acme/teams", json={"name": "ops"})
    assert r.status_code == 201, r.text
    r = admin.post("/v1/hub/tenants/acme/teams/ops/members", json={"email": "bob@acme.io"})
    assert r.status_code == 200
    assert r.json()["members"] == ["bob@acme.io"]
    teams = hub.as_(world["bob"]).get("/v1/hub/tenants/acme/teams").json()["teams"]
    assert teams == [{"tenant": "acme", "name": "ops", "members": ["bob@acme.io"], "instances": []}]
    r = admin.post("/v1/hub/tenants/acme/teams/nope/members", json={"email": "bob@acme.io"})
    assert r.status_code == 404


def test_invite_create_accept_revoke(hub, world, session):
    admin = hub.as_(world["admin"])
    headers = {"Idempotency-Key": "invite-erin"}
    r = admin.post("/v1/hub/tenants/acme/invites", json={"email": "erin@x.io"}, headers=headers)
    assert r.status_code == 201, r.text
    invite = r.json()
    assert invite["status"] == "pending"
    assert invite["invited_by"] == "admin@acme.io"
    token = invite["token"]
    assert token.startswith("mnoinv_")
    # a replay answers the same invite, without its token; the store keeps no token
    again = admin.post("/v1/hub/tenants/acme/invites", json={"email": "erin@x.io"}, headers=headers)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == invite | {"token": None}
    with session() as s:
        from mno.store.models.hub import IdempotencyKey

        stored = s.exec(select(IdempotencyKey.body)).all()
        assert all(token not in body for body in stored)
        assert len(s.exec(select(Invite)).all()) == 1
    # the token is the credential: no bearer needed
    r = hub.client.post("/v1/hub/invites/accept", json={"token": token, "name": "Erin"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "accepted"
    members = [m["email"] for m in admin.get("/v1/hub/tenants/acme/members").json()["members"]]
    assert "erin@x.io" in members
    r = hub.client.post("/v1/hub/invites/accept", json={"token": token})
    assert r.status_code == 409
    # revoke
    r = admin.post("/v1/hub/tenants/acme/invites", json={"email": "fay@x.io"})
    fay = r.json()["id"]
    carol = hub.as_(world["carol"])
    assert carol.post(f"/v1/hub/invites/{fay}/revoke").status_code == 404
    r = admin.post(f"/v1/hub/invites/{fay}/revoke")
    assert r.status_code == 200
    assert r.json()["status"] == "revoked"
    listed = admin.get("/v1/hub/tenants/acme/invites", params={"status": "revoked"}).json()
    assert [i["email"] for i in listed["invites"]] == ["fay@x.io"]
    # a member may not invite (the domain's rule, the CLI's words)
    bob_all = hub.as_(world["bob"])
    assert bob_all.post("/v1/hub/tenants/acme/invites", json={"email": "g@x.io"}).status_code == 403


def test_access_check_gives_the_reason(hub, world):
    admin = hub.as_(world["admin"])
    r = admin.post(
        "/v1/hub/access/check",
        json={"user": "bob@acme.io", "tenant": "acme", "action": "manage_billing"},
    )
    assert r.status_code == 200
    assert r.json() == {
        "allowed": False,
        "reason": "manage_billing needs super_admin; bob@acme.io is member in acme",
    }
    r = admin.post(
        "/v1/hub/access/check", json={"user": "bob@acme.io", "tenant": "acme", "action": "read"}
    )
    assert r.json() == {"allowed": True, "reason": "bob@acme.io is member in acme"}
    r = admin.post(
        "/v1/hub/access/check",
        json={"user": "carol@globex.io", "tenant": "globex", "action": "read"},
    )
    assert r.status_code == 404
    r = admin.post(
        "/v1/hub/access/check", json={"user": "bob@acme.io", "tenant": "acme", "action": "fly"}
    )
    assert r.status_code == 422


def test_app_grants(hub, world, session):
    from mno.tenancy import apps

    with session() as s:
        apps.create(s, "CRM", code="crm", owner="acme", if_not_exists=True)
    op = hub.as_(world["op"])
    r = op.post("/v1/hub/apps/crm/grants", json={"tenant": "globex"})
    assert r.status_code == 201, r.text
    assert r.json() == {"app": "crm", "tenant": "globex", "can_edit": False, "granted_by": "system"}
    # acme's super_admin owns the app but cannot see globex: as if it did not exist
    owner = hub.as_(world["owner"])
    assert owner.delete("/v1/hub/apps/crm/grants/globex").status_code == 404
    # carol sees globex but does not own crm
    carol = hub.as_(world["carol"])
    r = carol.post("/v1/hub/apps/crm/grants", json={"tenant": "globex", "can_edit": True})
    assert r.status_code == 403
    r = owner.post("/v1/hub/apps/crm/grants", json={"tenant": "acme"})
    assert r.status_code == 201
    assert r.json()["granted_by"] == "acme"
    assert op.delete("/v1/hub/apps/crm/grants/globex").status_code == 204
    assert op.delete("/v1/hub/apps/crm/grants/globex").status_code == 404
