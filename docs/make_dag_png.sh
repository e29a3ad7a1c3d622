#!/usr/bin/env bash
# Reproduce docs/pipeline_dag.png: the Kedro-Viz picture of the default pipeline
# (data loading → dense pretraining → round_1 … round_R → final retrain → evaluation).
#
#   apt-get update && apt-get install -y chromium      # once (Debian/Ubuntu, as root)
#   bash docs/make_dag_png.sh [output.png]
#
# Steps: `kedro viz build` writes a static site into build/ (Kedro-Viz 12 has no flag for
# another directory); a temporary copy of it, with Kedro-Viz's saved settings preset
# (light theme, no feature-hint pop-up, no mini-map, sidebar collapsed), is served on
# 127.0.0.1 only, and headless Chromium takes the screenshot. Nothing leaves the machine.
# Environment knobs: PORT (default 8765), WINDOW (default 1600,1800), WAIT_MS (virtual
# time budget, default 15000), CHROMIUM (the browser binary).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-docs/pipeline_dag.png}"
PORT="${PORT:-8765}"
WINDOW="${WINDOW:-1600,1800}"
WAIT_MS="${WAIT_MS:-15000}"
CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}"
[ -n "$CHROMIUM" ] || { echo "chromium not found: apt-get install -y chromium" >&2; exit 1; }
export KEDRO_DISABLE_TELEMETRY=1 DVC_NO_ANALYTICS=1

kedro viz build >/dev/null

SITE="$(mktemp -d)"; PROFILE="$(mktemp -d)"; SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$SITE" "$PROFILE"; }
trap cleanup EXIT
cp -r build/. "$SITE/"
# Kedro-Viz reads its settings from localStorage["KedroViz"] when the page loads.
python - "$SITE/index.html" <<'PY'
import json, sys
path = sys.argv[1]
settings = {"theme": "light", "showFeatureHints": False, "expandAllPipelines": False,
            "visible": {"miniMap": False, "sidebar": False}}
script = ("<script>localStorage.setItem('KedroViz', %r);</script>"
          % json.dumps(settings))
html = open(path, encoding="utf-8").read()
open(path, "w", encoding="utf-8").write(html.replace("<head>", "<head>" + script, 1))
PY

python -m http.server "$PORT" --bind 127.0.0.1 --directory "$SITE" >/dev/null 2>&1 &
SERVER_PID=$!
for _ in $(seq 50); do
  python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/')" \
    2>/dev/null && break
  sleep 0.2
done

mkdir -p "$(dirname "$OUT")"
"$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --hide-scrollbars --user-data-dir="$PROFILE" --screenshot="$OUT" \
  --window-size="$WINDOW" --virtual-time-budget="$WAIT_MS" \
  "http://127.0.0.1:$PORT/" 2>/dev/null
echo "wrote $OUT"
