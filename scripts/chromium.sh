#!/usr/bin/env bash
# Debian's chromium for the web page's headless-browser test (test/web/page.test.ts, docs/operations.md).
#
#   scripts/chromium.sh ensure   install chromium with apt-get if /usr/bin/chromium is missing; prints its path
#   scripts/chromium.sh path     print the binary's path (exit 3 if not installed)
#
# `ensure` is idempotent and returns at once when the binary is there. Installing needs root (or passwordless
# sudo) and a reachable Debian/Ubuntu mirror; otherwise it exits 2 with a message saying what to do.
# Downloaded .deb files are kept in ~/.cache/tidemark/apt-archives (XDG_CACHE_HOME), so a second install on
# the same machine (or a CI cache of that folder) does not fetch them again.
set -euo pipefail

binary=/usr/bin/chromium
cache="${XDG_CACHE_HOME:-$HOME/.cache}/tidemark/apt-archives"

die() {
  echo "chromium.sh: $*" >&2
  exit "${2:-1}"
}

ensure() {
  if [[ -x "$binary" ]]; then
    echo "$binary"
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 ||
    die "$binary is missing and apt-get is not available: install Chromium so that $binary exists" 2
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      die "$binary is missing and installing it needs root: run 'sudo apt-get install -y chromium'" 2
    fi
  fi
  mkdir -p "$cache/partial"
  # Several test workers may ask at once: one installs, the others wait for it.
  exec 9>"$cache/.lock"
  command -v flock >/dev/null 2>&1 && flock 9
  if [[ ! -x "$binary" ]]; then
    echo "chromium.sh: installing Debian's chromium (apt-get; .deb cache in $cache)" >&2
    local apt=(-o "Dir::Cache::archives=$cache")
    export DEBIAN_FRONTEND=noninteractive
    # The package lists may be missing (slim images) or stale: update once, then retry the install.
    if ! "${sudo[@]}" apt-get "${apt[@]}" install -y --no-install-recommends chromium >&2; then
      "${sudo[@]}" apt-get update >&2 || die "apt-get update failed: no package mirror reachable?" 2
      "${sudo[@]}" apt-get "${apt[@]}" install -y --no-install-recommends chromium >&2 ||
        die "apt-get install chromium failed" 2
    fi
  fi
  [[ -x "$binary" ]] || die "chromium was installed but $binary does not exist" 2
  echo "$binary"
}

case "${1:-}" in
  ensure) ensure ;;
  path)
    [[ -x "$binary" ]] || exit 3
    echo "$binary"
    ;;
  *) die "usage: scripts/chromium.sh ensure|path" ;;
esac
