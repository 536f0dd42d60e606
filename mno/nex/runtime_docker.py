"""The Docker adapter: every call Nex makes to a Docker engine goes through here.

One ``Runtime`` per configured host, with one docker SDK client each (created on first
use, reused across ticks). Engine failures become two exceptions:

- ``HostDown``: the engine cannot be reached (socket missing, connection refused, timeout);
  callers keep the instance's state, record the error and back off;
- ``DockerFailure``: the engine answered with an error (bad image, name clash, …).

The time spent waiting on the engine is added to a per-thread counter
(``docker_seconds()``), so the provisioner's own overhead can be measured apart from it.

The docker SDK (and requests under it) is imported on first use, not with the module, so
importing this module stays cheap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO

from mno.errors import MnoError, Unavailable

if TYPE_CHECKING:
    from mno.platform import HostConfig

MANAGED = "mno.managed"
NAMESPACE = "mno.namespace"  # see mno.nex.namespace
POLL_S = 0.1


class HostDown(Unavailable):
    """The Docker engine of a host cannot be reached."""


class DockerFailure(MnoError):
    """The Docker engine refused or failed a request."""


class NameClash(DockerFailure):
    """A container with the name exists and belongs to another store or to nobody."""


class Unhealthy(MnoError):
    """A container did not become healthy."""


class Interrupted(Unhealthy):
    """The wait for a container was cut short (the agent is shutting down)."""


_clock = threading.local()


def docker_seconds() -> float:
    """Seconds this thread has spent waiting on Docker engines so far."""
    return getattr(_clock, "seconds", 0.0)


def docker_cpu_seconds() -> float:
    """CPU seconds this thread has spent in Docker calls (the SDK's own work)."""
    return getattr(_clock, "cpu", 0.0)


@dataclass
class ContainerSpec:
    name: str
    image: str
    port: int
    labels: dict[str, str]
    publish_address: str = "127.0.0.1"
    env: dict[str, str] = field(default_factory=dict)
    health_cmd: list[str] | None = None
    health_interval_s: float = 10.0  # once healthy
    # checks while the app starts: Docker's StartInterval where the engine has it (API
    # 1.44), else mno's own probe while it waits for readiness (``Runtime.wait_ready``)
    health_start_interval_s: float = 1.0
    health_timeout_s: float = 5.0
    health_retries: int = 3
    health_start_period_s: float = 0.0  # failures while the app boots do not count
    memory: int | None = None  # bytes
    nano_cpus: int | None = None
    pids: int | None = None
    volume: str | None = None
    volume_path: str | None = None
    network: str | None = None
    restart_retries: int = 5


@dataclass
class ContainerState:
    id: str
    name: str
    status: str  # created|running|paused|restarting|removing|exited|dead
    health: str | None  # starting|healthy|unhealthy, None without a health check
    labels: dict[str, str]
    host_port: int | None = None
    exit_code: int | None = None
    health_log: str | None = None
    oom_killed: bool = False
    restart_count: int = 0
    error: str | None = None  # the engine's reason when a start failed
    # the container's health check as created (Docker's Healthcheck config)
    healthcheck: dict[str, Any] | None = None
    # published ports: container port -> host port (from a container list)
    published: dict[int, int] = field(default_factory=dict)
    image: str | None = None  # the image reference it was created from

    def crash(self) -> str:
        """How the container ended: exit code, OOM kill, engine error."""
        text = f"container exited with code {self.exit_code}"
        if self.oom_killed:
            text += " (OOM-killed: it ran out of memory)"
        if self.error:
            text += f" ({self.error})"
        if self.restart_count:
            text += f", restarted {self.restart_count} time(s)"
        return text


def health_command(port: int, path: str) -> list[str]:
    """A health check that works with busybox (wget) and Debian-style images (curl)."""
    url = f"http://127.0.0.1:{port}{path}"
    return [
        "CMD-SHELL",
        f"wget -q -O /dev/null {url} || curl -fsS -o /dev/null {url} || exit 1",
    ]


def run_kwargs(spec: ContainerSpec) -> dict[str, Any]:
    """The docker SDK ``containers.run``/``create`` keyword arguments for a spec."""
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "name": spec.name,
        "detach": True,
        "labels": spec.labels,
        "environment": spec.env,
        "ports": {f"{spec.port}/tcp": (spec.publish_address, None)},
        "restart_policy": {"Name": "on-failure", "MaximumRetryCount": spec.restart_retries},
        "init": True,  # a real PID 1: signals reach the app, zombies are reaped
    }
    if spec.health_cmd:
        kwargs["healthcheck"] = {
            "test": spec.health_cmd,
            "interval": _ns(spec.health_interval_s),
            "timeout": _ns(spec.health_timeout_s),
            "retries": spec.health_retries,
            "start_period": _ns(spec.health_start_period_s),
        }
    if spec.memory:
        kwargs["mem_limit"] = spec.memory
    if spec.nano_cpus:
        kwargs["nano_cpus"] = spec.nano_cpus
    if spec.pids:
        kwargs["pids_limit"] = spec.pids
    if spec.volume and spec.volume_path:
        kwargs["volumes"] = {spec.volume: {"bind": spec.volume_path, "mode": "rw"}}
    if spec.network:
        kwargs["network"] = spec.network
    return kwargs


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _api_at_least(version: str, wanted: tuple[int, int]) -> bool:
    try:
        major, minor = (int(x) for x in str(version).split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= wanted


START_INTERVAL_API = (1, 44)  # the first engine API with a health check StartInterval


def _state(attrs: dict[str, Any], port: int | None = None) -> ContainerState:
    st = attrs.get("State") or {}
    health = st.get("Health") or None
    host_port = None
    if port is not None:
        bound = ((attrs.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{port}/tcp")
        if bound:
            host_port = int(bound[0]["HostPort"])
    log = None
    if health and health.get("Log"):
        last = health["Log"][-1]
        log = f"exit {last.get('ExitCode')}: {(last.get('Output') or '').strip()[:300]}"
    return ContainerState(
        id=attrs["Id"],
        name=(attrs.get("Name") or "").lstrip("/"),
        status=st.get("Status", "unknown"),
        health=health.get("Status") if health else None,
        labels=(attrs.get("Config") or {}).get("Labels") or {},
        host_port=host_port,
        exit_code=st.get("ExitCode"),
        health_log=log,
        oom_killed=bool(st.get("OOMKilled")),
        restart_count=int(attrs.get("RestartCount") or 0),
        error=st.get("Error") or None,
        healthcheck=(attrs.get("Config") or {}).get("Healthcheck") or None,
        image=(attrs.get("Config") or {}).get("Image"),
    )


@dataclass
class _Probe:
    """mno's own health checks while a container starts, on an engine that cannot check
    faster in that phase: Docker's rules (failures in the start period do not count,
    ``retries`` failures in a row fail) at ``interval_s``."""

    test: list[str]
    interval_s: float
    retries: int
    start_period_s: float
    began: float = field(default_factory=time.monotonic)
    next_at: float = 0.0
    failures: int = 0

    @classmethod
    def of(cls, state: ContainerState, interval_s: float, engine_fast: bool) -> _Probe | None:
        check = state.healthcheck or {}
        test = check.get("Test") or []
        if not test or test[0] not in ("CMD", "CMD-SHELL") or len(test) < 2:
            return None
        interval = (check.get("Interval") or 30e9) / 1e9
        if (engine_fast and check.get("StartInterval")) or interval <= interval_s:
            return None  # Docker's own checks are as fast
        return cls(
            test=list(test),
            interval_s=interval_s,
            retries=int(check.get("Retries") or 3),
            start_period_s=(check.get("StartPeriod") or 0) / 1e9,
        )

    def run(self, rt: Runtime, ref: str) -> bool | str | None:
        """True when healthy, the failure when it failed for good, None: not yet."""
        now = time.monotonic()
        if now < self.next_at:
            return None
        self.next_at = now + self.interval_s
        try:
            code, out = rt.exec_probe(ref, self.test)
        except DockerFailure as exc:  # e.g. the container stopped meanwhile
            code, out = 1, exc.message
        if code == 0:
            return True
        if now - self.began >= self.start_period_s:
            self.failures += 1
        if self.failures >= self.retries:
            return f"exit {code}: {out[:300]}"
        return None


class Runtime:
    """Docker calls for one host."""

    def __init__(self, name: str, base_url: str, timeout: int = 30) -> None:
        self.name = name
        self.base_url = base_url
        self.timeout = timeout
        self._client: Any = None
        self._lock = threading.Lock()

    @classmethod
    def for_host(cls, host: HostConfig) -> Runtime:
        return cls(host.name, host.base_url, host.timeout)

    # -- plumbing ------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import docker

                    try:
                        self._client = docker.DockerClient(
                            base_url=self.base_url,
                            timeout=self.timeout,
                            use_ssh_client=self.base_url.startswith("ssh://"),
                        )
                    except docker.errors.DockerException as exc:
                        raise HostDown(f"host {self.name}: {_reason(exc)}") from exc
                    if self.base_url.startswith("unix://"):
                        # no proxy applies to a unix socket: skip requests' scan of the
                        # environment for proxy settings on every call
                        self._client.api.trust_env = False
        return self._client

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one engine call, timing it and translating its errors."""
        import docker
        import requests

        started, cpu = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        except docker.errors.NotFound:
            raise
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            self.close()
            raise HostDown(f"host {self.name} is unreachable: {_reason(exc)}") from exc
        except docker.errors.APIError as exc:
            raise DockerFailure(f"host {self.name}: {_reason(exc)}") from exc
        except docker.errors.DockerException as exc:
            if "connection" in str(exc).lower() or "no such file" in str(exc).lower():
                self.close()
                raise HostDown(f"host {self.name} is unreachable: {_reason(exc)}") from exc
            raise DockerFailure(f"host {self.name}: {_reason(exc)}") from exc
        finally:
            _clock.seconds = docker_seconds() + time.perf_counter() - started
            _clock.cpu = docker_cpu_seconds() + time.thread_time() - cpu

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            import docker
            import requests

            try:
                client.close()
            except (OSError, requests.RequestException, docker.errors.DockerException):
                pass  # closing a broken client must not raise

    # -- host ----------------------------------------------------------------------

    def version(self) -> str:
        return str(self.call(lambda: self.client.version()).get("Version", "?"))

    def info(self) -> dict[str, Any]:
        data = self.call(lambda: self.client.info())
        return {"version": data.get("ServerVersion"), "memory": data.get("MemTotal")}

    # -- networks and volumes --------------------------------------------------------

    def engine_id(self) -> str:
        """The engine's own id (``docker info``): the same engine reached through two
        URLs answers with one id."""
        return str(self.call(lambda: self.client.info()).get("ID") or "")

    def networks(self, name: str) -> list[dict[str, Any]]:
        """The networks called exactly ``name`` (Docker allows several), oldest first."""
        rows = self.call(self.client.api.networks, filters={"name": name})
        return sorted(
            (r for r in rows if r.get("Name") == name), key=lambda r: str(r.get("Created"))
        )

    def ensure_network(
        self,
        name: str,
        labels: dict[str, str],
        *,
        guard: Callable[[], AbstractContextManager[Any]] | None = None,
        driver: str = "bridge",
    ) -> str:
        """The id of the network ``name`` (a ``driver`` network: bridge, or an attachable
        overlay on a swarm) whose labels match ``labels``, created
        when missing. Creation runs under a lock of this process and ``guard`` (a lock
        shared with other processes), so concurrent passes create one network; duplicates
        left by an earlier race are merged into the oldest one.
        A network of that name with other labels is not ours: ``DockerFailure``."""
        found = self.networks(name)
        if len(found) == 1 and _ours(found[0], labels):
            return str(found[0]["Id"])
        with _named_lock(f"{self.base_url}|{name}"), guard() if guard else nullcontext():
            found = self.networks(name)
            foreign = [n for n in found if not _ours(n, labels)]
            if foreign:
                raise DockerFailure(
                    f"host {self.name}: network {name} exists and is not this platform's "
                    f"(labels {_shown(foreign[0].get('Labels'))})",
                    "rename or remove that network",
                )
            if not found:
                try:
                    made = self.call(
                        self.client.api.create_network,
                        name,
                        driver=driver,
                        labels=labels,
                        check_duplicate=True,
                        attachable=driver == "overlay" or None,
                    )
                except DockerFailure as exc:
                    if "already exists" not in str(exc):
                        raise
                    found = self.networks(name)
                else:
                    return str(made["Id"])
            keep, *extra = found
            for dup in extra:
                self._merge_network(dup["Id"], keep["Id"])
            return str(keep["Id"])

    def _merge_network(self, dup: str, keep: str) -> None:
        """Move the containers of a duplicate network to ``keep``, then remove it."""
        import docker

        try:
            attrs = self.call(self.client.api.inspect_network, dup)
        except docker.errors.NotFound:
            return
        for cid in attrs.get("Containers") or {}:
            try:
                self.call(self.client.api.connect_container_to_network, cid, keep)
            except DockerFailure as exc:
                if "already exists" not in str(exc):
                    raise
            self.call(self.client.api.disconnect_container_from_network, cid, dup, force=True)
        try:
            self.call(self.client.api.remove_network, dup)
        except docker.errors.NotFound:
            pass

    def remove_network(self, name: str) -> bool:
        """Remove the network(s) called ``name`` (a duplicate pair included)."""
        import docker

        removed = False
        for network in self.networks(name):
            try:
                self.call(self.client.api.remove_network, network["Id"])
            except docker.errors.NotFound:
                continue
            removed = True
        return removed

    def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        self.call(self.client.api.create_volume, name, labels=labels)  # idempotent

    def volume_exists(self, name: str) -> bool:
        import docker

        try:
            self.call(self.client.api.inspect_volume, name)
        except docker.errors.NotFound:
            return False
        return True

    def volume_users(self, name: str) -> list[str]:
        """The ids of the containers (running or not) that mount the volume."""
        rows = self.call(self.client.api.containers, all=True, filters={"volume": name})
        return [str(row["Id"]) for row in rows]

    def remove_volume(self, name: str) -> bool:
        import docker

        try:
            self.call(self.client.api.remove_volume, name, force=True)
        except docker.errors.NotFound:
            return False
        return True

    # -- containers ------------------------------------------------------------------

    def inspect(self, ref: str, port: int | None = None) -> ContainerState | None:
        """The container's state, or None when it does not exist."""
        import docker

        try:
            attrs = self.call(self.client.api.inspect_container, ref)
        except docker.errors.NotFound:
            return None
        return _state(attrs, port)

    def run(self, spec: ContainerSpec) -> ContainerState:
        """Create and start a container (an existing one with the name is reused, so a
        pass interrupted after the create can run again)."""
        ref = self.create(spec)
        self.call(self.client.api.start, ref)
        state = self.inspect(ref, spec.port)
        if state is None:
            raise DockerFailure(f"container {spec.name} disappeared after start")
        return state

    def create(self, spec: ContainerSpec) -> str:
        """Create a container without starting it (or find the one with its name); its id."""
        import docker
        from docker.models.containers import (  # type: ignore[attr-defined]  # private SDK helper, absent from the stubs
            _create_container_args,
        )

        # the SDK's own translation of run()/create() arguments, then the low-level call:
        # containers.create() would inspect the new container once more
        api = self.client.api
        kwargs = _create_kwargs(spec) | {"command": None, "version": api._version}
        try:
            args = _create_container_args(kwargs)
            if spec.health_cmd and self.has_start_interval():
                return str(self.call(self._create_with_start_interval, args, spec)["Id"])
            return str(self.call(api.create_container, **args)["Id"])
        except DockerFailure as exc:
            cause = exc.__cause__
            if not (isinstance(cause, docker.errors.APIError) and cause.status_code == 409):
                raise
        current = self.inspect(spec.name, spec.port)
        if current is None:
            raise DockerFailure(f"container {spec.name} exists but cannot be inspected")
        if not _same_owner(spec.labels, current.labels):
            raise NameClash(
                f"host {self.name}: container {spec.name} exists and is not this instance's "
                f"(namespace {current.labels.get(NAMESPACE) or 'none'}, instance "
                f"{current.labels.get('mno.instance') or 'none'}); it was left alone",
                "remove or rename that container, or give the instance another name",
            )
        return current.id

    def has_start_interval(self) -> bool:
        """Whether the engine runs health checks at a faster interval while a container
        starts (``StartInterval``, engine API 1.44)."""
        return _api_at_least(self.client.api._version, START_INTERVAL_API)

    def _create_with_start_interval(self, args: dict[str, Any], spec: ContainerSpec) -> Any:
        """``create_container`` with ``Healthcheck.StartInterval``, which the SDK's
        config type drops."""
        from docker.utils import format_environment

        api = self.client.api
        args = dict(args)
        name = args.pop("name", None)
        platform = args.pop("platform", None)
        args.pop("use_config_proxy", None)
        if isinstance(args.get("environment"), dict):
            args["environment"] = format_environment(args["environment"])
        config = api.create_container_config(**args)
        config["Healthcheck"]["StartInterval"] = _ns(spec.health_start_interval_s)
        return api.create_container_from_config(config, name, platform)

    def start(self, ref: str) -> None:
        self.call(self.client.api.start, ref)

    def stop(self, ref: str, timeout: int = 10) -> bool:
        import docker

        try:
            self.call(self.client.api.stop, ref, timeout=timeout)
        except docker.errors.NotFound:
            return False
        return True

    def restart(self, ref: str, timeout: int = 10) -> None:
        self.call(self.client.api.restart, ref, timeout=timeout)

    def remove(self, ref: str) -> bool:
        import docker

        try:
            self.call(self.client.api.remove_container, ref, force=True)
        except docker.errors.NotFound:
            return False
        return True

    def wait_ready(
        self,
        ref: str,
        port: int,
        timeout_s: float,
        *,
        start_interval_s: float = 1.0,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> ContainerState:
        """Wait until the container is healthy (or running, without a health check).

        A container that exits, or that its restart policy restarts, fails at once with
        its exit code, OOM flag and last log lines. While Docker's own verdict is still
        "starting" and the engine cannot check faster while a container starts (no
        ``StartInterval``), mno runs the container's health command itself every
        ``start_interval_s`` (as Docker would: failures in the start period do not count,
        ``Retries`` failures in a row are a failure); the slower Docker check then only
        watches the running app.

        The whole wait counts as time spent on Docker (``docker_seconds``)."""
        before, started = docker_seconds(), time.perf_counter()
        try:
            return self._wait_ready(ref, port, timeout_s, start_interval_s, should_stop)
        finally:
            _clock.seconds = before + time.perf_counter() - started

    def _wait_ready(
        self,
        ref: str,
        port: int,
        timeout_s: float,
        start_interval_s: float,
        should_stop: Callable[[], bool],
    ) -> ContainerState:
        now = time.monotonic()
        deadline = now + timeout_s
        restarts: int | None = None  # the restart count when the wait began
        probe: _Probe | None = None
        while True:
            state = self.inspect(ref, port)
            if state is None:
                raise Unhealthy(f"container {ref[:12]} disappeared")
            if restarts is None:
                restarts = state.restart_count
                probe = _Probe.of(state, start_interval_s, self.has_start_interval())
            if state.status in ("exited", "dead", "restarting") or (
                state.status == "created" and state.error
            ):
                raise Unhealthy(f"{state.crash()}{self._tail(ref)}")
            crashed = state.restart_count > restarts  # restarted by its restart policy
            if state.status == "running" and state.health in (None, "healthy"):
                return state
            if state.health == "unhealthy":
                raise Unhealthy(
                    f"health check failed: {state.health_log or 'no check output'}{self._tail(ref)}"
                )
            if probe is not None and state.status == "running":
                verdict = probe.run(self, ref)
                if verdict is True:
                    return state
                if isinstance(verdict, str):
                    raise Unhealthy(f"health check failed: {verdict}{self._tail(ref)}")
            if time.monotonic() >= deadline:
                if crashed:
                    raise Unhealthy(f"{state.crash()}{self._tail(ref)}")
                raise Unhealthy(
                    f"not healthy after {timeout_s:g}s (status {state.status}, "
                    f"health {state.health}; {state.health_log or 'no check ran yet'})"
                    f"{self._tail(ref)}"
                )
            if should_stop():
                raise Interrupted("stopped waiting: the agent is shutting down")
            time.sleep(POLL_S)

    def exec_probe(self, ref: str, test: list[str]) -> tuple[int, str]:
        """Run a Docker-style health test (``CMD``/``CMD-SHELL``) in the container; its
        exit code and output."""
        if test[0] == "CMD-SHELL":
            cmd = ["/bin/sh", "-c", " ".join(test[1:])]
        else:
            cmd = list(test[1:])
        import docker

        api = self.client.api
        try:
            exec_id = self.call(api.exec_create, ref, cmd, stdout=True, stderr=True)["Id"]
            out = self.call(api.exec_start, exec_id)
            code = self.call(api.exec_inspect, exec_id).get("ExitCode")
        except docker.errors.NotFound:
            return 1, "the container is gone"
        text = out.decode(errors="replace").strip() if isinstance(out, bytes) else str(out)
        return (1 if code is None else int(code)), text

    def _tail(self, ref: str, lines: int = 20) -> str:
        """The container's last log lines, for an error message ("" when unavailable)."""
        import docker
        import requests

        try:
            raw = self.call(self.client.api.logs, ref, tail=lines)
        except (MnoError, OSError, requests.RequestException, docker.errors.DockerException):
            return ""  # the message goes without the output
        out = raw.decode(errors="replace").strip()
        return f"; last log lines:\n{out[-1500:]}" if out else "; no log output"

    def list_managed(self, **match: str) -> list[ContainerState]:
        """Every container (running or not) labelled ``mno.managed=true`` and, for each
        ``match`` item, ``mno.<key>=<value>`` (e.g. ``instance=…``, ``namespace=…``)."""
        labels = [f"{MANAGED}=true", *(f"mno.{k}={v}" for k, v in match.items())]
        rows = self.call(self.client.api.containers, all=True, filters={"label": labels})
        out = []
        for row in rows:
            out.append(
                ContainerState(
                    id=row["Id"],
                    name=(row.get("Names") or ["/"])[0].lstrip("/"),
                    status=row.get("State", "unknown"),
                    health=None,
                    labels=row.get("Labels") or {},
                    published={
                        int(p["PrivatePort"]): int(p["PublicPort"])
                        for p in row.get("Ports") or []
                        if p.get("PublicPort") and p.get("Type", "tcp") == "tcp"
                    },
                )
            )
        return out

    def managed_changes(self, seconds: float) -> Iterator[str]:
        """The ids of managed containers that stop, die or are removed during the next
        ``seconds`` (the engine's event stream; the iterator ends after that time)."""
        until = int(time.time() + seconds)
        stream = self.call(
            self.client.api.events,
            until=until,
            decode=True,
            filters={
                "type": "container",
                "label": f"{MANAGED}=true",
                "event": ["die", "stop", "kill", "destroy", "oom"],
            },
        )
        for event in stream:
            yield str(event.get("id") or event.get("Actor", {}).get("ID", ""))

    def logs(
        self,
        ref: str,
        tail: int | None = None,
        follow: bool = False,
        since: datetime | None = None,
    ) -> Iterator[bytes]:
        """The container's output (stdout and stderr as the engine interleaves them);
        ``follow`` goes on until the container stops or the caller stops reading."""
        kwargs: dict[str, Any] = {"stream": True, "follow": follow}
        if tail is not None:
            kwargs["tail"] = tail
        if since is not None:
            kwargs["since"] = since
        # the SDK reads a stream without the client's timeout: a quiet one stays open
        yield from self.call(self.client.api.logs, ref, **kwargs)

    def exec(
        self,
        ref: str,
        cmd: list[str],
        out: Callable[[bytes], None],
        err: Callable[[bytes], None],
    ) -> int:
        """Run ``cmd`` in the running container (no TTY, no stdin), passing its output to
        ``out`` and ``err`` as it comes; returns its exit code."""
        api = self.client.api
        created = self.call(
            api.exec_create, ref, cmd, stdout=True, stderr=True, stdin=False, tty=False
        )
        for stdout, stderr in self.call(api.exec_start, created["Id"], stream=True, demux=True):
            if stdout:
                out(stdout)
            if stderr:
                err(stderr)
        code = self.call(api.exec_inspect, created["Id"]).get("ExitCode")
        return int(code) if code is not None else 1

    def get_archive(self, ref: str, path: str) -> Iterator[bytes]:
        stream, _ = self.call(self.client.api.get_archive, ref, path)
        yield from stream

    def put_archive(self, ref: str, path: str, data: bytes | BinaryIO) -> None:
        """Extract a tar into the container at ``path``. A file object is streamed in
        blocks (its size sent as the length), so memory stays flat for any size."""
        if not self.call(self.client.api.put_archive, ref, path, data):
            raise DockerFailure(f"could not write the archive into {ref[:12]}:{path}")


def _same_owner(wanted: dict[str, str], found: dict[str, str]) -> bool:
    """Whether a container labelled ``found`` is the one a spec labelled ``wanted`` would
    create: the same instance, and the same namespace (or none: made before namespaces
    existed; the instance id alone is the store's own then)."""
    if found.get("mno.instance") != wanted.get("mno.instance"):
        return False
    return found.get(NAMESPACE) in (None, wanted.get(NAMESPACE))


def _ours(network: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a network is the one ``labels`` describe (one made before namespaces
    existed matches without the namespace label)."""
    found = network.get("Labels") or {}
    return all(found.get(k) == v for k, v in labels.items() if k != NAMESPACE) and found.get(
        NAMESPACE
    ) in (None, labels.get(NAMESPACE))


def _shown(labels: dict[str, str] | None) -> str:
    mno = {k: v for k, v in (labels or {}).items() if k.startswith("mno.")}
    return ", ".join(f"{k}={v}" for k, v in sorted(mno.items())) or "none of mno's"


_named_locks: dict[str, threading.Lock] = {}
_named_locks_guard = threading.Lock()


def _named_lock(name: str) -> threading.Lock:
    with _named_locks_guard:
        return _named_locks.setdefault(name, threading.Lock())


def _create_kwargs(spec: ContainerSpec) -> dict[str, Any]:
    kwargs = run_kwargs(spec)
    kwargs.pop("detach", None)
    return kwargs


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "explanation", None) or str(exc)
    text = str(text).replace("\n", " ")
    return text[:300]


_runtimes: dict[tuple[str, str], Runtime] = {}
_runtimes_lock = threading.Lock()


def runtime(host: HostConfig) -> Runtime:
    """The process-wide runtime for a host (clients are kept across ticks)."""
    key = (host.name, host.base_url)
    with _runtimes_lock:
        rt = _runtimes.get(key)
        if rt is None:
            rt = _runtimes[key] = Runtime.for_host(host)
        return rt


def reset() -> None:
    """Drop every cached client (tests, and after a host's settings change)."""
    with _runtimes_lock:
        for rt in _runtimes.values():
            rt.close()
        _runtimes.clear()
