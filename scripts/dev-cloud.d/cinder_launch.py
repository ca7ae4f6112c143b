"""Runs cinder-scheduler or cinder-volume for scripts/dev-cloud, with SQLite
transactions that wait for each other (see sqlite_immediate).

Usage: python cinder_launch.py scheduler|volume --config-file C --log-file L

Cinder's own entry module is imported first: cinder.cmd.volume monkey-patches eventlet
at import, which must happen before anything else loads threading or SQLAlchemy. Then
the SQLite hook is installed and the service's main() runs with the remaining argv.

Copied into the dev-cloud state directory on every `up`, so running services never
depend on the repository checkout.
"""

import importlib
import sys

SERVICES = ("scheduler", "volume")

if len(sys.argv) < 2 or sys.argv[1] not in SERVICES:
    sys.exit(f"usage: {sys.argv[0]} {'|'.join(SERVICES)} [cinder options]")
service = sys.argv.pop(1)
entry = importlib.import_module(f"cinder.cmd.{service}")

import sqlite_immediate  # noqa: E402

sqlite_immediate.install()
sys.argv[0] = f"cinder-{service}"
sys.exit(entry.main())
