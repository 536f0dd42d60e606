"""Connec sync: declarative REST connectors, connections, canonical records, id maps,
change detection, propagation with echo suppression, conflicts, deletes and rollback."""
