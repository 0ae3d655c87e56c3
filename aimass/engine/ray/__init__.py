"""Replicas as Ray actors on a cluster: the Ray backend of ``engine/replica``."""
