"""Printable invoices and credit notes: the HTML page and its PDF.

The page is rendered with Jinja2 from a template, chosen in this order:

1. ``$MNO_HOME/templates/<tenant key>/invoice.html``: the tenant's own layout;
2. ``$MNO_HOME/templates/invoice.html``: the platform's layout;
3. the built-in ``templates/invoice.html.j2``.

An override gets the same context as the built-in template (its header comment lists
it) and is rendered in Jinja2's sandbox. Files next to it (a logo, a stylesheet) may be
referenced by relative URLs; the PDF renderer reads nothing else (``data:`` URLs aside),
so a template cannot make the renderer fetch from the network or read other files.

The PDF is made by WeasyPrint, imported only when a PDF is asked for (it is slow to
import and needs the pango libraries of the host).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mno import settings
from mno.billing import explain
from mno.errors import BadInput, Unavailable

if TYPE_CHECKING:
    from mno.store.models.billing import Invoice
    from mno.store.models.tenancy import Tenant

TEMPLATE = "invoice.html.j2"
OVERRIDE = "invoice.html"
TEMPLATES_DIR = "templates"


def override_dir(tenant_key: str) -> Path | None:
    """The directory of the override template that applies to the tenant, if any."""
    root = settings.home() / TEMPLATES_DIR
    for d in (root / tenant_key, root):
        if (d / OVERRIDE).is_file():
            return d
    return None


def _prorated(lines: list[dict[str, Any]]) -> bool:
    for ln in lines:
        try:
            if Decimal(str(ln["proration"])) != 1:
                return True
        except InvalidOperation:
            return True
    return False


def _env(directory: Path | None) -> Any:
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    env: jinja2.Environment
    if directory is None:
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("mno.billing", "templates"), autoescape=True
        )
    else:
        env = SandboxedEnvironment(loader=jinja2.FileSystemLoader(directory), autoescape=True)
    env.filters.update(
        qty=explain.qty,
        price=explain.price,
        ratio=explain.ratio,
        unit_price=explain.unit_price,
        notes=explain.notes,
    )
    return env


def html(
    inv: Invoice, tenant: Tenant, data: dict[str, Any], lines: list[dict[str, Any]]
) -> tuple[str, Path | None]:
    """The invoice's page from its view (``export.page`` gives it) and the directory of
    the override it came from (None: the built-in template)."""
    directory = override_dir(tenant.key)
    env = _env(directory)
    context = {
        "inv": inv,
        "tenant": tenant,
        "lines": lines,
        "t": data,
        "title": "Credit note" if inv.kind == "credit_note" else "Invoice",
        "issued": inv.issued_at.date().isoformat() if inv.issued_at else None,
        "due": inv.due_at.date().isoformat() if inv.due_at else None,
        "prorated": _prorated(lines),
    }
    try:
        template = env.get_template(OVERRIDE if directory else TEMPLATE)
        page: str = template.render(**context)
    except Exception as exc:  # reported: a broken override is the operator's to fix
        if directory is None:
            raise
        where = directory / OVERRIDE
        raise BadInput(f"invoice template {where} does not render: {exc}") from exc
    return page, directory


def filename(inv: Invoice) -> str:
    """``INV-2026-000001.pdf``, or ``invoice-<id>.pdf`` for a draft."""
    return f"{inv.number or f'invoice-{inv.id}'}.pdf"


def _fetcher(directory: Path | None) -> Any:
    from weasyprint.urls import URLFetcher

    allowed = directory.resolve() if directory else None

    class LocalOnly(URLFetcher):  # type: ignore[misc]
        """``data:`` URLs, and files inside the override's directory; nothing else."""

        def fetch(self, url: str, headers: Any = None) -> Any:
            if url.startswith("data:"):
                return super().fetch(url, headers)
            if url.startswith("file://") and allowed is not None:
                from urllib.parse import unquote, urlsplit

                path = Path(unquote(urlsplit(url).path)).resolve()
                if path.is_relative_to(allowed) and path.is_file():
                    return super().fetch(url, headers)
            raise ValueError(f"an invoice template may not load {url}")

    return LocalOnly(allowed_protocols=("data", "file"), allow_redirects=False)


def render_pdf(page: str, directory: Path | None) -> bytes:
    """A page rendered to PDF; relative URLs resolve inside ``directory``."""
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as exc:
        raise Unavailable(
            f"PDF rendering is not available: {exc}",
            "install weasyprint and the pango libraries (Debian: libpango-1.0-0 "
            "libpangoft2-1.0-0 fonts-dejavu-core)",
        ) from exc
    base = f"{directory.resolve().as_uri()}/" if directory else None
    document = HTML(string=page, base_url=base, url_fetcher=_fetcher(directory))
    data: bytes = document.write_pdf()
    return data
