"""The command line: ``aimass`` (main.py) and its key/usage/audit commands (access.py)."""
