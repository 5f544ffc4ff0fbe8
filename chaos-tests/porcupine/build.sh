#!/usr/bin/env bash
# Builds the Porcupine linearizability checker (this folder) into the tool cache and prints its path.
# The binary's name carries a hash of the sources, so an edit rebuilds and a second run does nothing.
#   chaos-tests/porcupine/build.sh        -> ~/.cache/tidemark/bin/tidemark-porcupine-<hash>
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin_dir="${XDG_CACHE_HOME:-$HOME/.cache}/tidemark/bin"
command -v go >/dev/null 2>&1 || { echo "porcupine/build.sh: go is required (https://go.dev/dl)" >&2; exit 1; }
hash="$(cat "$here/main.go" "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-12)"
out="$bin_dir/tidemark-porcupine-$hash"
if [[ ! -x "$out" ]]; then
  mkdir -p "$bin_dir"
  # Concurrent test files may build at once: build to a private name, then rename (atomic).
  (cd "$here" && go build -o "$out.tmp.$$" .)
  mv -f "$out.tmp.$$" "$out"
fi
echo "$out"
