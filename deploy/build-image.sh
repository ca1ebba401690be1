#!/usr/bin/env bash
# Build the sact-cds container image on this machine and smoke-test it. Run by hand (root,
# podman + buildah + debootstrap installed); not part of CI.
#
#   deploy/build-image.sh               # base image (once), wheel, image, smoke test
#   IMAGE=registry.example.org/sact-cds:0.1.0 deploy/build-image.sh
#   REBUILD_BASE=1 deploy/build-image.sh  # re-make the Debian base image
#
# No registry serves base images here, so the base is made locally: debootstrap a minimal
# Debian bookworm (+ python3-venv, CA certificates) from the machine's own Debian mirror,
# trim docs/locales/apt lists, `podman import` it. The build runs with chroot isolation
# (podman run needs cgroups this machine does not give), and pip inside the build gets the
# host's CA bundle through a read-only mount. The smoke test (deploy/smoke.py) runs inside
# the image with `buildah run`, as the image's non-root user.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
IMAGE="${IMAGE:-localhost/sact-cds:${VERSION}}"
BASE_IMAGE="${BASE_IMAGE:-localhost/sact-cds-base:bookworm}"
MIRROR="${MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
HOST_CERTS=/etc/ssl/certs
WORK="$(mktemp -d)"
CTR=""
cleanup() {
    [ -n "$CTR" ] && buildah rm "$CTR" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
stamp() { date +%s.%N; }
took() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f} s')" "$1" "$(stamp)"; }

t0=$(stamp)
if [ -n "${REBUILD_BASE:-}" ] || ! podman image exists "$BASE_IMAGE"; then
    echo "== base image $BASE_IMAGE: debootstrap bookworm from $MIRROR"
    t=$(stamp)
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log"; exit 1; }
    rm -rf "$WORK"/rootfs/var/cache/apt/* "$WORK"/rootfs/var/lib/apt/lists/* \
        "$WORK"/rootfs/usr/share/doc/* "$WORK"/rootfs/usr/share/man/* "$WORK"/rootfs/usr/share/info/* \
        "$WORK"/rootfs/usr/share/locale/*
    tar -C "$WORK/rootfs" -c . | podman import --quiet - "$BASE_IMAGE" >/dev/null
    rm -rf "$WORK/rootfs"
    echo "   base image in $(took "$t")"
fi

echo "== wheel"
t=$(stamp)
mkdir -p "$WORK/context/dist"
python3 -m pip wheel --quiet --no-deps -w "$WORK/context/dist" .
cp deploy/Containerfile "$WORK/context/"
# The R4 JSON schema `validate` checks against (fetched with npm once, cached).
# Needs this checkout's dependencies (e.g. its .venv activated), or CDS_FHIR_SCHEMA set.
SCHEMA="${CDS_FHIR_SCHEMA:-$(PYTHONPATH="$PWD" python3 -c \
    'from cds_service.knowledge._schema import schema_path; print(schema_path())')}" \
    || { echo "cannot find or fetch the R4 fhir.schema.json: set CDS_FHIR_SCHEMA" >&2; exit 1; }
cp "$SCHEMA" "$WORK/context/fhir.schema.json"
echo "   $(ls "$WORK"/context/dist) in $(took "$t")"

echo "== image $IMAGE"
t=$(stamp)
podman build --quiet --isolation chroot --format docker \
    --build-arg BASE_IMAGE="$BASE_IMAGE" \
    --volume "$HOST_CERTS:/run/host-certs:ro" --build-arg PIP_CERT=/run/host-certs/ca-certificates.crt \
    -t "$IMAGE" -f "$WORK/context/Containerfile" "$WORK/context" >/dev/null
echo "   built in $(took "$t"); size $(podman image inspect --format '{{.Size}}' "$IMAGE" \
    | python3 -c 'import sys; print(f"{int(sys.stdin.read()) / 1e6:.0f} MB")')"

echo "== smoke test (inside the image, as its user)"
t=$(stamp)
HEALTHCHECK="$(podman image inspect --format '{{json .Config.Healthcheck.Test}}' "$IMAGE" \
    | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)[1:]))')"
USER_NAME="$(podman image inspect --format '{{.Config.User}}' "$IMAGE")"
CTR="$(buildah from --quiet "$IMAGE")"
buildah run --isolation chroot --user "$USER_NAME" \
    --volume "$PWD/deploy/smoke.py:/smoke/smoke.py:ro" --volume "$PWD/examples:/smoke/examples:ro" \
    --env SMOKE_HEALTHCHECK="$HEALTHCHECK" \
    "$CTR" -- python3 /smoke/smoke.py /smoke/examples
echo "   smoke test in $(took "$t")"
echo "== $IMAGE ready (total $(took "$t0")). Run it with e.g.:"
echo "   podman run -p 8080:8080 -e CDS_TRUSTED_ISSUERS='[...]' -e CDS_PUBLIC_BASE_URL=https://cds.example.org \\"
echo "       -e CDS_DATABASE_URL=postgresql+psycopg://... $IMAGE"
