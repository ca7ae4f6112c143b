"""Cinder for each dev cloud (scripts/dev-cloud): config, database, Keystone entries,
the three processes, their health checks and their stop.

Per cloud: cinder-api served by gunicorn (cinder_wsgi.py), cinder-scheduler and
cinder-volume (cinder_launch.py), all with SQLite transactions that wait for each other
(sqlite_immediate), RPC over the shared broker's vhost named after the cloud
(dc_rabbitmq). The volume backend is Cinder's NFS driver over a plain directory:
cinder-volume runs in a private mount namespace (`unshare --mount --propagation
private`) in which <cloud>/cinder/share is bind-mounted where os-brick expects the NFS
share, so volumes and snapshots are sparse files there and the host's mount table is
never touched. cinder-volume starts only once the scheduler reports up (both at once
made SQLite refuse a write and cinder-volume exit). See docs/design/cinder-dev-cloud.md.
"""

import hashlib
import json
import os
import shutil

from dc_common import (ADMIN_PASSWORD, HERE, MEMBER_PASSWORD, RABBIT_PASSWORD,
                       SERVICE_PASSWORD, SETUP_VERSION, STATE, VENV, DevCloudError,
                       read_text, render, say, write_atomic)
from dc_keystone import Keystone, issue_token, request
from dc_services import (clean_env, gunicorn_argv, run_logged, running, spawn,
                         stop_service, use_write_ahead_log, wait_ready)

SERVICES = ("cinder-api", "cinder-scheduler", "cinder-volume")
NFS_SHARE = "127.0.0.1:/cinder"  # nas_host:nas_share_path in cinder.conf.in
BACKEND = "nfs"                  # enabled_backends in cinder.conf.in
# Cinder without a project id in the URL (and os-services for members of no project).
MICROVERSION = {"OpenStack-API-Version": "volume 3.67"}
NFS_STUB = """#!/bin/sh
# dev-cloud stand-in for mount.nfs: the NFS driver only checks that this exists.
# Its share is a bind mount made before cinder-volume starts; nothing may mount NFS.
echo "dev-cloud: mount.nfs called with: $* (this dev cloud never mounts NFS)" >&2
exit 32
"""


def conf_path(cloud):
    return os.path.join(cloud.etc_cinder, "cinder.conf")


def volume_host(cloud):
    return f"imgferry-dev-{cloud.name}"  # [DEFAULT] host in cinder.conf.in


def share_dir(cloud):
    return os.path.join(os.path.realpath(cloud.dir), "cinder", "share")


def mount_point(cloud):
    base = os.path.join(os.path.realpath(cloud.dir), "cinder", "mnt")
    return os.path.join(base, hashlib.md5(NFS_SHARE.encode()).hexdigest())


def stamp_value(cloud, broker):
    return json.dumps({
        "layout": SETUP_VERSION,
        "venv": read_text(os.path.join(VENV, ".imgferry-installed")),
        "ports": [cloud.keystone_port, cloud.glance_port, cloud.cinder_port],
        "broker": broker.stamp(),
        "passwords": [SERVICE_PASSWORD, RABBIT_PASSWORD],
        # A changed template restarts Cinder with it.
        "template": hashlib.sha256(
            read_text(os.path.join(HERE, "cinder.conf.in")).encode()).hexdigest(),
    }, sort_keys=True)


# --------------------------------------------------------------------------- set-up

def write_configs(cloud, broker):
    cdir = os.path.realpath(cloud.dir)
    for d in (cloud.etc_cinder, share_dir(cloud), mount_point(cloud),
              *(os.path.join(cdir, "cinder", sub) for sub in
                ("state", "conversion", "locks"))):
        os.makedirs(d, exist_ok=True)
    render("cinder.conf.in", conf_path(cloud), 0o600, cloud=cloud.name, cdir=cdir,
           venv=VENV, keystone_port=cloud.keystone_port, glance_url=cloud.glance_url,
           service_password=SERVICE_PASSWORD, rabbit_password=RABBIT_PASSWORD,
           rabbit_port=broker.amqp_port)
    # Cinder's own paste pipeline and API filters, from the installed package.
    for name in ("api-paste.ini", "resource_filters.json"):
        shutil.copyfile(os.path.join(VENV, "etc", "cinder", name),
                        os.path.join(cloud.etc_cinder, name))
    stub_dir = os.path.join(STATE, "lib", "nfs-stub")
    os.makedirs(stub_dir, exist_ok=True)
    write_atomic(os.path.join(stub_dir, "mount.nfs"), NFS_STUB, 0o755)


def setup(cloud):
    """cinder-manage db sync (idempotent), WAL mode, and Cinder's Keystone entries."""
    run_logged(cloud, [os.path.join(VENV, "bin", "cinder-manage"), "--config-file",
                       conf_path(cloud), "db", "sync"])
    use_write_ahead_log(os.path.join(cloud.dir, "cinder.db"))
    ks = Keystone(cloud)
    # The admin user (role admin from keystone-manage bootstrap) passes Cinder's
    # admin_api rule, so it can set other projects' quotas.
    ks.grant(cloud, "service", "cinder", "service", SERVICE_PASSWORD)
    base = f"http://127.0.0.1:{cloud.cinder_port}/v3"
    ks.endpoints("volumev3", "cinderv3", base + "/%(project_id)s")
    ks.endpoints("block-storage", "cinder", base)


# --------------------------------------------------------------------------- processes

def start(cloud, service):
    lib = os.path.join(STATE, "lib")
    log = os.path.join(cloud.logdir, f"{service}.log")
    if service == "cinder-api":
        argv = gunicorn_argv(cloud, service, cloud.cinder_port, "cinder_wsgi:application", 8)
        env = clean_env(IMGFERRY_CINDER_CONF=conf_path(cloud), IMGFERRY_CINDER_LOG=log)
        return spawn(cloud, service, argv, env, cloud.cinder_port)
    launch = [os.path.join(VENV, "bin", "python"), "-B", os.path.join(lib, "cinder_launch.py"),
              service.removeprefix("cinder-"), "--config-file", conf_path(cloud),
              "--log-file", log]
    env = clean_env()
    if service == "cinder-volume":
        # The bind mount exists only in cinder-volume's own mount namespace (and in
        # its privsep daemons', which it starts); it goes when they exit.
        launch = ["unshare", "--mount", "--propagation", "private", "--",
                  "/bin/sh", "-c", 'mount --bind "$1" "$2" && shift 2 && exec "$@"',
                  "sh", share_dir(cloud), mount_point(cloud), *launch]
        env["PATH"] = os.path.join(lib, "nfs-stub") + os.pathsep + env.get("PATH", "")
    return spawn(cloud, service, launch, env,
                 log=os.path.join(cloud.logdir, f"{service}-stdout.log"))


def stop(cloud):
    for service in reversed(SERVICES):
        if os.path.exists(cloud.pidfile(service)):
            stop_service(cloud, service)


# --------------------------------------------------------------------------- health

def call(cloud, path, user, password, project, timeout):
    token = issue_token(cloud, user, password, project, timeout)
    status, _, parsed = request("GET", cloud.cinder_url + path, token=token,
                                timeout=timeout, headers=MICROVERSION)
    if status != 200 or not isinstance(parsed, dict):
        raise DevCloudError(f"GET {cloud.cinder_url}{path}: HTTP {status}")
    return parsed


def check_api(cloud, timeout):
    if "volumes" not in call(cloud, "/volumes?limit=1", "source-user", MEMBER_PASSWORD,
                             "source", timeout):
        raise DevCloudError("GET /volumes: no volumes list")


def check_binary(cloud, binary, host, timeout):
    services = call(cloud, f"/os-services?binary={binary}", "admin", ADMIN_PASSWORD,
                    "admin", timeout).get("services", [])
    states = [s.get("state") for s in services if s.get("host") == host]
    if states != ["up"]:
        raise DevCloudError(f"{binary} on {host}: {states or 'not registered'}")


def check_scheduler(cloud, timeout):
    check_binary(cloud, "cinder-scheduler", volume_host(cloud), timeout)


def check_volume(cloud, timeout):
    """The volume service is up and the scheduler knows its pool (else the first
    create would fail with "No valid backend")."""
    host = f"{volume_host(cloud)}@{BACKEND}"
    check_binary(cloud, "cinder-volume", host, timeout)
    pools = call(cloud, "/scheduler-stats/get_pools", "admin", ADMIN_PASSWORD, "admin",
                 timeout).get("pools", [])
    if not any(p.get("name", "").startswith(host + "#") for p in pools):
        raise DevCloudError(f"the scheduler has no pool of {host} yet")


CHECKS = {"cinder-api": check_api, "cinder-scheduler": check_scheduler,
          "cinder-volume": check_volume}


def healthy(cloud, service, timeout=10):
    try:
        CHECKS[service](cloud, timeout)
        return True, "ok"
    except (DevCloudError, OSError) as e:
        return False, str(e)


def status_url(cloud, service):
    return cloud.cinder_url if service == "cinder-api" else "(rpc)"


# --------------------------------------------------------------------------- up

def up(cloud, broker, wait_broker):
    """Cinder of one cloud up (Keystone and Glance already answer); a fast no-op when
    it already runs as configured."""
    if os.geteuid() != 0:
        raise DevCloudError("cinder-volume needs root (a private mount namespace with a "
                            "bind mount); run as root or `up --without-cinder`")
    recs = {s: running(cloud, s) for s in SERVICES}
    stamp_path = os.path.join(cloud.dir, "cinder.stamp")
    stamp_ok = read_text(stamp_path) == stamp_value(cloud, broker)
    if (stamp_ok and recs["cinder-api"] and recs["cinder-api"]["port"] == cloud.cinder_port
            and all(recs.values()) and all(healthy(cloud, s)[0] for s in SERVICES)):
        say(cloud.name, "cinder already running")
        return
    if not stamp_ok or (recs["cinder-api"] and recs["cinder-api"]["port"] != cloud.cinder_port):
        stop(cloud)  # set-up rewrites the database and the config all three read
        recs = dict.fromkeys(SERVICES)
    write_configs(cloud, broker)
    if not stamp_ok:
        say(cloud.name, "setting up cinder (database, keystone entries)")
        setup(cloud)
        write_atomic(stamp_path, stamp_value(cloud, broker))
    wait_broker()
    for service in ("cinder-api", "cinder-scheduler"):
        if recs[service] is None:
            recs[service] = start(cloud, service)
    wait(cloud, "cinder-api", recs["cinder-api"])
    wait(cloud, "cinder-scheduler", recs["cinder-scheduler"])
    if recs["cinder-volume"] is None:
        recs["cinder-volume"] = start(cloud, "cinder-volume")
    wait(cloud, "cinder-volume", recs["cinder-volume"])


def wait(cloud, service, rec):
    log = os.path.join(cloud.logdir, f"{service}.log")
    try:
        wait_ready(cloud, service, rec,
                   check=lambda timeout: CHECKS[service](cloud, timeout))
    except (DevCloudError, OSError) as e:
        raise DevCloudError(f"{e} (log: {log})") from None
