#!/usr/bin/env bash
# Vendor Vega, Vega-Lite and Vega-Embed from the npm registry and build the offline HTML
# template that `dvc plots show / diff` fill (DVC's own page loads them from a CDN, which is
# a blank page offline).
#
#   bash docs/vendor/update.sh        # needs npm (apt-get install -y nodejs npm)
#
# Pinned to the major versions DVC's renderer writes specs for (Vega-Lite v5 schema,
# dvc-render 1.x loads vega@5, vega-lite@5, vega-embed@6). Each tarball is checked against
# the registry's sha512 integrity below before anything is copied. Output, next to this
# script: <package>-<version>/{<package>.min.js, LICENSE or LICENSE.md},
# dvc_plots_offline.html (the three scripts inlined: one self-contained page per plot
# output directory, wherever `-o` puts it).
set -euo pipefail
cd "$(dirname "$0")"
PACKAGES=(
  "vega 5.33.1 sha512-1fArfVDUqVbb5z8n+/nVQb+VNBzx8svY6CrsyTK4Ujm4yrd9I1auoKxBAPXLCavY1LcrbHUskQbGUP8gXOzyQw=="
  "vega-lite 5.23.0 sha512-l4J6+AWE3DIjvovEoHl2LdtCUkfm4zs8Xxx7INwZEAv+XVb6kR6vIN1gt3t2gN2gs/y4DYTs/RPoTeYAuEg6mA=="
  "vega-embed 6.29.0 sha512-PmlshTLtLFLgWtF/b23T1OwX53AugJ9RZ3qPE2c01VFAbgt3/GSNI/etzA/GzdrkceXFma+FDHNXUppKuM0U6Q=="
)
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
for entry in "${PACKAGES[@]}"; do
  read -r name version integrity <<<"$entry"
  tarball="$(cd "$WORK" && npm pack --silent "$name@$version" 2>/dev/null | tail -n 1)"
  actual="sha512-$(openssl dgst -sha512 -binary "$WORK/$tarball" | base64 -w0)"
  [ "$actual" = "$integrity" ] || { echo "$name@$version: integrity $actual != $integrity" >&2; exit 1; }
  mkdir -p "$WORK/$name" && tar -xzf "$WORK/$tarball" -C "$WORK/$name"
  target="$name-$version"
  rm -rf "$target" && mkdir "$target"
  cp "$WORK/$name/package/build/$name.min.js" "$target/"
  cp "$WORK/$name/package/package.json" "$target/package.json"
  # vega's npm tarball ships no licence file (its package.json says BSD-3-Clause):
  # README.md here says so; vega-lite and vega-embed ship theirs.
  for licence in LICENSE LICENSE.md; do
    [ -f "$WORK/$name/package/$licence" ] && cp "$WORK/$name/package/$licence" "$target/"
  done
  echo "$name@$version ok"
done

python3 - <<'PY'
from pathlib import Path

scripts = "\n".join(
    f"<script>/* {path.parent.name} ({path.name}, npm, licence in docs/vendor/{path.parent.name}) */\n"
    f"{path.read_text(encoding='utf8')}\n</script>"
    for path in (Path(p) for p in ("vega-5.33.1/vega.min.js", "vega-lite-5.23.0/vega-lite.min.js",
                                    "vega-embed-6.29.0/vega-embed.min.js"))
)
page = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC plots (offline)</title>
    <!-- Built by docs/vendor/update.sh: Vega, Vega-Lite and Vega-Embed inlined, so the
         page needs no network. DVC puts its plots in the body; this template has no
         placeholder for DVC's own script tags, which would load them from a CDN. -->
    SCRIPTS
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
""".replace("SCRIPTS", scripts)
Path("dvc_plots_offline.html").write_text(page, encoding="utf8")
print("dvc_plots_offline.html", len(page), "bytes")
PY
