"""Decoding of media a client sends (images; audio lives beside it), with limits checked first.

A low layer like ``aimass.dtypes``: it imports only ``aimass.errors`` and its own libraries, so
runtimes (in the replica process) and services can both use it. Everything a client can send
comes out as a decoded value, an ``InvalidInput`` (400) or a ``PayloadTooLarge`` (413): never
another exception.
"""
