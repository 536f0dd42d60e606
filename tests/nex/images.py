"""Test images built locally (no registry is needed): busybox-static serving a page.

``mno-test/web:<tag>`` is ``FROM scratch`` with busybox, a page at ``/`` that says the
tag, a health file at ``/health`` (missing from the ``broken`` tag, so its health check
fails) and ``httpd`` on port 8080 serving ``/www``. A volume mounted at ``/www/data`` is
served at ``/data/``.
"""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path
from typing import Any

REPO = "mno-test/web"
PORT = 8080
TAGS = ("1", "2", "broken")


def busybox_path() -> Path:
    found = shutil.which("busybox")
    if not found:
        raise RuntimeError("busybox is not installed (apt-get install busybox-static)")
    return Path(found)


def _context(tag: str) -> bytes:
    """A build context (tar) for one tag."""
    dockerfile = "\n".join(
        [
            "FROM scratch",
            "COPY busybox /bin/busybox",
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]',
            "COPY www /www",
            f"EXPOSE {PORT}",
            f'CMD ["/bin/httpd", "-f", "-v", "-p", "{PORT}", "-h", "/www"]',
            "",
        ]
    )
    files: dict[str, bytes] = {
        "Dockerfile": dockerfile.encode(),
        "www/index.html": f"hello from version {tag}\n".encode(),
        "www/data/.keep": b"",
    }
    if tag != "broken":
        files["www/health"] = b"ok\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        busybox = busybox_path().read_bytes()
        info = tarfile.TarInfo("busybox")
        info.size = len(busybox)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(busybox))
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def ensure(client: Any, tags: tuple[str, ...] = TAGS) -> list[str]:
    """Build any missing tag; returns the image references."""
    import docker

    refs = []
    for tag in tags:
        ref = f"{REPO}:{tag}"
        try:
            client.images.get(ref)
        except docker.errors.ImageNotFound:
            client.images.build(
                fileobj=io.BytesIO(_context(tag)), custom_context=True, tag=ref, rm=True
            )
        refs.append(ref)
    return refs


def remove_leftovers(client: Any, older_than_s: float = 900) -> int:
    """Remove containers made from the test images that an interrupted run left behind
    (a killed test or bench cannot clean up; their health checks would load the engine).
    Only containers of ``mno-test/web`` images older than ``older_than_s`` are touched,
    so a test run going on beside this one keeps its own."""
    import time
    from datetime import datetime

    import docker

    removed = 0
    for tag in TAGS:
        try:
            client.images.get(f"{REPO}:{tag}")
        except docker.errors.ImageNotFound:
            continue
        try:
            found = client.containers.list(all=True, filters={"ancestor": f"{REPO}:{tag}"})
        except docker.errors.NotFound:  # one was removed while listed, by a run beside this
            continue
        for container in found:
            created = container.attrs.get("Created", "")[:19]
            try:
                age = time.time() - datetime.fromisoformat(created + "+00:00").timestamp()
            except ValueError:
                continue
            if age < older_than_s:
                continue
            try:
                container.remove(force=True)
                removed += 1
            except docker.errors.NotFound:
                pass
    return removed
