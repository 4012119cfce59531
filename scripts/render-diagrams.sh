#!/usr/bin/env bash
# Render the architecture diagrams: docs/diagrams/NAME.dot -> docs/images/NAME.svg and NAME.png.
#
# A doc-build tool only: the rendered files are committed, so neither the tests nor the
# workbook need Graphviz. Run it after editing a .dot source and commit both.
#
# Usage: scripts/render-diagrams.sh [NAME.dot ...]   (default: every docs/diagrams/*.dot)
# Environment: DOT (default: dot), PNG_DPI (default: 144; SVG is resolution-free).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/docs/diagrams"
OUT="$ROOT/docs/images"
DOT="${DOT:-dot}"
PNG_DPI="${PNG_DPI:-144}"

die() { printf 'render-diagrams: ERROR: %s\n' "$*" >&2; exit 1; }

command -v "$DOT" >/dev/null 2>&1 \
    || die "Graphviz '$DOT' not found: apt-get install graphviz (a doc-build tool only)"

sources=("$@")
if [[ ${#sources[@]} -eq 0 ]]; then
    shopt -s nullglob
    sources=("$SRC"/*.dot)
    shopt -u nullglob
fi
[[ ${#sources[@]} -gt 0 ]] || die "no .dot files in $SRC"

mkdir -p "$OUT"
for src in "${sources[@]}"; do
    [[ -f $src ]] || die "$src: no such file"
    name="$(basename "$src" .dot)"
    # Render to a temporary file first: a syntax error must not leave half an image behind.
    for fmt in svg png; do
        tmp="$OUT/.$name.$fmt.tmp"
        opts=("-T$fmt")
        [[ $fmt == png ]] && opts+=("-Gdpi=$PNG_DPI")
        if ! "$DOT" "${opts[@]}" -o "$tmp" "$src"; then
            rm -f "$tmp"
            die "$DOT could not render $src as $fmt"
        fi
        mv "$tmp" "$OUT/$name.$fmt"
    done
    printf 'render-diagrams: %s -> docs/images/%s.svg, %s.png\n' "${src#"$ROOT"/}" "$name" "$name"
done
