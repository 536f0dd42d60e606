"""Nex: hosted app instances on Docker hosts, tenant provisioning, backups and callbacks."""
