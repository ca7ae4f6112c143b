"""The dev clouds' RabbitMQ broker (Cinder's RPC) for scripts/dev-cloud.

One broker from Debian's rabbitmq-server, run as a plain process (not the system
service) with everything of its own under <state>/rabbitmq: HOME (so its Erlang cookie),
config, Mnesia database, logs, PID records. It listens on 127.0.0.1 only: AMQP, the
Erlang distribution port, and an epmd that dev-cloud starts itself on a port of its own
(so stopping it never touches another Erlang node's epmd). Each cloud gets a vhost
(c1, c2) for the user `imgferry`, declared in a definitions file the broker loads at
boot, so no rabbitmqctl call is needed. Stopped by recorded PID like every service.
"""

import json
import os
import socket
import threading
import time

from dc_common import (DEFAULT_PORTS, RABBIT_PASSWORD, STATE, TIMEOUT, DevCloudError,
                       desired_broker_ports, read_text, recorded_state, say, write_atomic)
from dc_services import clean_env, is_ours, reap, running, spawn, stop_service

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
EPMD = "/usr/bin/epmd"
NODE = "imgferry-dev@localhost"
USER = "imgferry"
SERVICES = ("epmd", "rabbitmq")


class Broker:
    """Owner of the broker's processes; the same interface as a Cloud for dc_services."""

    name = "rabbitmq"

    def __init__(self, ports):
        self.ports = ports  # RABBITMQ_PORT, RABBITMQ_DIST_PORT, EPMD_PORT
        self.dir = os.path.join(STATE, "rabbitmq")
        self.logdir = os.path.join(self.dir, "log")
        self.rundir = os.path.join(self.dir, "run")
        self._ready = threading.Event()

    @property
    def amqp_port(self):
        return self.ports["RABBITMQ_PORT"]

    def transport_url(self, vhost):
        return f"rabbit://{USER}:{RABBIT_PASSWORD}@127.0.0.1:{self.amqp_port}/{vhost}"

    def pidfile(self, service):
        return os.path.join(self.rundir, f"{service}.pid.json")

    def port_variable(self, service):
        key = "EPMD_PORT" if service == "epmd" else "RABBITMQ_PORT"
        return f"IMGFERRY_DEV_{key}"

    def stamp(self):
        return json.dumps({"ports": self.ports, "password": RABBIT_PASSWORD,
                           "vhosts": sorted(DEFAULT_PORTS)}, sort_keys=True)


def desired_broker():
    return Broker(desired_broker_ports())


def recorded_broker():
    ports = recorded_state().get("broker")
    return Broker(ports) if isinstance(ports, dict) else desired_broker()


def write_config(broker):
    for d in (broker.dir, broker.logdir, broker.rundir, os.path.join(broker.dir, "home"),
              os.path.join(broker.dir, "mnesia")):
        os.makedirs(d, mode=0o700, exist_ok=True)
    definitions = {
        "users": [{"name": USER, "password": RABBIT_PASSWORD, "tags": "administrator"}],
        "vhosts": [{"name": c} for c in DEFAULT_PORTS],
        "permissions": [{"user": USER, "vhost": c, "configure": ".*", "write": ".*",
                         "read": ".*"} for c in DEFAULT_PORTS],
    }
    write_atomic(os.path.join(broker.dir, "definitions.json"),
                 json.dumps(definitions, indent=2) + "\n", 0o600)
    write_atomic(os.path.join(broker.dir, "rabbitmq.conf"), "\n".join([
        "# Written by scripts/dev-cloud (dc_rabbitmq.py) on every `up`.",
        f"listeners.tcp.default = 127.0.0.1:{broker.amqp_port}",
        f"load_definitions = {os.path.join(broker.dir, 'definitions.json')}",
        "log.console = false",
        "log.file.level = warning",
        "",
    ]), 0o600)
    write_atomic(os.path.join(broker.dir, "enabled_plugins"), "[].\n")
    write_atomic(os.path.join(broker.dir, "rabbitmq-env.conf"),
                 "# Empty on purpose: the host's /etc/rabbitmq/rabbitmq-env.conf must not apply.\n")


def broker_env(broker):
    d = broker.dir
    return clean_env(
        HOME=os.path.join(d, "home"),
        RABBITMQ_CONF_ENV_FILE=os.path.join(d, "rabbitmq-env.conf"),
        RABBITMQ_CONFIG_FILE=os.path.join(d, "rabbitmq.conf"),
        RABBITMQ_ADVANCED_CONFIG_FILE=os.path.join(d, "advanced.config"),
        RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(d, "enabled_plugins"),
        RABBITMQ_MNESIA_BASE=os.path.join(d, "mnesia"),
        RABBITMQ_LOG_BASE=broker.logdir,
        RABBITMQ_PID_FILE=os.path.join(broker.rundir, "rabbitmq.erlang.pid"),
        RABBITMQ_NODENAME=NODE,
        RABBITMQ_DIST_PORT=str(broker.ports["RABBITMQ_DIST_PORT"]),
        # The distribution listener would otherwise bind every interface.
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        ERL_EPMD_ADDRESS="127.0.0.1",
        ERL_EPMD_PORT=str(broker.ports["EPMD_PORT"]),
    )


def ensure_started(broker):
    """Starts epmd and the broker unless they already run as configured; returns at
    once (wait_ready waits). Restarts them when ports or definitions changed."""
    if not os.path.exists(RABBITMQ_SERVER):
        raise DevCloudError(f"{RABBITMQ_SERVER} is missing: apt-get install rabbitmq-server "
                            "(scripts/install-deps does)")
    stamp_path = os.path.join(broker.dir, "setup.stamp")
    stamp_ok = read_text(stamp_path) == broker.stamp()
    recs = {s: running(broker, s) for s in SERVICES}
    if stamp_ok and all(recs.values()):
        return
    for s in reversed(SERVICES):
        if recs[s] and not stamp_ok:
            stop_service(broker, s)
            recs[s] = None
    write_config(broker)
    env = broker_env(broker)
    if recs["epmd"] is None:
        spawn(broker, "epmd", [EPMD, "-port", str(broker.ports["EPMD_PORT"]),
                               "-address", "127.0.0.1"],
              env, broker.ports["EPMD_PORT"], os.path.join(broker.logdir, "epmd.log"))
        wait_port(broker, "epmd", broker.ports["EPMD_PORT"])
    if recs["rabbitmq"] is None:
        spawn(broker, "rabbitmq", [RABBITMQ_SERVER], env, broker.amqp_port,
              os.path.join(broker.logdir, "rabbitmq-server.log"))
    write_atomic(stamp_path, broker.stamp())


def wait_port(broker, service, port):
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError as e:
            if time.monotonic() > deadline:
                raise DevCloudError(f"{service} not listening on 127.0.0.1:{port}: {e}")
        time.sleep(0.05)


def check(broker, vhost, timeout=5):
    """Logs in to `vhost` over AMQP (proves the definitions are loaded)."""
    import amqp  # from the venv; status/down also run without one

    conn = amqp.Connection(f"127.0.0.1:{broker.amqp_port}", userid=USER,
                           password=RABBIT_PASSWORD, virtual_host=vhost,
                           connect_timeout=min(timeout, 5))
    try:
        conn.connect()
    except Exception as e:  # amqp raises its own exception types and socket errors
        raise DevCloudError(f"AMQP login to vhost {vhost}: {e!r}") from None
    finally:
        conn.collect()


def healthy(broker, timeout=5):
    try:
        for vhost in DEFAULT_PORTS:
            check(broker, vhost, timeout)
        return True, "ok"
    except ImportError:
        return False, "no venv (run scripts/dev-cloud up)"
    except (DevCloudError, OSError) as e:
        return False, str(e)


def wait_ready(broker):
    """Blocks until the broker answers (once per `up`; threads share the result)."""
    if broker._ready.is_set():
        return
    rec = running(broker, "rabbitmq")
    if rec is None:
        raise DevCloudError("rabbitmq is not running")
    t0 = time.monotonic()
    deadline = t0 + TIMEOUT
    while True:
        ok, why = healthy(broker, max(0.5, deadline - time.monotonic()))
        if ok:
            if not broker._ready.is_set():
                broker._ready.set()
                say(broker.name, f"answering on 127.0.0.1:{broker.amqp_port} "
                                 f"after {time.monotonic() - t0:.1f} s")
            return
        if not is_ours(rec):
            reap(rec["pid"])
            raise DevCloudError(f"rabbitmq exited during start-up ({why}); see "
                                f"{broker.logdir}/rabbitmq-server.log")
        if time.monotonic() > deadline:
            raise DevCloudError(f"rabbitmq not ready after {TIMEOUT:.0f} s ({why})")
        time.sleep(0.3)


def stop(broker):
    for s in reversed(SERVICES):
        if os.path.exists(broker.pidfile(s)):
            stop_service(broker, s)
