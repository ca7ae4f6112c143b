"""Processes, health checks and one-time set-up for scripts/dev-cloud.

Owns starting processes (gunicorn for each Keystone and Glance; dc_cinder and
dc_rabbitmq use the same spawn and stop), the PID records, stopping, the readiness
checks, rendering the configs and the keystone-manage / glance-manage steps.

It must never touch a process it did not start: a PID record holds the PID, its start
time (from /proc) and its working directory, and all three must match before a
signal is sent.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import time

from dc_common import (ADMIN_PASSWORD, MEMBER_PASSWORD, REGION, SERVICE_PASSWORD,
                       STATE, TIMEOUT, VENV, DevCloudError, read_text, render, say,
                       write_atomic)
from dc_keystone import issue_token, request


def proc_start_time(pid):
    """Start time of pid in clock ticks since boot, or None if gone or a zombie."""
    stat = read_text(f"/proc/{pid}/stat")
    if stat is None:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def proc_children(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_text(f"/proc/{entry}/stat")
            if stat and int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                kids.append(int(entry))
    return kids


def is_ours(rec):
    """True only if the recorded process still runs and is the one we started."""
    pid = rec.get("pid")
    if not isinstance(pid, int) or pid <= 1:
        return False
    if proc_start_time(pid) != rec.get("start_time"):
        return False
    try:
        return os.readlink(f"/proc/{pid}/cwd") == rec.get("cwd")
    except OSError:
        return False


def read_pidfile(cloud, service):
    text = read_text(cloud.pidfile(service))
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def running(cloud, service):
    """The PID record of a service we started that is still alive, else None."""
    rec = read_pidfile(cloud, service)
    return rec if rec and is_ours(rec) else None


def reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def port_free(port, wait=5.0):
    """True if 127.0.0.1:port can be bound, allowing a just-killed server's
    orphaned worker a few seconds to notice and exit."""
    deadline = time.monotonic() + wait
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return True
            except OSError:
                if time.monotonic() > deadline:
                    return False
        time.sleep(0.2)


def rotate(path, limit=64 << 20):
    """Keep one old generation of a log that grew past `limit` bytes."""
    try:
        if os.path.getsize(path) > limit:
            os.replace(path, path + ".1")
    except FileNotFoundError:
        pass


def gunicorn_argv(owner, service, port, app, threads, timeout=None):
    """gunicorn serving `app` (module:attr from the state dir's lib/) on 127.0.0.1."""
    argv = [
        os.path.join(VENV, "bin", "gunicorn"),
        "--bind", f"127.0.0.1:{port}",
        "--workers", "1",            # keystone: memory cache is per process
        "--worker-class", "gthread",
        "--threads", str(threads),
        "--no-control-socket",        # gunicorn 27 would otherwise create ~/.gunicorn
        "--graceful-timeout", "5",
        "--name", f"imgferry-dev-{owner.name}-{service}",
        "--chdir", owner.dir,
        "--error-logfile", os.path.join(owner.logdir, f"{service}-gunicorn.log"),
        "--access-logfile", os.path.join(owner.logdir, f"{service}-access.log"),
        "--pythonpath", os.path.join(STATE, "lib"),
    ]
    if timeout is not None:
        argv += ["--timeout", str(timeout)]
    return argv + [app]


def clean_env(**extra):
    """The environment for a service: ours, less OpenStack client and gunicorn
    settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OS_", "GUNICORN_"))}
    env.update(extra)
    return env


def spawn(owner, service, argv, env, port=None, log=None):
    """Starts argv in its own session with cwd owner.dir and records its PID file.
    `owner` is a Cloud or a Broker (name, dir, logdir, pidfile(), port_variable())."""
    if port is not None and not port_free(port):
        raise DevCloudError(
            f"{service}: 127.0.0.1:{port} is in use by a process dev-cloud did not "
            f"start; free it or set {owner.port_variable(service)}")
    log = log or os.path.join(owner.logdir, f"{service}-gunicorn.log")
    for path in (log, *(os.path.join(owner.logdir, f"{service}{suffix}")
                        for suffix in ("-access.log", ".log"))):
        rotate(path)
    with open(log, "a") as out:
        proc = subprocess.Popen(argv, cwd=owner.dir, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    start = None
    for _ in range(50):
        start = proc_start_time(proc.pid)
        if start is not None:
            break
        time.sleep(0.01)
    rec = {"pid": proc.pid, "start_time": start, "cwd": os.path.realpath(owner.dir),
           "port": port, "service": service, "cloud": owner.name}
    write_atomic(owner.pidfile(service), json.dumps(rec) + "\n")
    where = f" on 127.0.0.1:{port}" if port is not None else ""
    say(owner.name, f"started {service} (pid {proc.pid}){where}")
    return rec


def start_service(cloud, service):
    """gunicorn for Keystone or Glance."""
    port = cloud.port(service)
    if service == "keystone":
        argv = gunicorn_argv(cloud, service, port, "keystone_wsgi:application", 4)
        env = clean_env(OS_KEYSTONE_CONFIG_DIR=cloud.etc_keystone)
    else:
        # --timeout 0: a multi-GiB upload or download must never be cut off.
        argv = gunicorn_argv(cloud, service, port, "glance_wsgi:application", 8, 0)
        env = clean_env(OS_GLANCE_CONFIG_DIR=cloud.etc_glance)
    return spawn(cloud, service, argv, env, port)


def signal_pid(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:  # exited since we checked
        pass


def stop_service(cloud, service):
    rec = read_pidfile(cloud, service)
    if rec is None:
        say(cloud.name, f"{service}: not running")
        return
    if not is_ours(rec):
        os.unlink(cloud.pidfile(service))
        say(cloud.name, f"{service}: pid {rec.get('pid')} is gone or no longer ours; "
                        "removed its stale PID file")
        return
    pid = rec["pid"]
    kids = [(k, proc_start_time(k)) for k in proc_children(pid)]
    signal_pid(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while is_ours(rec) and time.monotonic() < deadline:
        reap(pid)
        time.sleep(0.1)
    if is_ours(rec):
        say(cloud.name, f"{service}: pid {pid} ignored SIGTERM for 15 s; SIGKILL")
        signal_pid(pid, signal.SIGKILL)
        time.sleep(0.2)
        reap(pid)
    for kid, start in kids:  # workers orphaned by a killed master
        if start is not None and proc_start_time(kid) == start:
            signal_pid(kid, signal.SIGKILL)
    os.unlink(cloud.pidfile(service))
    say(cloud.name, f"stopped {service} (pid {pid})")


# --------------------------------------------------------------------------- health

def check_keystone(cloud, timeout):
    issue_token(cloud, "admin", ADMIN_PASSWORD, "admin", timeout)


def check_glance(cloud, timeout):
    token = issue_token(cloud, "source-user", MEMBER_PASSWORD, "source", timeout)
    status, _, parsed = request("GET", cloud.glance_url + "/v2/images?limit=1",
                                token=token, timeout=timeout)
    if status != 200 or not isinstance(parsed, dict) or "images" not in parsed:
        raise DevCloudError(f"GET /v2/images: HTTP {status}")


CHECKS = {"keystone": check_keystone, "glance": check_glance}


def healthy(cloud, service, timeout=10):
    try:
        CHECKS[service](cloud, timeout)
        return True, "ok"
    except (DevCloudError, OSError) as e:
        return False, str(e)


def wait_ready(cloud, service, rec, check=None):
    """Polls check(timeout) (default: the service's health check) until it passes;
    fails early if the process exits."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        timeout = max(0.5, deadline - time.monotonic())
        if check is None:
            ok, why = healthy(cloud, service, timeout)
        else:
            try:
                check(timeout)
                ok, why = True, "ok"
            except (DevCloudError, OSError) as e:
                ok, why = False, str(e)
        if ok:
            return
        if not is_ours(rec):
            reap(rec["pid"])
            raise DevCloudError(f"{service} exited during start-up ({why})")
        if time.monotonic() > deadline:
            raise DevCloudError(f"{service} not ready after {TIMEOUT:.0f} s ({why})")
        time.sleep(0.2)


# --------------------------------------------------------------------------- set-up

def write_configs(cloud):
    for d in (cloud.logdir, cloud.rundir, cloud.etc_keystone, cloud.etc_glance,
              *(os.path.join(cloud.dir, "glance", sub) for sub in
                ("images", "images-spare", "staging", "tasks", "cache", "locks"))):
        os.makedirs(d, exist_ok=True)
    values = dict(cloud=cloud.name, cdir=os.path.realpath(cloud.dir),
                  logdir=os.path.realpath(cloud.logdir),
                  keystone_port=cloud.keystone_port, glance_port=cloud.glance_port,
                  service_password=SERVICE_PASSWORD)
    render("keystone.conf.in", os.path.join(cloud.etc_keystone, "keystone.conf"),
           0o600, **values)
    render("glance-api.conf.in", os.path.join(cloud.etc_glance, "glance-api.conf"),
           0o600, **values)
    # Glance's own paste pipeline, from the installed package (not from the repo).
    shutil.copyfile(os.path.join(VENV, "etc", "glance", "glance-api-paste.ini"),
                    os.path.join(cloud.etc_glance, "glance-api-paste.ini"))


def run_logged(cloud, argv, env_extra=None):
    log = os.path.join(cloud.logdir, "setup.log")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(env_extra or {})
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(argv)}\n")
        f.flush()
        t0 = time.monotonic()
        rc = subprocess.call(argv, stdin=subprocess.DEVNULL, stdout=f,
                             stderr=subprocess.STDOUT, env=env, cwd=cloud.dir)
        f.write(f"# exit {rc} after {time.monotonic() - t0:.1f} s\n")
    if rc != 0:
        raise DevCloudError(f"{os.path.basename(argv[0])} {argv[3]} failed "
                            f"(exit {rc}); see {log}")


def setup_databases(cloud):
    """keystone-manage and glance-manage steps; all idempotent."""
    bin_ = os.path.join(VENV, "bin")
    kconf = ["--config-file", os.path.join(cloud.etc_keystone, "keystone.conf")]
    user = ["--keystone-user", str(os.getuid()), "--keystone-group", str(os.getgid())]
    for sub in ("fernet-keys", "credential-keys"):
        os.makedirs(os.path.join(cloud.dir, "keystone", sub), mode=0o700, exist_ok=True)
    km = os.path.join(bin_, "keystone-manage")
    run_logged(cloud, [km, *kconf, "db_sync"])
    if not os.listdir(os.path.join(cloud.dir, "keystone", "fernet-keys")):
        run_logged(cloud, [km, *kconf, "fernet_setup", *user])
    if not os.listdir(os.path.join(cloud.dir, "keystone", "credential-keys")):
        run_logged(cloud, [km, *kconf, "credential_setup", *user])
    url = f"http://127.0.0.1:{cloud.keystone_port}/v3"
    run_logged(cloud, [km, *kconf, "bootstrap",
                       "--bootstrap-username", "admin",
                       "--bootstrap-project-name", "admin",
                       "--bootstrap-role-name", "admin",
                       "--bootstrap-service-name", "keystone",
                       "--bootstrap-region-id", REGION,
                       "--bootstrap-admin-url", url,
                       "--bootstrap-internal-url", url,
                       "--bootstrap-public-url", url],
               env_extra={"OS_BOOTSTRAP_PASSWORD": ADMIN_PASSWORD})
    run_logged(cloud, [os.path.join(bin_, "glance-manage"), "--config-file",
                       os.path.join(cloud.etc_glance, "glance-api.conf"), "db_sync"])
    for db in ("keystone.db", "glance.db"):
        use_write_ahead_log(os.path.join(cloud.dir, db))


def use_write_ahead_log(path):
    """Switches an SQLite database to WAL mode (kept in the file itself). In the default
    rollback-journal mode a reader blocks a writer, and parallel tests saw Glance answer
    500 "database is locked"; in WAL mode only two writers wait for each other."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode != "wal":
        raise DevCloudError(f"{path}: SQLite kept journal mode {mode!r}, not WAL")
