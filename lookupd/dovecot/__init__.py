"""Dovecot's side of the lookup daemon: passdb/userdb answers, the dict proxy protocol (Dovecot
2.3), and quota usage from `quota_clone`. The HTTP endpoints for Dovecot's Lua driver are routes
of `lookupd.http` over the same answers (`lookupd.dovecot.auth`)."""
