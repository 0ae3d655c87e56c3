"""Who may call what: the access gate (keys, scopes, rate limits, budgets, usage) without HTTP."""
