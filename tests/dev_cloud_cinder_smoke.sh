#!/usr/bin/env bash
# tests/dev_cloud_cinder_smoke.sh — end-to-end check of the dev clouds' Cinder with the
# real `openstack` client.
#
# Brings the dev clouds up with Cinder (installing on first use), then on c1-source:
# volumes from a raw and a qcow2 image, a snapshot, a volume from the snapshot, that
# volume uploaded to an image (raw) and the qcow2 image's volume uploaded as qcow2, both
# downloaded with `image save` and compared byte for byte with the originals. Also:
# both block-storage catalog entries, project and cloud isolation, an admin-set quota
# that refuses a member's create, a volume with snapshots that Cinder refuses to upload,
# `up` idempotence, `down` leaving no process and no mount behind, and `down` + `up`
# keeping volumes. Deletes what it made. Prints the time of each step and
# `N passed, N failed` last; exits non-zero if anything failed.
# Owned with scripts/dev-cloud; not part of the Rust test suite.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEV_CLOUD="$REPO/scripts/dev-cloud"
WORK="$(mktemp -d)"
PASSED=0
FAILED=0
CLEANUP=()  # "kind id" entries, deleted in reverse order on exit

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local i kind id
  for ((i = ${#CLEANUP[@]} - 1; i >= 0; i--)); do
    read -r kind id <<<"${CLEANUP[i]}"
    delete_and_wait "$kind" "$id" >/dev/null 2>&1
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

pass() { PASSED=$((PASSED + 1)); printf 'ok   %s\n' "$1"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL %s\n' "$1"; [[ -n "${2:-}" ]] && printf '     %s\n' "$2"; }
check() { local name="$1"; shift; if "$@" >"$WORK/out" 2>&1; then pass "$name"; else fail "$name" "$(tail -n 5 "$WORK/out")"; fi; }
verdict() { local rc=$?; if ((rc == 0)); then pass "$1"; else fail "$1" "${2:-}"; fi; }
finish() { printf '%d passed, %d failed\n' "$PASSED" "$FAILED"; exit $((FAILED > 0)); }
now() { date +%s.%N; }
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
took() { awk -v a="$2" -v b="$(now)" -v what="$1" 'BEGIN { printf "     (%s: %.1f s)\n", what, b - a }'; }

OS=(openstack --os-cloud c1-source)

# wait_status KIND ID WANT: polls `KIND show` (up to 300 s) until status is WANT.
wait_status() {
  local kind="$1" id="$2" want="$3" status="" i
  for ((i = 0; i < 600; i++)); do
    # shellcheck disable=SC2086  # kind is "volume", "volume snapshot" or "image"
    status="$("${OS[@]}" $kind show "$id" -f value -c status 2>/dev/null)"
    [[ "$status" == "$want" ]] && return 0
    [[ "$status" == error* || "$status" == killed ]] && break
    sleep 0.5
  done
  echo "$kind $id: status '$status', wanted '$want'" >&2
  return 1
}

# delete_and_wait KIND ID: deletes, then waits (up to 120 s) until it is gone.
delete_and_wait() {
  local kind="$1" id="$2" i
  [[ "$kind" == snapshot ]] && kind="volume snapshot"
  # shellcheck disable=SC2086
  "${OS[@]}" $kind delete "$id" || return 1
  for ((i = 0; i < 240; i++)); do
    # shellcheck disable=SC2086
    "${OS[@]}" $kind show "$id" >/dev/null 2>&1 || return 0
    sleep 0.5
  done
  return 1
}

# --- up, status, env -----------------------------------------------------------------
t=$(now)
check "dev-cloud up --with-cinder" "$DEV_CLOUD" up --with-cinder
took "up" "$t"
check "dev-cloud status is green" "$DEV_CLOUD" status
grep -q "cinder-volume" <("$DEV_CLOUD" status); verdict "status lists cinder-volume"
t=$(now)
check "second up is a no-op" "$DEV_CLOUD" up --with-cinder
took "second up" "$t"
eval "$("$DEV_CLOUD" env)" || { fail "dev-cloud env"; finish; }
catalog="$(openstack --os-cloud c1-source catalog list -f value -c Type 2>&1)"
grep -qx volumev3 <<<"$catalog" && grep -qx block-storage <<<"$catalog"
verdict "catalog has volumev3 and block-storage" "$catalog"

# --- images: raw and qcow2 ----------------------------------------------------------------
name="cinder-smoke-$$"
head -c $((64 << 20)) /dev/urandom >"$WORK/a.raw"
head -c $((48 << 20)) /dev/urandom >"$WORK/b.raw"
qemu-img convert -f raw -O qcow2 "$WORK/b.raw" "$WORK/b.qcow2"
img_a="$("${OS[@]}" image create --disk-format raw --container-format bare --file "$WORK/a.raw" "$name-a" -f value -c id </dev/null)"
[[ -n "$img_a" ]] && CLEANUP+=("image $img_a")
img_b="$("${OS[@]}" image create --disk-format qcow2 --container-format bare --file "$WORK/b.qcow2" "$name-b" -f value -c id </dev/null)"
[[ -n "$img_b" ]] && CLEANUP+=("image $img_b")
[[ -n "$img_a" && -n "$img_b" ]]; verdict "raw and qcow2 images uploaded"

# --- volume from image (raw, qcow2) -------------------------------------------------------------
t=$(now)
vol_a="$("${OS[@]}" volume create --image "$img_a" --size 1 "$name-va" -f value -c id)"
[[ -n "$vol_a" ]] && CLEANUP+=("volume $vol_a")
wait_status volume "$vol_a" available; verdict "volume from the raw image is available"
took "volume create --image (raw, 1 GiB)" "$t"
t=$(now)
vol_b="$("${OS[@]}" volume create --image "$img_b" --size 1 "$name-vb" -f value -c id)"
[[ -n "$vol_b" ]] && CLEANUP+=("volume $vol_b")
wait_status volume "$vol_b" available; verdict "volume from the qcow2 image is available"
took "volume create --image (qcow2, 1 GiB)" "$t"
bootable="$("${OS[@]}" volume show "$vol_a" -f value -c bootable)"
[[ "${bootable,,}" == true ]]; verdict "a volume from an image is bootable" "bootable=$bootable"

listing="$(openstack --os-cloud c1-target volume list -f value -c ID)" && ! grep -qx "$vol_a" <<<"$listing"
verdict "c1-target does not see c1-source's volume"
listing="$(openstack --os-cloud c2-source volume list -f value -c ID)" && ! grep -qx "$vol_a" <<<"$listing"
verdict "c2-source lists its own (separate) cloud's volumes"

# --- snapshot, volume from snapshot ------------------------------------------------------------
t=$(now)
snap="$("${OS[@]}" volume snapshot create --volume "$vol_a" "$name-snap" -f value -c id)"
[[ -n "$snap" ]] && CLEANUP+=("snapshot $snap")
wait_status "volume snapshot" "$snap" available; verdict "snapshot is available"
took "volume snapshot create" "$t"
t=$(now)
vol_s="$("${OS[@]}" volume create --snapshot "$snap" --size 1 "$name-vs" -f value -c id)"
[[ -n "$vol_s" ]] && CLEANUP+=("volume $vol_s")
wait_status volume "$vol_s" available; verdict "volume from the snapshot is available"
took "volume create --snapshot" "$t"

# --- upload to image, download, compare ---------------------------------------------------------
# expected: the original's bytes, then zeros up to the volume's 1 GiB.
padded() { cat "$1"; head -c $(((1 << 30) - $(stat -c %s "$1"))) /dev/zero; }

t=$(now)
up_s="$("${OS[@]}" image create --volume "$vol_s" --disk-format raw "$name-up-raw" -f value -c image_id)"
[[ -n "$up_s" ]] && CLEANUP+=("image $up_s")
wait_status image "$up_s" active; verdict "upload-to-image (raw) of the volume from the snapshot is active"
took "image create --volume (raw, 1 GiB)" "$t"
t=$(now)
"${OS[@]}" image save --file "$WORK/up.raw" "$up_s"
took "image save (1 GiB)" "$t"
cmp -s "$WORK/up.raw" <(padded "$WORK/a.raw"); verdict "raw image -> volume -> snapshot -> volume -> image keeps every byte"
rm -f "$WORK/up.raw"

t=$(now)
up_b="$("${OS[@]}" image create --volume "$vol_b" --disk-format qcow2 "$name-up-qcow2" -f value -c image_id)"
[[ -n "$up_b" ]] && CLEANUP+=("image $up_b")
wait_status image "$up_b" active; verdict "upload-to-image (qcow2) is active"
took "image create --volume (qcow2, 1 GiB)" "$t"
"${OS[@]}" image save --file "$WORK/up.qcow2" "$up_b"
qemu-img convert -f qcow2 -O raw "$WORK/up.qcow2" "$WORK/up-b.raw" &&
  cmp -s "$WORK/up-b.raw" <(padded "$WORK/b.raw")
verdict "qcow2 image -> volume -> qcow2 image keeps every byte"
rm -f "$WORK/up.qcow2" "$WORK/up-b.raw"

# Cinder 29's file-based drivers refuse to upload a volume that has snapshots (its
# active file is then a qcow2 overlay that fails the safety check); Cinder deletes
# the image it had created. Documented in docs/design/cinder-dev-cloud.md.
bad="$("${OS[@]}" image create --volume "$vol_a" --disk-format raw "$name-up-refused" -f value -c image_id)"
gone=1
for _ in $(seq 120); do
  "${OS[@]}" image show "$bad" >/dev/null 2>&1 || { gone=0; break; }
  sleep 0.5
done
((gone == 0)); verdict "upload of a volume with snapshots is refused and its image deleted"
wait_status volume "$vol_a" available; verdict "the refused volume is available again"

# --- a Nova-like volume-backed instance snapshot (scripts/dev-cloud.d/bfv_snapshot.py) ---------
t=$(now)
BFV=("$IMGFERRY_DEV_CLOUD_DIR/venv/bin/python" "$REPO/scripts/dev-cloud.d/bfv_snapshot.py")
if "${BFV[@]}" create --cloud c1 --project source --image "$img_a" --data-image "$img_b" \
     --name "$name-bfv" --property hw_machine_type=q35 >"$WORK/bfv.json"; then
  pass "bfv_snapshot.py create"
  took "bfv_snapshot.py create (2 volumes, 2 snapshots, 1 record)" "$t"
  bfv="$(json_field image_id <"$WORK/bfv.json")"
  "${OS[@]}" image show "$bfv" -f json >"$WORK/bfv-image.json"
  python3 - "$WORK/bfv-image.json" <<'PY'
import json, sys
img = json.load(open(sys.argv[1]))
p = img["properties"]
bdm = json.loads(p["block_device_mapping"])
assert img["status"] == "active" and img["size"] == 0, (img["status"], img["size"])
assert p["bdm_v2"] == "True" and p["root_device_name"] == "/dev/vda", p
assert p["hw_machine_type"] == "q35", p
assert [(e["device_name"], e["boot_index"], e["source_type"], e["destination_type"])
        for e in bdm] == [("/dev/vda", 0, "snapshot", "volume"),
                          ("/dev/vdb", None, "snapshot", "volume")], bdm
assert all(len(e) == 19 and e["snapshot_id"] for e in bdm), bdm
PY
  verdict "the record has Nova's size 0, bdm_v2, root_device_name and a 2-entry mapping"
  for snap_id in $(python3 -c 'import json,sys; [print(s["id"]) for s in json.load(open(sys.argv[1]))["snapshots"]]' "$WORK/bfv.json"); do
    st="$("${OS[@]}" volume snapshot show "$snap_id" -f value -c status)"
    [[ "$st" == available ]]; verdict "mapped snapshot $snap_id is available" "$st"
  done
  t=$(now)
  "${BFV[@]}" delete --cloud c1 --project source "$bfv"; verdict "bfv_snapshot.py delete"
  took "bfv_snapshot.py delete" "$t"
  left="$("${OS[@]}" volume list -f value -c Name | grep -c -- "$name-bfv")"
  [[ "$left" == 0 ]]; verdict "bfv_snapshot.py delete leaves none of its volumes" "$left left"
else
  fail "bfv_snapshot.py create"
fi

# --- quota set by admin -------------------------------------------------------------------------------
gigabytes="$(openstack --os-cloud c1-admin quota show --volume source -f json 2>/dev/null |
  python3 -c 'import json,sys; d=json.load(sys.stdin); d=d if isinstance(d,dict) else {r["Resource"]:r["Limit"] for r in d}; print(d["gigabytes"])')"
if openstack --os-cloud c1-admin quota set --gigabytes 4 source; then
  pass "admin sets the source project's gigabytes quota"
  ! "${OS[@]}" volume create --size 2 "$name-over" >"$WORK/out" 2>&1
  verdict "a create over the quota is refused" "$(cat "$WORK/out")"
  grep -qi quota "$WORK/out"; verdict "the refusal names the quota" "$(cat "$WORK/out")"
  openstack --os-cloud c1-admin quota set --gigabytes "${gigabytes:-1000}" source
  verdict "admin restores the quota ($gigabytes)"
else
  fail "admin sets the source project's gigabytes quota"
fi
! "${OS[@]}" quota set --gigabytes 5000 source >/dev/null 2>&1; verdict "a member cannot set quotas"

# --- delete everything ------------------------------------------------------------------------
t=$(now)
ok=0
for ((i = ${#CLEANUP[@]} - 1; i >= 0; i--)); do
  read -r kind id <<<"${CLEANUP[i]}"
  delete_and_wait "$kind" "$id" || { ok=1; echo "could not delete ${CLEANUP[i]}" >&2; }
done
((ok == 0)); verdict "every volume, snapshot and image deleted"
CLEANUP=()
took "deleting 3 volumes, 1 snapshot, 4 images" "$t"
# Only this run's volumes: other tests' volumes may share the cloud.
leftover="$(for v in "$vol_a" "$vol_b" "$vol_s"; do
  find "$IMGFERRY_DEV_CLOUD_DIR/c1/cinder/share" -name "volume-$v*" 2>/dev/null; done)"
[[ -z "$leftover" ]]; verdict "no file of this run's volumes left in the share" "$leftover"

# --- down, up keeps volumes ---------------------------------------------------------------------------
keep="$("${OS[@]}" volume create --size 1 "$name-keep" -f value -c id)"
wait_status volume "$keep" available; verdict "a blank volume is available"
CLEANUP+=("volume $keep")
t=$(now)
check "dev-cloud down" "$DEV_CLOUD" down
took "down" "$t"
! "$DEV_CLOUD" status >/dev/null 2>&1; verdict "status exits non-zero when down"
procs="$({ pgrep -af "$IMGFERRY_DEV_CLOUD_DIR"; pgrep -af "epmd -port ${IMGFERRY_DEV_EPMD_PORT:-28674}"; } |
  grep -v dev_cloud_cinder_smoke)"
[[ -z "$procs" ]]; verdict "down leaves no dev-cloud process (broker, epmd, privsep included)" "$procs"
! grep -q "$IMGFERRY_DEV_CLOUD_DIR" /proc/mounts; verdict "the host's mount table never had the share"
t=$(now)
check "dev-cloud up after down" "$DEV_CLOUD" up --with-cinder
took "restart (up after down)" "$t"
status="$("${OS[@]}" volume show "$keep" -f value -c status 2>&1)"
[[ "$status" == available ]]; verdict "volume survives down + up" "$status"
check "dev-cloud status is green again" "$DEV_CLOUD" status

finish
