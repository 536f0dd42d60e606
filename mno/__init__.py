"""mno: a control plane for multi-tenant SaaS platforms."""

__version__ = "0.1.0"
