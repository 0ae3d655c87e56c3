"""The web console at ``/ui``: server-rendered pages over the same API and the same keys.

``middleware.ConsoleMiddleware`` (outermost in ``server/app.py:MIDDLEWARE``) turns a signed-in
browser session into the ``Authorization`` header the access middleware checks, requires the
CSRF token on every state-changing request, and maps ``/ui/api/<path>`` onto ``/<path>``: the
console's buttons call the very routes an API client calls, so keys, scopes, limits, usage and
audit apply to them unchanged. ``pages`` renders the pages; ``history`` keeps a few minutes of
metric samples for the live charts.
"""
