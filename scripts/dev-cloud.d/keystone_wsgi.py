"""Keystone WSGI entry point for scripts/dev-cloud (served by gunicorn).

Keystone 30 ships no keystone-wsgi-public script; its application object lives in
keystone.wsgi.api. Importing it makes oslo.config parse sys.argv, which under
gunicorn is gunicorn's own command line, and the worker exits with code 2. Reset
argv to the program name first. The config file comes from OS_KEYSTONE_CONFIG_DIR,
which scripts/dev-cloud sets in the environment of the gunicorn it starts. SQLite
transactions are made to wait for each other first (see sqlite_immediate).

Copied into the dev-cloud state directory on every `up`, so running services never
depend on the repository checkout.
"""

import sys

import sqlite_immediate

sys.argv = sys.argv[:1]
sqlite_immediate.install()

from keystone.wsgi.api import application  # noqa: E402,F401
