"""Glance WSGI entry point for scripts/dev-cloud (served by gunicorn): Glance's own
application, with SQLite transactions made to wait for each other first (see
sqlite_immediate).

Copied into the dev-cloud state directory on every `up`, so running services never
depend on the repository checkout.
"""

import sqlite_immediate

sqlite_immediate.install()

from glance.wsgi.api import application  # noqa: E402,F401
