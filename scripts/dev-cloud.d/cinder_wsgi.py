"""Cinder API WSGI entry point for scripts/dev-cloud (served by gunicorn).

cinder.wsgi.api builds the application at import time and makes oslo.config parse
sys.argv, which under gunicorn is gunicorn's own command line (the worker would exit
with code 2), so argv is replaced first: the config file and log file come from
IMGFERRY_CINDER_CONF and IMGFERRY_CINDER_LOG, which scripts/dev-cloud sets in the
environment of the gunicorn it starts. SQLite transactions are made to wait for each
other (see sqlite_immediate).

Copied into the dev-cloud state directory on every `up`, so running services never
depend on the repository checkout.
"""

import os
import sys

import sqlite_immediate

sys.argv = [sys.argv[0], "--config-file", os.environ["IMGFERRY_CINDER_CONF"],
            "--log-file", os.environ["IMGFERRY_CINDER_LOG"]]
sqlite_immediate.install()

from cinder.wsgi.api import application  # noqa: E402,F401
