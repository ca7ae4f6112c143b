"""Service half of scripts/dev-cloud: configure, start, check and stop the dev clouds.

scripts/dev-cloud (bash) makes sure the venv exists and then runs this file with the
venv's python. This file owns everything under the state directory except venv/:
per-cloud configs, SQLite databases, key repositories, image stores, logs, PID files,
clouds.yaml and bin/. It uses only the standard library (it also runs for `status`,
`env` and `down` before any venv exists) and talks to Keystone over plain REST.

It must never touch a process it did not start: a PID file records the PID, its
start time (from /proc) and its working directory, and all three must match before
a signal is sent.
"""

import json
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))

# Fixed test passwords for a cloud that only ever listens on 127.0.0.1. Tests grep
# imgferry's output for them to catch leaks, so they are deliberately distinctive.
ADMIN_PASSWORD = "imgferry-admin-3Rb8ZpLm"
MEMBER_PASSWORD = "imgferry-member-7fK2q9Xw"
SERVICE_PASSWORD = "imgferry-glance-9Tq4VnHs"

REGION = "RegionOne"
DEFAULT_PORTS = {"c1": (25000, 29292), "c2": (25100, 29392)}
# project -> member user; each user has role `member` on its project only.
MEMBER_PROJECTS = {"source": "source-user", "target": "target-user"}

STATE = os.environ.get("IMGFERRY_DEV_CLOUD_DIR") or os.path.expanduser(
    "~/.cache/imgferry/dev-cloud")
VENV = os.path.join(STATE, "venv")
TIMEOUT = float(os.environ.get("IMGFERRY_DEV_CLOUD_TIMEOUT", "120"))
# Version of the on-disk layout/provisioning; bump to force set-up to run again.
SETUP_VERSION = "1"

# Never send loopback requests through a proxy from the environment.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_PRINT_LOCK = threading.Lock()


class DevCloudError(Exception):
    pass


def say(cloud, msg):
    with _PRINT_LOCK:
        print(f"dev-cloud: [{cloud}] {msg}" if cloud else f"dev-cloud: {msg}",
              file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- model

class Cloud:
    def __init__(self, name, keystone_port, glance_port):
        self.name = name
        self.keystone_port = keystone_port
        self.glance_port = glance_port
        self.dir = os.path.join(STATE, name)
        self.logdir = os.path.join(self.dir, "log")
        self.rundir = os.path.join(self.dir, "run")
        self.etc_keystone = os.path.join(self.dir, "etc", "keystone")
        self.etc_glance = os.path.join(self.dir, "etc", "glance")

    @property
    def keystone_url(self):
        return f"http://127.0.0.1:{self.keystone_port}/v3"

    @property
    def glance_url(self):
        return f"http://127.0.0.1:{self.glance_port}"

    def port(self, service):
        return self.keystone_port if service == "keystone" else self.glance_port

    def pidfile(self, service):
        return os.path.join(self.rundir, f"{service}.pid.json")

    def setup_stamp_value(self):
        return json.dumps({
            "layout": SETUP_VERSION,
            "venv": _read(os.path.join(VENV, ".imgferry-installed")),
            "ports": [self.keystone_port, self.glance_port],
            "passwords": [ADMIN_PASSWORD, MEMBER_PASSWORD, SERVICE_PASSWORD],
        }, sort_keys=True)


def desired_clouds():
    """Clouds as the environment asks for them now (used by `up`)."""
    clouds = []
    for name, (kp, gp) in DEFAULT_PORTS.items():
        up = name.upper()
        kp = int(os.environ.get(f"IMGFERRY_DEV_{up}_KEYSTONE_PORT", kp))
        gp = int(os.environ.get(f"IMGFERRY_DEV_{up}_GLANCE_PORT", gp))
        clouds.append(Cloud(name, kp, gp))
    return clouds


def recorded_clouds():
    """Clouds as the last `up` configured them, else as the environment asks."""
    try:
        with open(os.path.join(STATE, "state.json")) as f:
            rec = json.load(f)["clouds"]
        return [Cloud(n, rec[n]["keystone_port"], rec[n]["glance_port"])
                for n in DEFAULT_PORTS if n in rec]
    except (OSError, ValueError, KeyError):
        return desired_clouds()


# --------------------------------------------------------------------------- small helpers

def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def write_atomic(path, text, mode=0o644):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def render(template, out, mode=0o644, **values):
    with open(os.path.join(HERE, template)) as f:
        text = string.Template(f.read()).substitute(values)
    write_atomic(out, text, mode)


def tail(path, lines=30):
    text = _read(path)
    if text is None:
        return f"  ({path}: no such file)"
    body = "\n".join("  " + line for line in text.splitlines()[-lines:])
    return f"  --- last {lines} lines of {path}\n{body}"


def http(method, url, body=None, token=None, timeout=10):
    """One request; returns (status, headers, parsed JSON or None)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    try:
        with _HTTP.open(req, timeout=timeout) as resp:
            raw = resp.read()
            status, headers = resp.status, resp.headers
    except urllib.error.HTTPError as e:
        raw, status, headers = e.read(), e.code, e.headers
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return status, headers, parsed


def issue_token(cloud, user, password, project, timeout=10):
    body = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}},
    }}
    status, headers, parsed = http("POST", cloud.keystone_url + "/auth/tokens", body,
                                   timeout=timeout)
    if status != 201:
        msg = (parsed or {}).get("error", {}).get("message", "")
        raise DevCloudError(f"token for {user}: HTTP {status} {msg}".strip())
    return headers["X-Subject-Token"]


# --------------------------------------------------------------------------- processes

def proc_start_time(pid):
    """Start time of pid in clock ticks since boot, or None if gone or a zombie."""
    stat = _read(f"/proc/{pid}/stat")
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
            stat = _read(f"/proc/{entry}/stat")
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
    text = _read(cloud.pidfile(service))
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


def start_service(cloud, service):
    port = cloud.port(service)
    if not port_free(port):
        raise DevCloudError(
            f"{service}: 127.0.0.1:{port} is in use by a process dev-cloud did not "
            f"start; free it or set IMGFERRY_DEV_{cloud.name.upper()}_"
            f"{service.upper()}_PORT")
    gunicorn_log = os.path.join(cloud.logdir, f"{service}-gunicorn.log")
    argv = [
        os.path.join(VENV, "bin", "gunicorn"),
        "--bind", f"127.0.0.1:{port}",
        "--workers", "1",            # keystone: memory cache is per process
        "--worker-class", "gthread",
        "--no-control-socket",        # gunicorn 27 would otherwise create ~/.gunicorn
        "--graceful-timeout", "5",
        "--name", f"imgferry-dev-{cloud.name}-{service}",
        "--chdir", cloud.dir,
        "--error-logfile", gunicorn_log,
        "--access-logfile", os.path.join(cloud.logdir, f"{service}-access.log"),
    ]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OS_", "GUNICORN_"))}
    if service == "keystone":
        argv += ["--threads", "4", "--pythonpath", os.path.join(STATE, "lib"),
                 "keystone_wsgi:application"]
        env["OS_KEYSTONE_CONFIG_DIR"] = cloud.etc_keystone
    else:
        # --timeout 0: a multi-GiB upload or download must never be cut off.
        argv += ["--threads", "8", "--timeout", "0", "glance.wsgi.api:application"]
        env["OS_GLANCE_CONFIG_DIR"] = cloud.etc_glance
    with open(gunicorn_log, "a") as log:
        proc = subprocess.Popen(argv, cwd=cloud.dir, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    start = None
    for _ in range(50):
        start = proc_start_time(proc.pid)
        if start is not None:
            break
        time.sleep(0.01)
    rec = {"pid": proc.pid, "start_time": start, "cwd": os.path.realpath(cloud.dir),
           "port": port, "service": service, "cloud": cloud.name}
    write_atomic(cloud.pidfile(service), json.dumps(rec) + "\n")
    say(cloud.name, f"started {service} (pid {proc.pid}) on 127.0.0.1:{port}")
    return rec


def stop_service(cloud, service, quiet=False):
    rec = read_pidfile(cloud, service)
    if rec is None:
        if not quiet:
            say(cloud.name, f"{service}: not running")
        return
    if not is_ours(rec):
        os.unlink(cloud.pidfile(service))
        say(cloud.name, f"{service}: pid {rec.get('pid')} is gone or no longer ours; "
                        "removed its stale PID file")
        return
    pid = rec["pid"]
    kids = [(k, proc_start_time(k)) for k in proc_children(pid)]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while is_ours(rec) and time.monotonic() < deadline:
        reap(pid)
        time.sleep(0.1)
    if is_ours(rec):
        say(cloud.name, f"{service}: pid {pid} ignored SIGTERM for 15 s; SIGKILL")
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        reap(pid)
    for kid, start in kids:  # workers orphaned by a killed master
        if start is not None and proc_start_time(kid) == start:
            os.kill(kid, signal.SIGKILL)
    os.unlink(cloud.pidfile(service))
    say(cloud.name, f"stopped {service} (pid {pid})")


# --------------------------------------------------------------------------- health

def check_keystone(cloud, timeout):
    issue_token(cloud, "admin", ADMIN_PASSWORD, "admin", timeout)


def check_glance(cloud, timeout):
    token = issue_token(cloud, "source-user", MEMBER_PASSWORD, "source", timeout)
    status, _, parsed = http("GET", cloud.glance_url + "/v2/images?limit=1",
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


def wait_ready(cloud, service, rec):
    deadline = time.monotonic() + TIMEOUT
    while True:
        ok, why = healthy(cloud, service, max(0.5, deadline - time.monotonic()))
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


class Keystone:
    """Just enough of the Keystone v3 admin API to provision idempotently."""

    def __init__(self, cloud):
        self.base = cloud.keystone_url
        self.token = issue_token(cloud, "admin", ADMIN_PASSWORD, "admin")

    def call(self, method, path, body=None):
        status, _, parsed = http(method, self.base + path, body, self.token)
        if status >= 300:
            raise DevCloudError(f"{method} {path}: HTTP {status} {parsed}")
        return parsed

    def find(self, collection, query):
        found = self.call("GET", f"/{collection}?{query}")[collection]
        return found[0] if found else None

    def ensure(self, collection, query, body):
        item = self.find(collection, query)
        if item is None:
            key = collection[:-1]
            item = self.call("POST", f"/{collection}", {key: body})[key]
        return item


def provision(cloud):
    ks = Keystone(cloud)
    roles = {}
    for name in ("member", "service"):
        roles[name] = ks.ensure("roles", f"name={name}", {"name": name})["id"]
    grants = [("service", "glance", "service", SERVICE_PASSWORD)]
    grants += [(p, u, "member", MEMBER_PASSWORD) for p, u in MEMBER_PROJECTS.items()]
    for project, user, role, password in grants:
        pid = ks.ensure("projects", f"name={project}&domain_id=default", {
            "name": project, "domain_id": "default",
            "description": f"imgferry dev-cloud {cloud.name} {project}"})["id"]
        uid = ks.ensure("users", f"name={user}&domain_id=default", {
            "name": user, "domain_id": "default", "password": password,
            "default_project_id": pid})["id"]
        ks.call("PATCH", f"/users/{uid}", {"user": {"password": password}})
        ks.call("PUT", f"/projects/{pid}/users/{uid}/roles/{roles[role]}")
    sid = ks.ensure("services", "type=image",
                    {"type": "image", "name": "glance", "enabled": True})["id"]
    existing = ks.call("GET", f"/endpoints?service_id={sid}")["endpoints"]
    for interface in ("public", "internal", "admin"):
        ep = next((e for e in existing if e["interface"] == interface), None)
        if ep is None:
            ks.call("POST", "/endpoints", {"endpoint": {
                "service_id": sid, "interface": interface, "region_id": REGION,
                "url": cloud.glance_url}})
        elif ep["url"] != cloud.glance_url:
            ks.call("PATCH", f"/endpoints/{ep['id']}", {"endpoint": {
                "url": cloud.glance_url, "region_id": REGION}})


# --------------------------------------------------------------------------- commands

def up_cloud(cloud):
    """Bring one cloud up; fast no-op when it already runs as configured."""
    recs = {s: running(cloud, s) for s in ("keystone", "glance")}
    stamp_path = os.path.join(cloud.dir, "setup.stamp")
    stamp_ok = _read(stamp_path) == cloud.setup_stamp_value()
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
    ports = [p for c in clouds for p in (c.keystone_port, c.glance_port)]
    if len(set(ports)) != len(ports):
        raise DevCloudError(f"port settings collide: {ports}")
    lib = os.path.join(STATE, "lib")
    os.makedirs(lib, exist_ok=True)
    shutil.copyfile(os.path.join(HERE, "keystone_wsgi.py"),
                    os.path.join(lib, "keystone_wsgi.py"))
    errors = {}

    def run(cloud):
        try:
            up_cloud(cloud)
        except Exception as e:  # reported below, per cloud
            errors[cloud.name] = e

    threads = [threading.Thread(target=run, args=(c,)) for c in clouds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    write_atomic(os.path.join(STATE, "state.json"), json.dumps({"clouds": {
        c.name: {"keystone_port": c.keystone_port, "glance_port": c.glance_port}
        for c in clouds}}, indent=2) + "\n")
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
    def stop_cloud(cloud):
        for service in ("glance", "keystone"):
            stop_service(cloud, service)

    threads = [threading.Thread(target=stop_cloud, args=(c,))
               for c in recorded_clouds() if os.path.isdir(c.rundir)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 0


def cmd_status():
    all_ok = True
    for cloud in recorded_clouds():
        for service in ("keystone", "glance"):
            url = cloud.keystone_url if service == "keystone" else cloud.glance_url
            rec = running(cloud, service)
            if rec is None:
                ok, detail = False, "DOWN (not running)"
            else:
                ok, why = healthy(cloud, service)
                detail = (f"up   pid {rec['pid']}" if ok
                          else f"DOWN pid {rec['pid']} running but failing: {why}")
            all_ok &= ok
            print(f"{cloud.name:3} {service:9} {url:28} {detail}")
    print(f"state: {STATE}")
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
