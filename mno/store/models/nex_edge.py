"""Nex edge table: operator-supplied TLS certificates for instance domains.

The certificate chain is public and kept as PEM; the private key is sealed under the
master key (``mno.crypto``) and only opened to hand it to the edge proxy.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from mno.store.models.base import Base
from mno.store.types import UTCDateTime


class DomainCert(Base, table=True):
    __tablename__ = "nex_domain_cert"

    domain: str = Field(max_length=253, unique=True, index=True)  # or *.example.com
    names: list[Any] = Field(default_factory=list, sa_type=sa.JSON)  # the leaf's DNS names
    cert_pem: str = Field(sa_type=sa.Text)  # leaf first, then the intermediates
    key_enc: str = Field(sa_type=sa.Text)  # the private key, sealed (mno.crypto)
    fingerprint: str = Field(max_length=64)  # SHA-256 of the leaf, hex
    not_after: datetime = Field(sa_type=UTCDateTime)
