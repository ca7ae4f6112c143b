"""Service half of scripts/dev-cloud: the up / down / status / env / reset commands.

scripts/dev-cloud (bash) makes sure the venv exists and then runs this file, with the
venv's python for `up` and with any python3 for the others (they work before a venv
exists). Everything it creates lives under the state directory, next to venv/:
per-cloud configs, SQLite databases, key repositories, image stores, logs, PID
records, clouds.yaml, state.json and bin/. Standard library only.

Modules: dc_common (settings, Cloud), dc_keystone (REST, provisioning),
dc_services (processes, health, set-up), dc_cinder (Cinder per cloud), dc_rabbitmq
(the broker Cinder's services talk through).
"""

import json
import os
import shutil
import sys
import threading
import time
import traceback

import dc_cinder
import dc_rabbitmq
from dc_common import (ADMIN_PASSWORD, HERE, MEMBER_PASSWORD,
                       MEMBER_PROJECTS, REGION, SERVICE_PASSWORD, STATE, VENV,
                       DevCloudError, cinder_wanted, read_text, desired_clouds,
                       recorded_clouds, recorded_state, say, tail, write_atomic)
from dc_keystone import provision
from dc_services import (healthy, running, setup_databases, start_service,
                         stop_service, wait_ready, write_configs)


def up_cloud(cloud, broker):
    """Bring one cloud up; fast no-op when it already runs as configured. With a
    broker, Cinder too; without, a Cinder left from an earlier `up` is stopped."""
    up_keystone_glance(cloud)
    if broker is None:
        dc_cinder.stop(cloud)
        return
    t0 = time.monotonic()
    try:
        dc_cinder.up(cloud, broker, lambda: dc_rabbitmq.wait_ready(broker))
    except (DevCloudError, OSError) as e:
        raise DevCloudError(f"cinder: {e}") from None
    say(cloud.name, f"cinder up after {time.monotonic() - t0:.1f} s: {cloud.cinder_url}")


def up_keystone_glance(cloud):
    recs = {s: running(cloud, s) for s in ("keystone", "glance")}
    stamp_path = os.path.join(cloud.dir, "setup.stamp")
    stamp_ok = read_text(stamp_path) == cloud.setup_stamp_value()
    if stamp_ok and all(recs[s] and recs[s]["port"] == cloud.port(s) for s in recs):
        if all(healthy(cloud, s)[0] for s in recs):
            say(cloud.name, "already running")
            return
    t0 = time.monotonic()
    for s, rec in recs.items():  # running with other ports: restart
        if rec and rec["port"] != cloud.port(s):
            stop_service(cloud, s)
            recs[s] = None
    write_configs(cloud)
    if not stamp_ok:
        for s in recs:  # set-up rewrites the databases: stop what still runs
            if recs[s]:
                stop_service(cloud, s)
                recs[s] = None
        say(cloud.name, "setting up databases and keys (first start takes ~30 s)")
        setup_databases(cloud)
    for s in recs:
        if recs[s] is None:
            recs[s] = start_service(cloud, s)
    current = "keystone"
    try:
        wait_ready(cloud, "keystone", recs["keystone"])
        if not stamp_ok:
            provision(cloud)
            write_atomic(stamp_path, cloud.setup_stamp_value())
        current = "glance"
        wait_ready(cloud, "glance", recs["glance"])
    except (DevCloudError, OSError) as e:
        logs = [os.path.join(cloud.logdir, f) for f in
                (f"{current}-gunicorn.log", f"{current}.log", "setup.log")]
        raise DevCloudError(f"{e}\n" + "\n".join(tail(p) for p in logs)) from None
    say(cloud.name, f"up in {time.monotonic() - t0:.1f} s: keystone "
                    f"{cloud.keystone_url}, glance {cloud.glance_url}")


def cmd_up():
    os.makedirs(STATE, exist_ok=True)
    clouds = desired_clouds()
    broker = dc_rabbitmq.desired_broker() if cinder_wanted() else None
    ports = [p for c in clouds for p in (c.keystone_port, c.glance_port)]
    if broker:
        ports += [c.cinder_port for c in clouds] + list(broker.ports.values())
    if len(set(ports)) != len(ports):
        raise DevCloudError(f"port settings collide: {ports}")
    lib = os.path.join(STATE, "lib")
    os.makedirs(lib, exist_ok=True)
    for module in ("keystone_wsgi.py", "glance_wsgi.py", "sqlite_immediate.py",
                   "cinder_wsgi.py", "cinder_launch.py"):
        shutil.copyfile(os.path.join(HERE, module), os.path.join(lib, module))
    errors = {}
    if broker:  # starts in the background while the clouds set up
        try:
            dc_rabbitmq.ensure_started(broker)
        except (DevCloudError, OSError) as e:
            raise DevCloudError(f"rabbitmq: {e}") from None

    def run(cloud):
        try:
            up_cloud(cloud, broker)
        except DevCloudError as e:  # reported below, per cloud
            errors[cloud.name] = str(e)
        except Exception:  # a bug here or a surprise from the OS: keep the traceback
            errors[cloud.name] = traceback.format_exc()

    threads = [threading.Thread(target=run, args=(c,)) for c in clouds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if broker is None:
        dc_rabbitmq.stop(dc_rabbitmq.recorded_broker())
    write_atomic(os.path.join(STATE, "state.json"), json.dumps({
        "clouds": {c.name: {"keystone_port": c.keystone_port, "glance_port": c.glance_port,
                            "cinder_port": c.cinder_port} for c in clouds},
        "cinder": broker is not None,
        "broker": broker.ports if broker else None,
    }, indent=2) + "\n")
    write_clouds_yaml(clouds)
    bindir = os.path.join(STATE, "bin")
    os.makedirs(bindir, exist_ok=True)
    for tool in ("openstack", "glance"):
        link = os.path.join(bindir, tool)
        if not os.path.islink(link):
            os.symlink(os.path.join(VENV, "bin", tool), link)
    for name, e in errors.items():
        say(name, f"FAILED: {e}")
    if errors:
        say(None, "see the logs above; `scripts/dev-cloud down` stops what did start")
        return 1
    say(None, f"clouds.yaml: {os.path.join(STATE, 'clouds.yaml')} "
              "(eval \"$(scripts/dev-cloud env)\" to use it)")
    return 0


def write_clouds_yaml(clouds):
    lines = ["# Written by scripts/dev-cloud; rewritten on every `up`.", "clouds:"]
    for c in clouds:
        accounts = [(f"{c.name}-{p}", u, MEMBER_PASSWORD, p)
                    for p, u in MEMBER_PROJECTS.items()]
        accounts.append((f"{c.name}-admin", "admin", ADMIN_PASSWORD, "admin"))
        for cloud_name, user, password, project in accounts:
            lines += [
                f"  {cloud_name}:",
                "    auth:",
                f"      auth_url: {c.keystone_url}",
                f"      username: {user}",
                f"      password: {password}",
                f"      project_name: {project}",
                "      user_domain_name: Default",
                "      project_domain_name: Default",
                f"    region_name: {REGION}",
                "    interface: public",
                "    identity_api_version: 3",
            ]
    write_atomic(os.path.join(STATE, "clouds.yaml"), "\n".join(lines) + "\n", 0o600)


def cmd_down():
    """Stops Cinder's services, then Glance and Keystone, then the broker; within
    each step every process at once (each waits for its own exit)."""
    clouds = [c for c in recorded_clouds() if os.path.isdir(c.rundir)]
    for services in (dc_cinder.SERVICES, ("glance", "keystone")):
        threads = [threading.Thread(target=stop_service, args=(c, s))
                   for c in clouds for s in services if os.path.exists(c.pidfile(s))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    dc_rabbitmq.stop(dc_rabbitmq.recorded_broker())
    return 0


def status_line(owner, service, url, check):
    rec = running(owner, service)
    if rec is None:
        ok, detail = False, "DOWN (not running)"
    else:
        ok, why = check()
        detail = (f"up   pid {rec['pid']}" if ok
                  else f"DOWN pid {rec['pid']} running but failing: {why}")
    print(f"{owner.name:3} {service:16} {url:31} {detail}")
    return ok


def cmd_status():
    all_ok = True
    with_cinder = recorded_state().get("cinder", False)
    if with_cinder:
        broker = dc_rabbitmq.recorded_broker()
        all_ok &= status_line(broker, "rabbitmq", f"127.0.0.1:{broker.amqp_port}",
                              lambda: dc_rabbitmq.healthy(broker))
    for cloud in recorded_clouds():
        for service in ("keystone", "glance"):
            url = cloud.keystone_url if service == "keystone" else cloud.glance_url
            all_ok &= status_line(cloud, service, url,
                                  lambda c=cloud, s=service: healthy(c, s))
        for service in dc_cinder.SERVICES if with_cinder else ():
            all_ok &= status_line(cloud, service, dc_cinder.status_url(cloud, service),
                                  lambda c=cloud, s=service: dc_cinder.healthy(c, s))
    print(f"state: {STATE}" + ("" if with_cinder else " (cinder off)"))
    return 0 if all_ok else 1


def cmd_env():
    def export(name, value):
        print(f"export {name}='{value}'")

    export("IMGFERRY_DEV_CLOUD_DIR", STATE)
    export("OS_CLIENT_CONFIG_FILE", os.path.join(STATE, "clouds.yaml"))
    export("IMGFERRY_OPENSTACK", os.path.join(VENV, "bin", "openstack"))
    export("IMGFERRY_GLANCE", os.path.join(VENV, "bin", "glance"))
    export("IMGFERRY_DEV_PASSWORD", MEMBER_PASSWORD)
    export("IMGFERRY_DEV_ADMIN_PASSWORD", ADMIN_PASSWORD)
    export("IMGFERRY_DEV_SERVICE_PASSWORD", SERVICE_PASSWORD)
    names = []
    for c in recorded_clouds():
        up = c.name.upper()
        export(f"IMGFERRY_DEV_{up}_KEYSTONE_URL", c.keystone_url)
        export(f"IMGFERRY_DEV_{up}_GLANCE_URL", c.glance_url)
        if recorded_state().get("cinder", False):
            export(f"IMGFERRY_DEV_{up}_CINDER_URL", c.cinder_url)
        names += [f"{c.name}-{p}" for p in (*MEMBER_PROJECTS, "admin")]
    export("IMGFERRY_DEV_CLOUDS", " ".join(names))
    # Only openstack and glance (bin/ holds two symlinks), not the venv's python.
    bindir = os.path.join(STATE, "bin")
    print(f"case \":$PATH:\" in *':{bindir}:'*) ;; "
          f"*) export PATH='{bindir}'\":$PATH\" ;; esac")
    return 0


def cmd_reset():
    cmd_down()
    for cloud in desired_clouds() + recorded_clouds():
        shutil.rmtree(cloud.dir, ignore_errors=True)
    shutil.rmtree(dc_rabbitmq.desired_broker().dir, ignore_errors=True)
    for f in ("clouds.yaml", "state.json"):
        try:
            os.unlink(os.path.join(STATE, f))
        except FileNotFoundError:
            pass
    say(None, f"removed cloud state under {STATE} (kept venv/)")
    return 0


COMMANDS = {"up": cmd_up, "down": cmd_down, "status": cmd_status, "env": cmd_env,
            "reset": cmd_reset}


def main(argv):
    if len(argv) != 2 or argv[1] not in COMMANDS:
        print(f"usage: {argv[0]} {'|'.join(COMMANDS)}", file=sys.stderr)
        return 2
    if "'" in STATE:
        raise SystemExit("dev-cloud: IMGFERRY_DEV_CLOUD_DIR must not contain a quote")
    try:
        return COMMANDS[argv[1]]()
    except DevCloudError as e:
        say(None, f"error: {e}")
        return 1
    except BrokenPipeError:  # e.g. `status | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
