"""The hub's HTTP API (FastAPI): the Developer API for apps and the IDM authorize call.

``mno.api.routes:router`` is an APIRouter that the agents' listener mounts too;
``mno.api.server.build_app()`` wraps it in an app for ``mno serve``.
"""
