"""Replicas as local worker processes and the typed messages on their pipes."""
