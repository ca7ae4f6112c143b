#!/usr/bin/env bash
# tests/dev_cloud_smoke.sh — end-to-end check of scripts/dev-cloud with the real clients.
#
# Brings the dev clouds up (installing on first use), then checks with `openstack` and
# plain REST (curl): upload and checksum, project isolation (c1-target cannot see
# c1-source's image), cloud isolation (c2 is a separate cloud), glance-direct and
# web-download imports, Range GET, the member policy on copy-image, `up` idempotence,
# and `down` + `up` keeping state. Leaves the clouds running and deletes the images it
# made. Prints `N passed, N failed` last; exits non-zero if anything failed.
# Owned with scripts/dev-cloud; not part of the Rust test suite.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEV_CLOUD="$REPO/scripts/dev-cloud"
WORK="$(mktemp -d)"
HTTP_PID=
PASSED=0
FAILED=0
IMAGES=()

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local entry
  for entry in "${IMAGES[@]}"; do
    openstack --os-cloud "${entry%% *}" image delete "${entry#* }" >/dev/null 2>&1
  done
  [[ -n "$HTTP_PID" ]] && kill "$HTTP_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

pass() { PASSED=$((PASSED + 1)); printf 'ok   %s\n' "$1"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL %s\n' "$1"; [[ -n "${2:-}" ]] && printf '     %s\n' "$2"; }
check() { local name="$1"; shift; if "$@" >"$WORK/out" 2>&1; then pass "$name"; else fail "$name" "$(tail -n 5 "$WORK/out")"; fi; }
# Judge the exit status of the command just before: `test ...; verdict NAME [DETAIL]`.
verdict() { local rc=$?; if ((rc == 0)); then pass "$1"; else fail "$1" "${2:-}"; fi; }
finish() { printf '%d passed, %d failed\n' "$PASSED" "$FAILED"; exit $((FAILED > 0)); }

command -v curl >/dev/null || { echo "dev_cloud_smoke: needs curl (apt-get install curl)" >&2; exit 2; }

# --- up, status, env ----------------------------------------------------------------
check "dev-cloud up" "$DEV_CLOUD" up
check "dev-cloud status is green" "$DEV_CLOUD" status
start=$SECONDS
check "second up is a no-op" "$DEV_CLOUD" up
(( SECONDS - start <= 5 )); verdict "second up took <= 5 s" "took $((SECONDS - start)) s"
eval "$("$DEV_CLOUD" env)" || { fail "dev-cloud env"; finish; }
[[ "$(command -v openstack)" == "$IMGFERRY_DEV_CLOUD_DIR/bin/openstack" ]]
verdict "env puts openstack on PATH" "$(command -v openstack)"

token() { openstack --os-cloud "$1" token issue -f value -c id; }
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# --- upload, checksum, visibility -----------------------------------------------------
name="smoke-$$"
head -c $((4 * 1024 * 1024)) /dev/urandom >"$WORK/x.raw"
md5="$(md5sum "$WORK/x.raw" | cut -d' ' -f1)"
id="$(openstack --os-cloud c1-source image create --disk-format raw --container-format bare \
      --file "$WORK/x.raw" "$name" -f value -c id </dev/null)"
if [[ -n "$id" ]]; then
  IMAGES+=("c1-source $id")
  pass "c1-source image create --file"
  got="$(openstack --os-cloud c1-source image show "$id" -f value -c checksum)"
  [[ "$got" == "$md5" ]]; verdict "checksum matches" "$got != $md5"
else
  fail "c1-source image create --file"
fi
openstack --os-cloud c1-source image list -f value -c ID | grep -qx "$id"
verdict "c1-source lists its image"
listing="$(openstack --os-cloud c1-target image list -f value -c ID)" && ! grep -qx "$id" <<<"$listing"
verdict "c1-target does not see c1-source's image"
listing="$(openstack --os-cloud c2-source image list -f value -c ID)" && ! grep -qx "$id" <<<"$listing"
verdict "c2-source lists its own (separate) cloud"
leak="$(openstack --os-cloud c1-source image show "$id" -f json 2>&1)"
! grep -qF "$IMGFERRY_DEV_PASSWORD" <<<"$leak"; verdict "no password in client output"

# --- Range GET ----------------------------------------------------------------------------
T="$(token c1-source)"
code="$(curl -s -o "$WORK/range" -w '%{http_code}' -H "X-Auth-Token: $T" -H 'Range: bytes=100-199' \
        "$IMGFERRY_DEV_C1_GLANCE_URL/v2/images/$id/file")"
if [[ "$code" == 206 ]] && cmp -s "$WORK/range" <(tail -c +101 "$WORK/x.raw" | head -c 100); then
  pass "Range GET returns 206 and the right bytes"
else
  fail "Range GET returns 206 and the right bytes" "HTTP $code"
fi

# --- interoperable import: glance-direct and web-download -----------------------------------
gd="$(openstack --os-cloud c1-source image create --import --disk-format raw --container-format bare \
      --file "$WORK/x.raw" "$name-gd" -f value -c id </dev/null)"
[[ -n "$gd" ]] && IMAGES+=("c1-source $gd")

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$WORK" >"$WORK/http.log" 2>&1 &
HTTP_PID=$!
wd="$(curl -sf -X POST -H "X-Auth-Token: $T" -H 'Content-Type: application/json' \
      -d "{\"name\": \"$name-wd\", \"disk_format\": \"raw\", \"container_format\": \"bare\"}" \
      "$IMGFERRY_DEV_C1_GLANCE_URL/v2/images" | json_field id)"
[[ -n "$wd" ]] && IMAGES+=("c1-source $wd")
sleep 0.5
code="$(curl -s -o "$WORK/out" -w '%{http_code}' -X POST -H "X-Auth-Token: $T" -H 'Content-Type: application/json' \
        -d "{\"method\": {\"name\": \"web-download\", \"uri\": \"http://127.0.0.1:$port/x.raw\"}}" \
        "$IMGFERRY_DEV_C1_GLANCE_URL/v2/images/$wd/import")"
[[ "$code" == 202 ]]; verdict "web-download from 127.0.0.1 accepted" "HTTP $code $(head -c 300 "$WORK/out")"
for image in "$gd" "$wd"; do
  for _ in $(seq 60); do
    status="$(openstack --os-cloud c1-source image show "$image" -f value -c status 2>/dev/null)"
    [[ "$status" == active || "$status" == killed ]] && break
    sleep 0.5
  done
  got="$(openstack --os-cloud c1-source image show "$image" -f value -c checksum 2>/dev/null)"
  [[ "$status" == active && "$got" == "$md5" ]]
  verdict "import $image active with the right checksum" "status=$status checksum=$got"
done

# --- member policy: copy-image is admin-only ------------------------------------------------
code="$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "X-Auth-Token: $T" -H 'Content-Type: application/json' \
        -d '{"method": {"name": "copy-image"}, "stores": ["spare"]}' \
        "$IMGFERRY_DEV_C1_GLANCE_URL/v2/images/$id/import")"
[[ "$code" == 403 ]]; verdict "copy-image is forbidden to a member" "HTTP $code"

# --- down, status, up keeps state -------------------------------------------------------------
check "dev-cloud down" "$DEV_CLOUD" down
! "$DEV_CLOUD" status >/dev/null 2>&1; verdict "status exits non-zero when down"
start=$SECONDS
check "dev-cloud up after down" "$DEV_CLOUD" up
echo "     (restart took $((SECONDS - start)) s)"
got="$(openstack --os-cloud c1-source image show "$id" -f value -c checksum 2>&1)"
[[ "$got" == "$md5" ]]; verdict "image survives down + up" "$got"
check "dev-cloud status is green again" "$DEV_CLOUD" status

finish
