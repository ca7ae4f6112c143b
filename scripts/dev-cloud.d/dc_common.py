"""Shared settings and small helpers for scripts/dev-cloud's Python half.

Owns the fixed facts of the dev clouds (names, default ports, users, test passwords,
state-dir layout) and the Cloud model. No processes and no network here.
"""

import json
import os
import string
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))

# Fixed test passwords for a cloud that only ever listens on 127.0.0.1. Tests grep
# imgferry's output for them to catch leaks, so they are deliberately distinctive.
ADMIN_PASSWORD = "imgferry-admin-3Rb8ZpLm"
MEMBER_PASSWORD = "imgferry-member-7fK2q9Xw"
SERVICE_PASSWORD = "imgferry-glance-9Tq4VnHs"
# RabbitMQ user `imgferry` (vhosts c1 and c2); the broker listens on 127.0.0.1 only.
RABBIT_PASSWORD = "imgferry-rabbit-4Hc8WmQd"

REGION = "RegionOne"
# cloud -> (keystone, glance, cinder) ports
DEFAULT_PORTS = {"c1": (25000, 29292, 28776), "c2": (25100, 29392, 28876)}
# RabbitMQ (one broker, a vhost per cloud): AMQP, Erlang distribution, its own epmd.
DEFAULT_BROKER_PORTS = {"RABBITMQ_PORT": 28672, "RABBITMQ_DIST_PORT": 28673,
                        "EPMD_PORT": 28674}
# project -> member user; each user has role `member` on its project only.
MEMBER_PROJECTS = {"source": "source-user", "target": "target-user"}

STATE = os.environ.get("IMGFERRY_DEV_CLOUD_DIR") or os.path.expanduser(
    "~/.cache/imgferry/dev-cloud")
VENV = os.path.join(STATE, "venv")
TIMEOUT = float(os.environ.get("IMGFERRY_DEV_CLOUD_TIMEOUT", "120"))
# Version of the on-disk layout/provisioning; bump to force set-up to run again.
SETUP_VERSION = "3"

_PRINT_LOCK = threading.Lock()


class DevCloudError(Exception):
    pass


def say(cloud, msg):
    with _PRINT_LOCK:
        print(f"dev-cloud: [{cloud}] {msg}" if cloud else f"dev-cloud: {msg}",
              file=sys.stderr, flush=True)


def cinder_wanted():
    """Whether `up` runs Cinder: IMGFERRY_DEV_CINDER=0 leaves it out (default on);
    scripts/dev-cloud sets it from --with-cinder / --without-cinder."""
    value = os.environ.get("IMGFERRY_DEV_CINDER", "1").strip().lower()
    if value not in ("0", "1", "yes", "no", "true", "false", "on", "off", ""):
        raise DevCloudError(f"IMGFERRY_DEV_CINDER={value!r}: use 1 or 0")
    return value not in ("0", "no", "false", "off")


class Cloud:
    def __init__(self, name, keystone_port, glance_port, cinder_port):
        self.name = name
        self.keystone_port = keystone_port
        self.glance_port = glance_port
        self.cinder_port = cinder_port
        self.dir = os.path.join(STATE, name)
        self.logdir = os.path.join(self.dir, "log")
        self.rundir = os.path.join(self.dir, "run")
        self.etc_keystone = os.path.join(self.dir, "etc", "keystone")
        self.etc_glance = os.path.join(self.dir, "etc", "glance")
        self.etc_cinder = os.path.join(self.dir, "etc", "cinder")

    @property
    def keystone_url(self):
        return f"http://127.0.0.1:{self.keystone_port}/v3"

    @property
    def glance_url(self):
        return f"http://127.0.0.1:{self.glance_port}"

    @property
    def cinder_url(self):
        """The Block Storage v3 root; the catalog's endpoints append /%(project_id)s."""
        return f"http://127.0.0.1:{self.cinder_port}/v3"

    def port(self, service):
        return {"keystone": self.keystone_port, "glance": self.glance_port,
                "cinder-api": self.cinder_port}.get(service)

    def pidfile(self, service):
        return os.path.join(self.rundir, f"{service}.pid.json")

    def port_variable(self, service):
        kind = "CINDER" if service == "cinder-api" else service.upper()
        return f"IMGFERRY_DEV_{self.name.upper()}_{kind}_PORT"

    def setup_stamp_value(self):
        return json.dumps({
            "layout": SETUP_VERSION,
            "venv": read_text(os.path.join(VENV, ".imgferry-installed")),
            "ports": [self.keystone_port, self.glance_port],
            "passwords": [ADMIN_PASSWORD, MEMBER_PASSWORD, SERVICE_PASSWORD],
        }, sort_keys=True)


def desired_clouds():
    """Clouds as the environment asks for them now (used by `up`)."""
    clouds = []
    for name, ports in DEFAULT_PORTS.items():
        up = name.upper()
        kp, gp, cp = (env_port(f"IMGFERRY_DEV_{up}_{service}_PORT", default)
                      for service, default in zip(("KEYSTONE", "GLANCE", "CINDER"), ports))
        clouds.append(Cloud(name, kp, gp, cp))
    return clouds


def env_port(variable, default):
    value = os.environ.get(variable, "")
    if not value:
        return default
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise DevCloudError(f"{variable}={value!r} is not a TCP port")
    return int(value)


def desired_broker_ports():
    return {k: env_port(f"IMGFERRY_DEV_{k}", v) for k, v in DEFAULT_BROKER_PORTS.items()}


def recorded_clouds():
    """Clouds as the last `up` configured them, else as the environment asks."""
    try:
        with open(os.path.join(STATE, "state.json")) as f:
            rec = json.load(f)["clouds"]
        return [Cloud(n, rec[n]["keystone_port"], rec[n]["glance_port"],
                      rec[n].get("cinder_port", DEFAULT_PORTS[n][2]))
                for n in DEFAULT_PORTS if n in rec]
    except (OSError, ValueError, KeyError):
        return desired_clouds()


def recorded_state():
    """state.json as the last `up` wrote it ({} before the first)."""
    try:
        with open(os.path.join(STATE, "state.json")) as f:
            rec = json.load(f)
        return rec if isinstance(rec, dict) else {}
    except (OSError, ValueError):
        return {}


def read_text(path):
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
    text = read_text(path)
    if text is None:
        return f"  ({path}: no such file)"
    body = "\n".join("  " + line for line in text.splitlines()[-lines:])
    return f"  --- last {lines} lines of {path}\n{body}"
