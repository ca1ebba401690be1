#!/usr/bin/env bash
# The CDS Hooks reference client (cds-hooks/sandbox) against this service, on loopback,
# with screenshots of order-select and order-sign (issue 13). Not CI: it needs Node/npm,
# Debian chromium and a copy of the sandbox repository.
#
#   tools/sandbox.sh build     # copy the sandbox source to $WORK/src, npm ci && npm run build
#   tools/sandbox.sh shots     # serve service + FHIR + sandbox, save $WORK/order-select.png, order-sign.png
#   tools/sandbox.sh all       # both
#
# Settings (environment):
#   SANDBOX_GIT_DIR  the sandbox repository's git directory (a bare mirror is fine; default:
#                    /work/.mirror/cds-hooks+sandbox/repo, or clone https://github.com/cds-hooks/sandbox)
#   WORK             working directory (default /tmp/sact-sandbox)
#   SCENARIO_SELECT, SCENARIO_SIGN   scenario files served as the FHIR server for each hook
#   CHROMIUM         chromium binary (default /usr/bin/chromium)
#
# How it fits together (all on 127.0.0.1):
#   sandbox (static build)  :8090  --serviceDiscoveryURL-->  cds-service serve  :8089
#                            --fhirServiceUrl-->           cds-service replay --serve-fhir  :8091
# The service runs unauthenticated on loopback (no issuers) and allows the sandbox origin
# http://127.0.0.1:8090 by CORS; see docs/replay.md "The reference sandbox, offline" to trust the
# sandbox's own JWT issuer instead.
set -euo pipefail
HERE="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${WORK:-/tmp/sact-sandbox}"
SANDBOX_GIT_DIR="${SANDBOX_GIT_DIR:-/work/.mirror/cds-hooks+sandbox/repo}"
SCENARIO_SELECT="${SCENARIO_SELECT:-$HERE/tests/scenarios/whole-record-ph-negative-cycle-1-day-1.json}"
SCENARIO_SIGN="${SCENARIO_SIGN:-$HERE/tests/scenarios/whole-record-ph-positive-post-hsct-cycle-2.json}"
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
CDS="${CDS:-cds-service}"
SERVICE_PORT=8089 FHIR_PORT=8091 SANDBOX_PORT=8090
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$WORK"

build() {
  if [ ! -d "$WORK/src" ]; then
    if [ -d "$SANDBOX_GIT_DIR" ]; then
      mkdir -p "$WORK/src"
      git --git-dir="$SANDBOX_GIT_DIR" archive HEAD | tar -x -C "$WORK/src"
    else
      git clone --depth 1 https://github.com/cds-hooks/sandbox "$WORK/src"
    fi
  fi
  (cd "$WORK/src" && npm ci --no-audit --no-fund && npm run build)
  echo "sandbox built in $WORK/src/build"
}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }

wait_for() {  # url
  for _ in $(seq 1 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.3; done
  echo "no answer from $1" >&2; return 1
}

shots() {
  trap cleanup EXIT
  [ -f "$WORK/src/build/index.html" ] || { echo "run: $0 build" >&2; exit 1; }
  # the sandbox build, served as static files
  (cd "$WORK/src/build" && python3 -m http.server "$SANDBOX_PORT" --bind 127.0.0.1 >"$WORK/static.log" 2>&1) &
  pids+=($!)
  CDS_CORS_ORIGINS="http://127.0.0.1:$SANDBOX_PORT" CDS_LOG_FORMAT=text CDS_DATA_DIR="$WORK/data" PYTHONUNBUFFERED=1 \
    "$CDS" serve --port "$SERVICE_PORT" >"$WORK/service.log" 2>&1 &
  pids+=($!)
  wait_for "http://127.0.0.1:$SERVICE_PORT/healthz"
  wait_for "http://127.0.0.1:$SANDBOX_PORT/"
  (cd "$WORK/node" 2>/dev/null || { mkdir -p "$WORK/node" && cd "$WORK/node" && npm init -y >/dev/null && npm i --no-audit --no-fund playwright-core >/dev/null; })
  for hook in order-select order-sign; do
    scenario="$SCENARIO_SELECT"; [ "$hook" = order-sign ] && scenario="$SCENARIO_SIGN"
    python3 - "$scenario" "$WORK/drafts-$hook.json" <<'PY'
import json, sys
from datetime import UTC, datetime
from cds_service.replay.scenario import load_scenario
resolved = load_scenario(sys.argv[1]).resolved(datetime.now(UTC))
json.dump({"draftOrders": {"resourceType": "Bundle", "type": "collection",
                           "entry": [{"resource": r} for r in resolved.draft_orders]},
           "selections": list(resolved.selections) or [f"MedicationRequest/{r['id']}" for r in resolved.draft_orders[:1]]},
          open(sys.argv[2], "w"))
PY
    PYTHONUNBUFFERED=1 "$CDS" replay --serve-fhir --port "$FHIR_PORT" --url "http://127.0.0.1:$SERVICE_PORT" \
      "$scenario" >"$WORK/fhir-$hook.log" 2>&1 &
    fhir=$!
    wait_for "http://127.0.0.1:$FHIR_PORT/metadata"
    # the link the command prints, pointed at the loopback sandbox instead of the public one
    local_sandbox="http://127.0.0.1:$SANDBOX_PORT/"
    link="$(grep -m1 '^CDS Hooks sandbox: ' "$WORK/fhir-$hook.log")"
    link="${link#CDS Hooks sandbox: }"
    link="${link/https:\/\/sandbox.cds-hooks.org\//$local_sandbox}"
    echo "$hook: $link"
    NODE_PATH="$WORK/node/node_modules" node "$HERE/tools/sandbox-shot.js" "$CHROMIUM" "$link" "$WORK/$hook.png" "$hook" "$WORK/drafts-$hook.json"
    kill "$fhir" 2>/dev/null || true; wait "$fhir" 2>/dev/null || true
  done
  echo "screenshots: $WORK/order-select.png $WORK/order-sign.png"
}

case "${1:-all}" in
  build) build ;;
  shots) shots ;;
  all) build; shots ;;
  *) echo "usage: $0 [build|shots|all]" >&2; exit 2 ;;
esac
