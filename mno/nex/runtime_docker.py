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
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mno.errors import MnoError, Unavailable

if TYPE_CHECKING:
    from mno.platform import HostConfig

MANAGED = "mno.managed"
POLL_S = 0.1


class HostDown(Unavailable):
    """The Docker engine of a host cannot be reached."""


class DockerFailure(MnoError):
    """The Docker engine refused or failed a request."""


class Unhealthy(MnoError):
    """A container did not become healthy."""


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
    health_interval_s: float = 1.0
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
            "interval": int(spec.health_interval_s * 1e9),
            "timeout": int(spec.health_timeout_s * 1e9),
            "retries": spec.health_retries,
            "start_period": int(spec.health_start_period_s * 1e9),
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
    )


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

    def ensure_network(self, name: str, labels: dict[str, str]) -> None:
        import docker

        try:
            self.call(self.client.api.inspect_network, name)
        except docker.errors.NotFound:
            try:
                self.call(self.client.api.create_network, name, driver="bridge", labels=labels)
            except DockerFailure as exc:
                if "already exists" not in str(exc):
                    raise

    def remove_network(self, name: str) -> bool:
        import docker

        try:
            self.call(self.client.api.remove_network, name)
        except docker.errors.NotFound:
            return False
        return True

    def ensure_volume(self, name: str, labels: dict[str, str]) -> None:
        self.call(self.client.api.create_volume, name, labels=labels)  # idempotent

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
        kwargs = _create_kwargs(spec) | {"command": None, "version": self.client.api._version}
        try:
            args = _create_container_args(kwargs)
            return str(self.call(self.client.api.create_container, **args)["Id"])
        except DockerFailure as exc:
            cause = exc.__cause__
            if not (isinstance(cause, docker.errors.APIError) and cause.status_code == 409):
                raise
        current = self.inspect(spec.name, spec.port)
        if current is None:
            raise DockerFailure(f"container {spec.name} exists but cannot be inspected")
        return current.id

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
        should_stop: Callable[[], bool] = lambda: False,
    ) -> ContainerState:
        """Wait until the container is healthy (or running, without a health check).

        The whole wait counts as time spent on Docker (``docker_seconds``)."""
        before, started = docker_seconds(), time.perf_counter()
        try:
            return self._wait_ready(ref, port, timeout_s, should_stop)
        finally:
            _clock.seconds = before + time.perf_counter() - started

    def _wait_ready(
        self, ref: str, port: int, timeout_s: float, should_stop: Callable[[], bool]
    ) -> ContainerState:
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.inspect(ref, port)
            if state is None:
                raise Unhealthy(f"container {ref[:12]} disappeared")
            if state.status in ("exited", "dead"):
                raise Unhealthy(f"container exited with code {state.exit_code}{self._tail(ref)}")
            if state.status == "running" and state.health in (None, "healthy"):
                return state
            if state.health == "unhealthy":
                raise Unhealthy(f"health check failed ({state.health_log})")
            if time.monotonic() >= deadline:
                raise Unhealthy(
                    f"not healthy after {timeout_s:g}s (status {state.status}, "
                    f"health {state.health}; {state.health_log or 'no check ran yet'})"
                )
            if should_stop():
                raise Unhealthy("stopped waiting: the agent is shutting down")
            time.sleep(POLL_S)

    def _tail(self, ref: str) -> str:
        import docker
        import requests

        try:
            out = self.call(self.client.api.logs, ref, tail=5).decode(errors="replace").strip()
        except (MnoError, OSError, requests.RequestException, docker.errors.DockerException):
            return ""  # the message goes without the output
        return f"; last output: {out[-300:]}" if out else ""

    def list_managed(self) -> list[ContainerState]:
        """Every container (running or not) labelled ``mno.managed=true``."""
        rows = self.call(self.client.api.containers, all=True, filters={"label": f"{MANAGED}=true"})
        out = []
        for row in rows:
            out.append(
                ContainerState(
                    id=row["Id"],
                    name=(row.get("Names") or ["/"])[0].lstrip("/"),
                    status=row.get("State", "unknown"),
                    health=None,
                    labels=row.get("Labels") or {},
                )
            )
        return out

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

    def put_archive(self, ref: str, path: str, data: bytes) -> None:
        if not self.call(self.client.api.put_archive, ref, path, data):
            raise DockerFailure(f"could not write the archive into {ref[:12]}:{path}")


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
