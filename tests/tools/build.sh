#!/usr/bin/env bash
# Builds the Go test tools under tests/tools/<name>/ (each a small module: its go.mod pins the
# tool's version) with the machine's Go into a cache folder outside the repository, one folder per
# tool keyed by its pinned versions, so adding or changing one tool rebuilds only that tool.
# A tool's folder may hold `package` (the Go package to build; default: the folder itself) and
# `ldflags`. Usage: build.sh [name...] (default: every tool). Prints each binary's path on its own
# line of stdout, in the order asked; progress goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v go >/dev/null 2>&1; then
  echo "tests/tools/build.sh: Go is not installed; the test tools are built with Go" >&2
  exit 2
fi
cache_root="${SCRIPT_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/script-operator}/tools"
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for d in "$here"/*/; do [ -f "$d/go.mod" ] && names+=("$(basename "$d")"); done
fi
for name in "${names[@]}"; do
  dir="$here/$name"
  [ -f "$dir/go.mod" ] || { echo "tests/tools/build.sh: no tool '$name' (no $dir/go.mod)" >&2; exit 2; }
  key="$( (go env GOVERSION; cd "$dir" && cat go.mod $(ls go.sum package ldflags *.go 2>/dev/null); cat "$here/build.sh") | sha256sum | cut -c1-12)"
  out="$cache_root/$name-$key"
  if [ ! -x "$out/$name" ]; then
    pkg="."; [ -f "$dir/package" ] && pkg="$(tr -d '\n' < "$dir/package")"
    ldflags=""; [ -f "$dir/ldflags" ] && ldflags="$(tr -d '\n' < "$dir/ldflags")"
    t0=$(date +%s)
    echo "building test tool $name (first build takes a while; later runs use the cache)..." >&2
    mkdir -p "$out"
    (cd "$dir" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$out/$name.tmp" "$pkg") >&2
    mv -f "$out/$name.tmp" "$out/$name"
    echo "built test tool $name in $(( $(date +%s) - t0 ))s" >&2
  fi
  echo "$out/$name"
done
