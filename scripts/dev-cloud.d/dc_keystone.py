"""Keystone v3 over plain REST for scripts/dev-cloud: tokens and idempotent provisioning.

Owns the projects, users, role assignments, the image service and its endpoints that
`up` creates in each cloud (Keystone's own identity endpoints come from
`keystone-manage bootstrap`; dc_cinder adds Cinder's with the helpers here).
Standard library only.
"""

import http.client
import json
import urllib.error
import urllib.request

from dc_common import (ADMIN_PASSWORD, MEMBER_PASSWORD, MEMBER_PROJECTS, REGION,
                       SERVICE_PASSWORD, DevCloudError)

# Never send loopback requests through a proxy from the environment.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def request(method, url, body=None, token=None, timeout=10, headers=None, raw=None):
    """One request with a JSON body, or with the bytes `raw` (set Content-Type in
    headers); returns (status, headers, parsed JSON or None)."""
    data = raw if raw is not None else (
        json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    req.add_header("Accept", "application/json")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    try:
        with _HTTP.open(req, timeout=timeout) as resp:
            raw = resp.read()
            status, headers = resp.status, resp.headers
    except urllib.error.HTTPError as e:
        raw, status, headers = e.read(), e.code, e.headers
    except http.client.HTTPException as e:  # e.g. a server dying mid-response
        raise ConnectionError(f"{method} {url}: {e!r}") from e
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
    url = cloud.keystone_url + "/auth/tokens"
    status, headers, parsed = request("POST", url, body, timeout=timeout)
    if status != 201:
        msg = (parsed or {}).get("error", {}).get("message", "")
        raise DevCloudError(f"token for {user}: HTTP {status} {msg}".strip())
    return headers["X-Subject-Token"]


class Keystone:
    """Just enough of the Keystone v3 admin API to provision idempotently."""

    def __init__(self, cloud):
        self.base = cloud.keystone_url
        self.token = issue_token(cloud, "admin", ADMIN_PASSWORD, "admin")

    def call(self, method, path, body=None):
        status, _, parsed = request(method, self.base + path, body, self.token)
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


    def grant(self, cloud, project, user, role, password):
        """Project, user (password reset) and role assignment, each made if missing."""
        rid = self.ensure("roles", f"name={role}", {"name": role})["id"]
        pid = self.ensure("projects", f"name={project}&domain_id=default", {
            "name": project, "domain_id": "default",
            "description": f"imgferry dev-cloud {cloud.name} {project}"})["id"]
        uid = self.ensure("users", f"name={user}&domain_id=default", {
            "name": user, "domain_id": "default", "password": password,
            "default_project_id": pid})["id"]
        self.call("PATCH", f"/users/{uid}", {"user": {"password": password}})
        self.call("PUT", f"/projects/{pid}/users/{uid}/roles/{rid}")

    def endpoints(self, service_type, name, url):
        """A service of that type with public/internal/admin endpoints at url."""
        sid = self.ensure("services", f"type={service_type}",
                          {"type": service_type, "name": name, "enabled": True})["id"]
        existing = self.call("GET", f"/endpoints?service_id={sid}")["endpoints"]
        for interface in ("public", "internal", "admin"):
            ep = next((e for e in existing if e["interface"] == interface), None)
            if ep is None:
                self.call("POST", "/endpoints", {"endpoint": {
                    "service_id": sid, "interface": interface, "region_id": REGION,
                    "url": url}})
            elif ep["url"] != url:
                self.call("PATCH", f"/endpoints/{ep['id']}", {"endpoint": {
                    "url": url, "region_id": REGION}})


def provision(cloud):
    ks = Keystone(cloud)
    ks.grant(cloud, "service", "glance", "service", SERVICE_PASSWORD)
    for project, user in MEMBER_PROJECTS.items():
        ks.grant(cloud, project, user, "member", MEMBER_PASSWORD)
    ks.endpoints("image", "glance", cloud.glance_url)
