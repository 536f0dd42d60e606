"""GitOps: the platform declared in YAML documents, validated, diffed, planned and applied.

``documents`` reads the files, ``kinds`` maps each kind to its domain functions, ``diff``
computes change sets, ``plan`` saves and checks them, ``apply`` writes them in one
transaction, ``prune`` decides what may be deleted and ``export`` writes the store back out.
"""
