"""The HTTPS edge: a Caddy server that routes every live instance's domains to it.

mno owns the whole configuration of one Caddy server (``edge:`` in the platform YAML)
and drives it through Caddy's admin API:

- ``desired_config()`` builds Caddy's JSON config from the store: one route per routable
  instance (running, starting or updating, with an endpoint) matching its generated host
  (the host of its ``url``) and its custom domains, reverse-proxied to its ``endpoint``
  (host:port published on its Docker host; on a swarm host, the service's port published
  by the routing mesh, or a task's own port with ``publish_mode: host``, see
  ``mno.nex.services``); anything else gets a 404. A stopped or
  terminated instance, or a removed domain, has no route.
- TLS: certificates set with ``mno instance domain cert set`` are loaded from PEM (their
  keys opened only here); the other hosts get certificates by ``edge.tls``: ``acme``
  (automatic HTTPS), ``internal`` (Caddy's own CA, for networks ACME cannot reach; its
  root is ``<data_dir>/pki/authorities/local/root.crt``) or ``manual`` (none).
- ``sync()`` reads Caddy's running config and loads the desired one (``POST /load``)
  only when they differ: idempotent, and a restarted Caddy is filled again at the next
  sync. Caddy applies a new config gracefully, so a rotated certificate or a moved
  endpoint takes effect without a restart. The edge agent runs ``sync()`` every tick.
- ``launch()`` starts Caddy with a first config that holds no routes and no secrets
  (``mno edge run``). Caddy's autosave is off, so keys never land on disk in plain text.

The Traefik labels on containers (``mno.nex.containers.labels``; on a swarm, the same
labels on the service, where Traefik's swarm provider reads them) are independent of this
and stay, for operators who run Traefik instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import Session, col, select

from mno import platform, settings
from mno.errors import BadInput, MnoError, Unavailable
from mno.nex import certs
from mno.store.db import session_scope
from mno.store.models.nex import Instance, InstanceDomain

ROUTABLE = ("running", "starting", "updating")
SERVER = "mno"
NOT_FOUND = "no instance answers at this address\n"


@dataclass(frozen=True)
class Route:
    instance: str
    hosts: list[str]
    upstream: str  # host:port Caddy dials


@dataclass
class SyncResult:
    admin: str
    changed: bool
    routes: int
    hosts: int
    certificates: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Status:
    admin: str
    tls: str
    reachable: bool
    in_sync: bool
    certificates: int
    routes: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def edge_config(config: platform.PlatformConfig | None = None) -> platform.EdgeConfig:
    """The ``edge`` section in force; refuses when the platform has none."""
    edge = (config or platform.load()).edge
    if edge is None:
        raise BadInput(
            "the platform config has no edge section", "add `edge:` to the platform YAML"
        )
    return edge


# -- routes from the store ------------------------------------------------------------------


def url_host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def dial(endpoint: str) -> str:
    """``http://127.0.0.1:32768`` → ``127.0.0.1:32768`` (``[::1]:port`` for IPv6)."""
    parts = urlsplit(endpoint)
    if not parts.hostname or parts.port is None:
        raise MnoError(f"instance endpoint {endpoint!r} has no host and port")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{parts.port}"


def routes(session: Session) -> list[Route]:
    """Every routable instance with its hosts (generated and custom), by name."""
    rows = session.exec(
        select(Instance.id, Instance.name, Instance.url, Instance.endpoint)
        .where(
            col(Instance.live_name).is_not(None),
            col(Instance.status).in_(ROUTABLE),
            col(Instance.endpoint).is_not(None),
        )
        .order_by(Instance.name)
    ).all()
    domains: dict[uuid.UUID, list[str]] = {}
    ids = [r[0] for r in rows]
    if ids:
        for iid, domain in session.exec(
            select(InstanceDomain.instance_id, InstanceDomain.domain).where(
                col(InstanceDomain.instance_id).in_(ids)
            )
        ).all():
            domains.setdefault(iid, []).append(domain)
    out: list[Route] = []
    taken: set[str] = set()
    for iid, name, url, endpoint in rows:
        hosts = [h for h in [url_host(url), *sorted(domains.get(iid, []))] if h]
        hosts = [h for h in dict.fromkeys(hosts) if h not in taken]
        taken.update(hosts)
        if hosts and endpoint:
            out.append(Route(name, hosts, dial(endpoint)))
    return out


# -- Caddy's config -----------------------------------------------------------------------


def admin_listen(edge: platform.EdgeConfig) -> str:
    parts = urlsplit(edge.admin)
    return f"{parts.hostname}:{parts.port}"


def data_dir(edge: platform.EdgeConfig) -> Path:
    return Path(edge.data_dir).expanduser() if edge.data_dir else settings.home() / "edge"


def _address(edge: platform.EdgeConfig, port: int) -> str:
    host = edge.listen
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


def build_config(
    edge: platform.EdgeConfig, route_list: list[Route], loaded: list[certs.Loaded]
) -> dict[str, Any]:
    """Caddy's JSON config for these routes and certificates (deterministic)."""
    caddy_routes: list[dict[str, Any]] = [
        {
            "@id": f"mno-instance-{r.instance}",
            "match": [{"host": r.hosts}],
            "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": r.upstream}]}],
            "terminal": True,
        }
        for r in route_list
    ]
    caddy_routes.append(
        {
            "@id": "mno-not-found",
            "handle": [
                {"handler": "static_response", "status_code": 404, "body": NOT_FOUND},
            ],
        }
    )
    hosts = [h for r in route_list for h in r.hosts]
    manual = [h for h in hosts if any(certs.covers(n, h) for c in loaded for n in c.names)]
    automatic = [h for h in hosts if h not in manual]
    skip = manual + (automatic if edge.tls == "manual" else [])
    server: dict[str, Any] = {
        "listen": [_address(edge, edge.https_port)],
        "routes": caddy_routes,
        "automatic_https": {"disable_redirects": not edge.redirect_http},
    }
    if skip:
        server["automatic_https"]["skip_certificates"] = skip
    tls: dict[str, Any] = {}
    if loaded:
        tls["certificates"] = {
            "load_pem": [
                {"certificate": c.cert_pem, "key": c.key_pem, "tags": [f"mno:{c.domain}"]}
                for c in loaded
            ]
        }
    if automatic and edge.tls != "manual":
        issuer: dict[str, Any] = {"module": edge.tls}
        if edge.tls == "acme":
            if edge.acme_email:
                issuer["email"] = edge.acme_email
            if edge.acme_ca:
                issuer["ca"] = edge.acme_ca
        tls["automation"] = {"policies": [{"subjects": automatic, "issuers": [issuer]}]}
    apps: dict[str, Any] = {
        "http": {
            "http_port": edge.http_port,
            "https_port": edge.https_port,
            "servers": {SERVER: server},
        },
        # the internal CA's root is never installed into this host's trust store
        "pki": {"certificate_authorities": {"local": {"install_trust": False}}},
    }
    if tls:
        apps["tls"] = tls
    return {
        "admin": {"listen": admin_listen(edge), "config": {"persist": False}},
        "storage": {"module": "file_system", "root": str(data_dir(edge))},
        "apps": apps,
    }


def desired_config(session: Session, edge: platform.EdgeConfig) -> dict[str, Any]:
    return build_config(edge, routes(session), certs.load_all(session))


# -- the admin API ---------------------------------------------------------------------------


class Admin:
    """Caddy's admin API (only what mno needs: read the config, load one)."""

    def __init__(self, edge: platform.EdgeConfig) -> None:
        self.url = edge.admin.rstrip("/")
        self.timeout = edge.timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        import httpx

        try:
            with httpx.Client(timeout=self.timeout, trust_env=False) as client:
                resp = client.request(
                    method,
                    self.url + path,
                    content=None if body is None else json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"},
                )
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"the edge proxy's admin API at {self.url} does not answer ({type(exc).__name__})",
                "start Caddy with `mno edge run`, or check edge.admin",
            ) from None
        if resp.status_code >= 400:
            try:
                error = str(resp.json().get("error", ""))
            except ValueError:
                error = resp.text
            raise MnoError(f"Caddy refused {method} {path}: {error[:300]}")
        return resp.json() if resp.content else None

    def config(self) -> Any:
        return self._call("GET", "/config/")

    def load(self, config: dict[str, Any]) -> None:
        self._call("POST", "/load", config)


def sync(db_url: str | None = None, config: platform.PlatformConfig | None = None) -> SyncResult:
    """Make Caddy serve what the store says; load a config only when it changed."""
    edge = edge_config(config)
    with session_scope(db_url, write=False) as s:
        route_list = routes(s)
        loaded = certs.load_all(s)
    wanted = build_config(edge, route_list, loaded)
    admin = Admin(edge)
    changed = admin.config() != wanted
    if changed:
        admin.load(wanted)
    return SyncResult(
        admin=admin.url,
        changed=changed,
        routes=len(route_list),
        hosts=sum(len(r.hosts) for r in route_list),
        certificates=len(loaded),
    )


def status(db_url: str | None = None, config: platform.PlatformConfig | None = None) -> Status:
    """The routes the store asks for and whether Caddy serves exactly them."""
    edge = edge_config(config)
    with session_scope(db_url, write=False) as s:
        route_list = routes(s)
        loaded = certs.load_all(s)
    admin = Admin(edge)
    out = Status(
        admin=admin.url,
        tls=edge.tls,
        reachable=False,
        in_sync=False,
        certificates=len(loaded),
        routes=[
            {"instance": r.instance, "hosts": r.hosts, "upstream": r.upstream} for r in route_list
        ],
    )
    try:
        current = admin.config()
    except MnoError as exc:
        out.error = exc.message
        return out
    out.reachable = True
    out.in_sync = current == build_config(edge, route_list, loaded)
    return out


# -- running Caddy ---------------------------------------------------------------------------


def launch(
    config: platform.PlatformConfig | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``caddy run`` with a first config (no routes, no secrets) under ``data_dir``;
    Caddy's own files (XDG dirs) stay there too. Returns the running process."""
    edge = edge_config(config)
    root = data_dir(edge)
    root.mkdir(parents=True, exist_ok=True)
    first = root / "caddy-initial.json"
    first.write_text(json.dumps(build_config(edge, [], []), indent=2))
    env = os.environ | {
        "XDG_DATA_HOME": str(root / "xdg-data"),
        "XDG_CONFIG_HOME": str(root / "xdg-config"),
    }
    out = open(log, "ab") if log else None  # handed to the child, closed below
    try:
        return subprocess.Popen(
            [edge.caddy, "run", "--config", str(first)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
        )
    except FileNotFoundError:
        raise Unavailable(
            f"the Caddy binary {edge.caddy!r} was not found", "apt-get install caddy"
        ) from None
    finally:
        if out:
            out.close()


def wait_admin(
    config: platform.PlatformConfig | None = None,
    timeout: float = 15.0,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait until Caddy's admin API answers (or the process ended)."""
    admin = Admin(edge_config(config))
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise Unavailable(f"Caddy exited with status {proc.returncode}")
        try:
            admin.config()
            return
        except Unavailable:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)
