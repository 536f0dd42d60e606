"""The Docker Swarm adapter: Nex instances as Swarm services, through a manager's engine.

A host with ``runtime: swarm`` in the platform YAML is a whole swarm: ``base_url`` reaches
one of its manager nodes and every call goes through the docker SDK's services, tasks,
secrets and networks APIs there. Swarm schedules the tasks, restarts them, gates rolling
updates on their health checks and rolls a failed update back; mno declares the service
(``ServiceSpec``) and reads its state (``ServiceState``).

``SwarmRuntime`` extends the docker ``Runtime`` (one client per host, the same error
translation into ``HostDown``/``DockerFailure`` and the same network and volume calls),
so the provisioner's probes and placement treat both runtimes alike.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from mno.nex import runtime_docker
from mno.nex.runtime_docker import DockerFailure, Interrupted, Unhealthy

if TYPE_CHECKING:
    from mno.platform import HostConfig

POLL_S = 0.1
DONE = ("completed",)
ROLLED_BACK = ("rollback_completed",)
STOPPED = ("paused", "rollback_paused")
FAILED_TASK = ("failed", "rejected", "orphaned")


@dataclass
class ServiceSpec:
    """What an instance's service declares (see ``mno.nex.services.spec``)."""

    name: str
    image: str
    port: int
    labels: dict[str, str]  # the service's (deploy) labels: Traefik reads these
    container_labels: dict[str, str]
    replicas: int = 1
    env: dict[str, str] = field(default_factory=dict)
    # (secret id, secret name, file name under /run/secrets, with its labels)
    secrets: list[tuple[str, str, str]] = field(default_factory=list)
    health_cmd: list[str] | None = None
    health_interval_s: float = 10.0
    health_timeout_s: float = 5.0
    health_retries: int = 3
    health_start_period_s: float = 0.0
    memory_limit: int | None = None
    memory_reservation: int | None = None
    nano_cpus_limit: int | None = None
    nano_cpus_reservation: int | None = None
    pids: int | None = None
    volume: str | None = None
    volume_path: str | None = None
    network: str | None = None
    constraints: list[str] = field(default_factory=list)
    spread: list[str] = field(default_factory=list)  # node label descriptors to spread over
    restart_attempts: int = 5
    restart_delay_s: float = 1.0
    monitor_s: float = 5.0
    stop_grace_s: float = 10.0
    publish_mode: str = "ingress"
    stateful: bool = False  # stop-first updates: one writer per volume
    force_update: int = 0


@dataclass
class ServiceState:
    id: str
    name: str
    labels: dict[str, str]
    replicas: int
    image: str
    version: int
    update_state: str | None  # updating|completed|paused|rollback_started|...
    update_message: str | None
    update_started: str | None
    ingress_port: int | None  # the routing mesh's published port
    spec: dict[str, Any]


@dataclass
class TaskInfo:
    id: str
    state: str  # new|pending|assigned|preparing|starting|running|complete|failed|...
    desired: str
    error: str | None
    timestamp: str
    node: str | None
    host_port: int | None  # host-mode publishing: the task's own port
    container_id: str | None
    image: str | None


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _service_state(attrs: dict[str, Any]) -> ServiceState:
    spec = attrs.get("Spec") or {}
    mode = spec.get("Mode") or {}
    replicas = int((mode.get("Replicated") or {}).get("Replicas") or 0)
    update = attrs.get("UpdateStatus") or {}
    ports = (attrs.get("Endpoint") or {}).get("Ports") or []
    ingress = next(
        (int(p["PublishedPort"]) for p in ports if p.get("PublishMode") == "ingress"), None
    )
    image = str(((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image", ""))
    return ServiceState(
        id=attrs["ID"],
        name=spec.get("Name", ""),
        labels=spec.get("Labels") or {},
        replicas=replicas,
        image=image.split("@", 1)[0],
        version=int((attrs.get("Version") or {}).get("Index") or 0),
        update_state=update.get("State"),
        update_message=update.get("Message"),
        update_started=update.get("StartedAt"),
        ingress_port=ingress,
        spec=spec,
    )


def _task(row: dict[str, Any], port: int) -> TaskInfo:
    status = row.get("Status") or {}
    ports = (status.get("PortStatus") or {}).get("Ports") or []
    host_port = next(
        (int(p["PublishedPort"]) for p in ports if int(p.get("TargetPort") or 0) == port),
        None,
    )
    container = (status.get("ContainerStatus") or {}).get("ContainerID")
    image = ((row.get("Spec") or {}).get("ContainerSpec") or {}).get("Image")
    return TaskInfo(
        id=row["ID"],
        state=status.get("State", "unknown"),
        desired=row.get("DesiredState", "unknown"),
        error=status.get("Err") or None,
        timestamp=str(status.get("Timestamp") or ""),
        node=row.get("NodeID"),
        host_port=host_port,
        container_id=container,
        image=str(image).split("@", 1)[0] if image else None,
    )


def service_kwargs(spec: ServiceSpec) -> dict[str, Any]:
    """The low-level ``create_service``/``update_service`` arguments of a spec."""
    from docker import types

    healthcheck = None
    if spec.health_cmd:
        healthcheck = types.Healthcheck(
            test=spec.health_cmd,
            interval=_ns(spec.health_interval_s),
            timeout=_ns(spec.health_timeout_s),
            retries=spec.health_retries,
            start_period=_ns(spec.health_start_period_s),
        )
    mounts = []
    if spec.volume and spec.volume_path:
        mounts.append(types.Mount(spec.volume_path, spec.volume, type="volume"))
    secrets = [
        types.SecretReference(sid, sname, filename=fname) for sid, sname, fname in spec.secrets
    ]
    container = types.ContainerSpec(
        spec.image,
        env=dict[str, str | bytes | None](spec.env),
        labels=spec.container_labels,
        healthcheck=healthcheck,
        mounts=mounts,
        secrets=secrets,
        stop_grace_period=_ns(spec.stop_grace_s),
        init=True,
    )
    if spec.pids:
        # the SDK's ContainerSpec has no PidsLimit (engine API 1.41); Swarm ignores it
        # before 1.41, so it is set only as a hint for newer engines
        container["PidsLimit"] = spec.pids
    resources = types.Resources(
        cpu_limit=spec.nano_cpus_limit,
        mem_limit=spec.memory_limit,
        cpu_reservation=spec.nano_cpus_reservation,
        mem_reservation=spec.memory_reservation,
    )
    restart = types.RestartPolicy(
        condition="on-failure",
        delay=_ns(spec.restart_delay_s),
        max_attempts=spec.restart_attempts,
    )
    placement = (
        types.Placement(
            constraints=spec.constraints or None,
            preferences=[("spread", d) for d in spec.spread] or None,
        )
        if spec.constraints or spec.spread
        else None
    )
    template = types.TaskTemplate(
        container,
        resources=resources,
        restart_policy=restart,
        placement=placement,
        networks=[spec.network] if spec.network else None,
        force_update=spec.force_update,
    )
    order: Literal["start-first", "stop-first"] = "stop-first" if spec.stateful else "start-first"
    update = types.UpdateConfig(
        parallelism=1,
        delay=0,
        failure_action="rollback",
        monitor=_ns(spec.monitor_s),
        max_failure_ratio=0,
        order=order,
    )
    rollback = types.RollbackConfig(
        parallelism=1, delay=0, failure_action="pause", monitor=_ns(spec.monitor_s), order=order
    )
    ports: Any = [{"TargetPort": spec.port, "Protocol": "tcp", "PublishMode": spec.publish_mode}]
    return {
        "task_template": template,
        "name": spec.name,
        "labels": spec.labels,
        "mode": types.ServiceMode("replicated", replicas=spec.replicas),
        "update_config": update,
        "rollback_config": rollback,
        "endpoint_spec": types.EndpointSpec(ports=ports),
    }


def mounted_volume(spec: dict[str, Any], target: str | None) -> str | None:
    """The volume a raw service spec mounts at ``target``."""
    container = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
    for mount in container.get("Mounts") or []:
        if target and mount.get("Target") == target and mount.get("Type", "volume") == "volume":
            return str(mount.get("Source"))
    return None


def with_volume(spec: dict[str, Any], target: str, volume: str) -> dict[str, Any]:
    """A copy of a raw service spec that mounts ``volume`` at ``target`` instead."""
    import copy

    out = copy.deepcopy(spec)
    container = out.setdefault("TaskTemplate", {}).setdefault("ContainerSpec", {})
    for mount in container.get("Mounts") or []:
        if mount.get("Target") == target:
            mount["Source"] = volume
    return out


class SwarmRuntime(runtime_docker.Runtime):
    """Swarm calls through one manager node."""

    # -- the swarm ------------------------------------------------------------------

    def node_id(self) -> str:
        """The id of the node the manager engine runs on (where mno creates volumes)."""
        info = self.call(lambda: self.client.info())
        swarm = info.get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            raise DockerFailure(
                f"host {self.name}: the engine is not a swarm manager",
                "run `docker swarm init` there, or point base_url at a manager node",
            )
        return str(swarm["NodeID"])

    # -- services ---------------------------------------------------------------------

    def service(self, name: str) -> ServiceState | None:
        import docker

        try:
            attrs = self.call(self.client.api.inspect_service, name)
        except docker.errors.NotFound:
            return None
        return _service_state(attrs)

    def services(self, **match: str) -> list[ServiceState]:
        """The services labelled ``mno.managed=true`` and ``mno.<key>=<value>``."""
        labels = [f"{runtime_docker.MANAGED}=true", *(f"mno.{k}={v}" for k, v in match.items())]
        rows = self.call(self.client.api.services, filters={"label": labels})
        return [_service_state(r) for r in rows]

    def create_service(self, spec: ServiceSpec) -> ServiceState:
        """Create the service (an existing one of that name is returned as it is)."""
        try:
            self.call(self.client.api.create_service, **service_kwargs(spec))
        except DockerFailure as exc:
            if "already exists" not in str(exc) and "name conflicts" not in str(exc):
                raise
        found = self.service(spec.name)
        if found is None:
            raise DockerFailure(f"service {spec.name} disappeared after its creation")
        if found.labels.get("mno.instance") != spec.labels.get("mno.instance"):
            raise runtime_docker.NameClash(
                f"host {self.name}: service {spec.name} exists and is not this instance's",
                "remove or rename that service",
            )
        return found

    def update_service(self, current: ServiceState, spec: ServiceSpec) -> None:
        """Replace the service's spec (Swarm rolls the tasks per its update config)."""
        self.call(
            self.client.api.update_service,
            current.id,
            current.version,
            fetch_current_spec=False,
            **service_kwargs(spec),
        )

    def scale(self, current: ServiceState, replicas: int) -> None:
        """Set only the replicas of the current spec (no rolling update)."""
        mode = {"Replicated": {"Replicas": replicas}}
        self.put_spec(current, current.spec | {"Mode": mode})

    def put_spec(self, current: ServiceState, spec: dict[str, Any]) -> None:
        """Replace the service's spec with a raw one (as an inspect returns it): an edit
        of the current spec, or a previous spec put back."""
        self.call(
            self.client.api.update_service,
            current.id,
            current.version,
            task_template=spec.get("TaskTemplate") or {},
            name=spec.get("Name"),
            labels=spec.get("Labels"),
            mode=spec.get("Mode"),
            update_config=spec.get("UpdateConfig"),
            rollback_config=spec.get("RollbackConfig"),
            networks=None,
            endpoint_spec=spec.get("EndpointSpec"),
        )

    def remove_service(self, ref: str) -> bool:
        import docker

        try:
            self.call(self.client.api.remove_service, ref)
        except docker.errors.NotFound:
            return False
        return True

    def tasks(self, service: str, port: int, desired: str | None = None) -> list[TaskInfo]:
        """The service's tasks, newest first (``desired``: only those Swarm wants in that
        state, e.g. ``running``)."""
        filters: dict[str, Any] = {"service": service}
        if desired:
            filters["desired-state"] = desired
        rows = self.call(self.client.api.tasks, filters=filters)
        tasks = [_task(r, port) for r in rows]
        return sorted(tasks, key=lambda t: t.timestamp, reverse=True)

    def task_port(self, task: TaskInfo, port: int) -> int | None:
        """The IPv4 host port of a host-mode task. Swarm's port status lists the IPv4 and
        IPv6 bindings without saying which is which (and an engine may give them
        different numbers), so a task on this engine's node is asked through its
        container; one elsewhere falls back to the first binding."""
        import docker

        if task.container_id:
            try:
                attrs = self.call(self.client.api.inspect_container, task.container_id)
            except docker.errors.NotFound:
                return task.host_port
            bound = ((attrs.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{port}/tcp")
            for entry in bound or []:
                if ":" not in str(entry.get("HostIp") or ""):
                    return int(entry["HostPort"])
        return task.host_port

    def service_logs(
        self,
        name: str,
        tail: int | None = None,
        follow: bool = False,
        since: datetime | None = None,
    ) -> Iterator[bytes]:
        """The output of every task of the service (stdout and stderr), as ``docker
        service logs`` gives it; ``follow`` goes on until the caller stops reading."""
        kwargs: dict[str, Any] = {"stdout": True, "stderr": True, "follow": follow}
        if tail is not None:
            kwargs["tail"] = tail
        if since is not None:
            kwargs["since"] = int(since.timestamp())  # the SDK passes it on as it is
        yield from self.call(self.client.api.service_logs, name, **kwargs)

    # -- waiting -----------------------------------------------------------------------

    def wait_converged(
        self,
        service: str,
        replicas: int,
        port: int,
        timeout_s: float,
        *,
        failures: int = 3,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> list[TaskInfo]:
        """Wait until ``replicas`` tasks run (healthy: Swarm calls a task running only
        once its health check passed); their list. ``Unhealthy`` with the last task error
        when ``failures`` tasks failed meanwhile or the time is up."""
        deadline = time.monotonic() + timeout_s
        seen_failed: set[str] = set()
        first = True
        while True:
            tasks = self.tasks(service, port)
            if first:  # failures before the wait are not this wait's
                seen_failed = {t.id for t in tasks if t.state in FAILED_TASK}
                first = False
            running = [t for t in tasks if t.state == "running" and t.desired == "running"]
            if len(running) == replicas and not any(
                t.desired == "running" and t.state != "running" for t in tasks
            ):
                return running
            failed = [t for t in tasks if t.state in FAILED_TASK and t.id not in seen_failed]
            if len(failed) >= failures:
                raise Unhealthy(
                    f"{len(failed)} tasks of service {service} failed: "
                    f"{failed[0].error or failed[0].state}"
                )
            if time.monotonic() >= deadline:
                last = next((t for t in tasks if t.error), None)
                raise Unhealthy(
                    f"service {service}: {len(running)}/{replicas} tasks running after "
                    f"{timeout_s:g}s" + (f" (last task error: {last.error})" if last else "")
                )
            if should_stop():
                raise Interrupted("stopped waiting: the agent is shutting down")
            time.sleep(POLL_S)

    def wait_update(
        self,
        service: str,
        before: str | None,
        timeout_s: float,
        *,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> ServiceState:
        """Wait for the rolling update Swarm started after ``before`` (the previous
        ``UpdateStatus.StartedAt``) to end: completed, rolled back or paused."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.service(service)
            if state is None:
                raise DockerFailure(f"service {service} was removed during its update")
            fresh = state.update_started is not None and state.update_started != before
            if fresh and state.update_state in (*DONE, *ROLLED_BACK, *STOPPED):
                return state
            if time.monotonic() >= deadline:
                raise Unhealthy(
                    f"service {service}: update still {state.update_state} after "
                    f"{timeout_s:g}s ({state.update_message or 'no message'})"
                )
            if should_stop():
                raise Interrupted("stopped waiting: the agent is shutting down")
            time.sleep(POLL_S)

    # -- secrets -------------------------------------------------------------------------

    def secrets(self, **match: str) -> list[dict[str, Any]]:
        """The secrets labelled ``mno.<key>=<value>`` (their id, name and labels)."""
        labels = [f"mno.{k}={v}" for k, v in match.items()]
        rows = self.call(self.client.api.secrets, filters={"label": labels})
        return [
            {"id": r["ID"], "name": r["Spec"]["Name"], "labels": r["Spec"].get("Labels") or {}}
            for r in rows
        ]

    def create_secret(self, name: str, value: str, labels: dict[str, str]) -> str:
        """Create a secret (its value goes to the managers' encrypted Raft log only)."""
        made = self.call(self.client.api.create_secret, name, value.encode(), labels=labels)
        return str(made["ID"])

    def remove_secret(self, ref: str) -> bool:
        import docker

        try:
            self.call(self.client.api.remove_secret, ref)
        except docker.errors.NotFound:
            return False
        except DockerFailure as exc:
            if "in use" in str(exc):
                return False  # a task still mounts it; the next pass removes it
            raise
        return True


_runtimes: dict[tuple[str, str], SwarmRuntime] = {}
_lock = threading.Lock()


def runtime(host: HostConfig) -> SwarmRuntime:
    """The process-wide swarm runtime of a host (clients are kept across ticks)."""
    key = (host.name, host.base_url)
    with _lock:
        rt = _runtimes.get(key)
        if rt is None:
            rt = _runtimes[key] = SwarmRuntime(host.name, host.base_url, host.timeout)
        return rt


def reset() -> None:
    """Drop every cached client (tests, and after a host's settings change)."""
    with _lock:
        for rt in _runtimes.values():
            rt.close()
        _runtimes.clear()
