#!/usr/bin/env bash
# Refreshes the JavaScript the HTML run report inlines (pipeline/html_report/assets/): the
# minified UMD builds of Vega, Vega-Lite and vega-embed, from their npm packages, and their
# licences. Needs npm. Change the versions here, run it, then update the versions and
# sha256 sums in pipeline/html_report/assets/README.md (printed at the end) and check a
# report in a browser (tests/test_html_report.py).
set -euo pipefail
VEGA=6.4.0
VEGA_LITE=6.5.0
VEGA_EMBED=7.3.0
ASSETS="$(cd "$(dirname "$0")/.." && pwd)/pipeline/html_report/assets"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
cd "$TMP"
npm pack --silent "vega@$VEGA" "vega-lite@$VEGA_LITE" "vega-embed@$VEGA_EMBED" >/dev/null
: > "$ASSETS/LICENSES.txt"
for spec in "vega $VEGA" "vega-lite $VEGA_LITE" "vega-embed $VEGA_EMBED"; do
  set -- $spec
  mkdir "$1" && tar xzf "$1-$2.tgz" -C "$1"
  cp "$1/package/build/$1.min.js" "$ASSETS/"
  { printf '%s\n' "==============================================================================" \
      "$1 $2 (npm package $1, file build/$1.min.js)" \
      "=============================================================================="
    cat "$1/package/LICENSE"; echo; } >> "$ASSETS/LICENSES.txt"
done
cd "$ASSETS" && sha256sum vega.min.js vega-lite.min.js vega-embed.min.js
