"""Builds (or deletes) a Nova-like snapshot of a volume-backed instance on a dev cloud.

There is no Nova in the dev clouds, so this does by hand what Nova's
API.snapshot_volume_backed does for a server booted from a volume with a data volume
attached: one Cinder snapshot per volume (force, as Nova does for attached volumes)
and a Glance record of size 0 whose properties carry Nova's block device mapping
(bdm_v2, root_device_name, block_device_mapping as a JSON string with every field
of nova.block_device.snapshot_from_bdm) plus the properties Nova inherits from the
instance (the boot volume's image metadata hw_*/os_*, base_image_ref, boot_roles,
owner_project_name, owner_user_name). Field list: docs/design/cinder-dev-cloud.md.

Usage (with the venv's or any python3 >= 3.11, after `scripts/dev-cloud up`):
  bfv_snapshot.py create --cloud c1 --project source --image IMAGE_ID --name NAME
                         [--root-size GIB] [--data-image IMAGE_ID | --data-size GIB]
                         [--property KEY=VALUE ...]
      prints JSON: {"image_id", "name", "volumes": [...], "snapshots": [...]}
  bfv_snapshot.py delete --cloud c1 --project source IMAGE_ID
      deletes the record, the snapshots its mapping names and their volumes

Standard library only; talks REST to the cloud's Keystone, Cinder and Glance.
"""

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dc_common import (ADMIN_PASSWORD, MEMBER_PASSWORD, MEMBER_PROJECTS,  # noqa: E402
                       DevCloudError, recorded_clouds)
from dc_keystone import request  # noqa: E402

CINDER_HEADERS = {"OpenStack-API-Version": "volume 3.67"}  # no project id in URLs
GIB = 1 << 30
# nova.compute.utils NON_INHERITABLE_IMAGE_PROPERTIES and _NAMESPACES (prefixes).
NON_INHERITABLE = ("cinder_encryption_key_id", "cinder_encryption_key_deletion_policy",
                   "img_signature", "os_glance")


class Session:
    def __init__(self, cloud_name, project):
        clouds = {c.name: c for c in recorded_clouds()}
        if cloud_name not in clouds:
            raise DevCloudError(f"no dev cloud {cloud_name!r} (have {sorted(clouds)})")
        self.cloud = clouds[cloud_name]
        if project == "admin":
            self.user, password = "admin", ADMIN_PASSWORD
        elif project in MEMBER_PROJECTS:
            self.user, password = MEMBER_PROJECTS[project], MEMBER_PASSWORD
        else:
            raise DevCloudError(f"unknown project {project!r}")
        self.project = project
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": self.user, "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}
        status, headers, parsed = request("POST", self.cloud.keystone_url + "/auth/tokens",
                                          body)
        if status != 201:
            raise DevCloudError(f"token for {self.user}: HTTP {status}")
        self.token = headers["X-Subject-Token"]
        self.roles = sorted(r["name"] for r in parsed["token"]["roles"])

    def call(self, method, url, body=None, ok=(200, 201, 202, 204), headers=None):
        status, _, parsed = request(method, url, body, self.token, timeout=60,
                                    headers=headers)
        if status not in ok:
            raise DevCloudError(f"{method} {url}: HTTP {status} {parsed}")
        return parsed

    def cinder(self, method, path, body=None, ok=(200, 201, 202, 204)):
        return self.call(method, self.cloud.cinder_url + path, body, ok, CINDER_HEADERS)

    def glance(self, method, path, body=None, ok=(200, 201, 204)):
        return self.call(method, self.cloud.glance_url + path, body, ok)


def wait_for(session, kind, item_id, want, size_gib):
    """Polls a volume or snapshot until status `want`; the limit grows with the size."""
    deadline = time.monotonic() + 120 + 60 * size_gib
    while True:
        item = session.cinder("GET", f"/{kind}s/{item_id}")[kind]
        if item["status"] == want:
            return item
        if item["status"].startswith("error"):
            raise DevCloudError(f"{kind} {item_id} went to status {item['status']}")
        if time.monotonic() > deadline:
            raise DevCloudError(f"{kind} {item_id} still {item['status']}, not {want}")
        time.sleep(0.5)


def nova_mapping(snapshot_id, device_name, boot_index, size, delete_on_termination):
    """One entry exactly as nova.block_device.snapshot_from_bdm(...).get_image_mapping()
    makes it: every BDM v2 field, those not copied from the instance's BDM as null."""
    entry = dict.fromkeys((
        "guest_format", "volume_id", "image_id", "no_device", "tag", "volume_type",
        "encrypted", "encryption_secret_uuid", "encryption_format", "encryption_options"))
    entry.update({
        "source_type": "snapshot", "destination_type": "volume",
        "snapshot_id": snapshot_id, "volume_size": size, "device_name": device_name,
        "boot_index": boot_index, "delete_on_termination": delete_on_termination,
        "disk_bus": "virtio", "device_type": "disk"})
    return entry


def create(args):
    s = Session(args.cloud, args.project)
    image = s.glance("GET", f"/v2/images/{args.image}")
    needed = max(image.get("virtual_size") or 0, image.get("size") or 0)
    root_size = args.root_size or max(1, math.ceil(needed / GIB), image.get("min_disk") or 0)
    disks = [("root", "/dev/vda", 0, root_size, {"imageRef": args.image})]
    data_source = {"imageRef": args.data_image} if args.data_image else {}
    if args.data_image:
        data = s.glance("GET", f"/v2/images/{args.data_image}")
        need = max(data.get("virtual_size") or 0, data.get("size") or 0)
        args.data_size = max(args.data_size or 1, math.ceil(need / GIB))
    if args.data_size:
        # attached after boot: Nova leaves boot_index null for such a volume
        disks.append(("data", "/dev/vdb", None, args.data_size, data_source))
    out = {"name": args.name, "volumes": [], "snapshots": [], "image_id": None}
    volumes = []
    for role, device, boot_index, size, source in disks:
        vol = s.cinder("POST", "/volumes", {"volume": {
            "name": f"{args.name}-{role}", "size": size,
            "description": f"imgferry bfv_snapshot {role} disk", **source}})["volume"]
        out["volumes"].append({"id": vol["id"], "device_name": device, "size": size})
        volumes.append((vol["id"], device, boot_index, size))
    mapping = []
    boot_meta = {}
    for vol_id, device, boot_index, size in volumes:
        vol = wait_for(s, "volume", vol_id, "available", size)
        if boot_index == 0:
            boot_meta = vol.get("volume_image_metadata") or {}
        snap = s.cinder("POST", "/snapshots", {"snapshot": {
            "volume_id": vol_id, "force": True, "name": f"snapshot for {args.name}",
            "description": vol.get("description")}})["snapshot"]
        out["snapshots"].append({"id": snap["id"], "volume_id": vol_id})
        mapping.append(nova_mapping(snap["id"], device, boot_index, size, False))
    for snap in out["snapshots"]:
        wait_for(s, "snapshot", snap["id"], "available", 1)
    # What Nova inherits from the instance: the boot volume's image metadata (less
    # the attributes Glance keeps at top level) and what Nova itself recorded.
    top_level = ("image_id", "image_name", "size", "checksum", "container_format",
                 "disk_format", "min_ram", "min_disk")
    props = {k: str(v) for k, v in boot_meta.items()
             if k not in top_level and not k.startswith(NON_INHERITABLE)}
    props.update({"base_image_ref": "", "boot_roles": ",".join(s.roles),
                  "owner_project_name": s.project, "owner_user_name": s.user})
    props.update(dict(p.split("=", 1) for p in args.property))
    props.update({"root_device_name": "/dev/vda", "bdm_v2": "True",
                  "block_device_mapping": json.dumps(mapping)})
    record = s.glance("POST", "/v2/images", {
        "name": args.name, "disk_format": "raw", "container_format": "bare",
        "visibility": "private", "min_disk": int(boot_meta.get("min_disk") or 0),
        "min_ram": int(boot_meta.get("min_ram") or 0), **props})
    out["image_id"] = record["id"]
    # Nova activates the record by uploading zero bytes.
    status, _, parsed = request("PUT", f"{s.cloud.glance_url}/v2/images/{record['id']}/file",
                                token=s.token, timeout=60, raw=b"",
                                headers={"Content-Type": "application/octet-stream"})
    if status != 204:
        raise DevCloudError(f"zero-byte upload to {record['id']}: HTTP {status} {parsed}")
    json.dump(out, sys.stdout, indent=2)
    print()


def delete(args):
    s = Session(args.cloud, args.project)
    image = s.glance("GET", f"/v2/images/{args.image_id}")
    mapping = json.loads(image.get("block_device_mapping") or "[]")
    volumes = []
    for entry in mapping:
        if entry.get("snapshot_id"):
            status, _, parsed = request("GET", f"{s.cloud.cinder_url}/snapshots/"
                                        f"{entry['snapshot_id']}", None, s.token,
                                        headers=CINDER_HEADERS)
            if status == 200:
                volumes.append(parsed["snapshot"]["volume_id"])
                s.cinder("DELETE", f"/snapshots/{entry['snapshot_id']}")
    s.glance("DELETE", f"/v2/images/{args.image_id}")
    for entry in mapping:
        if entry.get("snapshot_id"):
            wait_gone(s, f"/snapshots/{entry['snapshot_id']}")
    for vol_id in volumes:
        s.cinder("DELETE", f"/volumes/{vol_id}", ok=(202, 404))
    for vol_id in volumes:
        wait_gone(s, f"/volumes/{vol_id}")


def wait_gone(s, path, limit=120):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        status, _, _ = request("GET", s.cloud.cinder_url + path, None, s.token,
                               headers=CINDER_HEADERS)
        if status == 404:
            return
        time.sleep(0.5)
    raise DevCloudError(f"{path} still there after {limit} s")


def main(argv):
    parser = argparse.ArgumentParser(prog="bfv_snapshot.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("create")
    c.add_argument("--cloud", required=True)
    c.add_argument("--project", required=True)
    c.add_argument("--image", required=True, help="image of the boot volume")
    c.add_argument("--name", required=True)
    c.add_argument("--root-size", type=int, help="GiB (default: from the image)")
    c.add_argument("--data-image", help="image whose bytes the data volume gets")
    c.add_argument("--data-size", type=int, help="GiB; 0 or unset: no data volume "
                                                 "(unless --data-image)")
    c.add_argument("--property", action="append", default=[], metavar="KEY=VALUE",
                   help="extra record property (like createImage's metadata)")
    d = sub.add_parser("delete")
    d.add_argument("--cloud", required=True)
    d.add_argument("--project", required=True)
    d.add_argument("image_id")
    args = parser.parse_args(argv[1:])
    if any("=" not in p for p in getattr(args, "property", [])):
        parser.error("--property takes KEY=VALUE")
    try:
        (create if args.command == "create" else delete)(args)
    except (DevCloudError, OSError) as e:
        print(f"bfv_snapshot: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
