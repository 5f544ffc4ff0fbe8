#!/usr/bin/env bash
# A real Toxiproxy server (Shopify/toxiproxy v2) for the chaos suite (docs/chaos.md).
#
#   scripts/toxiproxy.sh install             go install the pinned server into the tool cache (once); prints its path
#   scripts/toxiproxy.sh start [port] [dir]  start it on 127.0.0.1:<port> (default 8474), pid + log in <dir>; waits for the API
#   scripts/toxiproxy.sh stop [dir]          stop the server whose pid file is in <dir>
#   scripts/toxiproxy.sh path                print the binary's path (exit 3 if not installed)
#
# The chaos harness (chaos-tests/) calls `install` and then runs the binary itself on a free port.
# Environment: TOXIPROXY_DIR (default ~/.cache/tidemark/toxiproxy-run), XDG_CACHE_HOME.
set -euo pipefail

# Pinned: change here only. The binary name carries the version, so a new pin installs next to the old one.
TOXIPROXY_VERSION=v2.12.0
bin_dir="${XDG_CACHE_HOME:-$HOME/.cache}/tidemark/bin"
binary="$bin_dir/toxiproxy-server-$TOXIPROXY_VERSION"

die() {
  echo "toxiproxy.sh: $*" >&2
  exit 1
}

install() {
  if [[ ! -x "$binary" ]]; then
    command -v go >/dev/null 2>&1 || die "go is required to install Toxiproxy (https://go.dev/dl)"
    mkdir -p "$bin_dir"
    # Several test files may install at once: one builds, the others wait for it.
    exec 9>"$bin_dir/.toxiproxy.lock"
    command -v flock >/dev/null 2>&1 && flock 9
    if [[ ! -x "$binary" ]]; then
      echo "toxiproxy.sh: installing github.com/Shopify/toxiproxy/v2 $TOXIPROXY_VERSION into $bin_dir" >&2
      local tmp
      tmp="$(mktemp -d "$bin_dir/.toxiproxy-gobin.XXXXXX")"
      GOBIN="$tmp" go install "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION" >&2 ||
        { rm -rf "$tmp"; die "go install failed"; }
      mv -f "$tmp/server" "$binary"
      rm -rf "$tmp"
    fi
  fi
  echo "$binary"
}

start() {
  local port="${1:-8474}" dir="${2:-${TOXIPROXY_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tidemark/toxiproxy-run}}"
  install >/dev/null
  mkdir -p "$dir"
  if [[ -f "$dir/pid" ]] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    die "already running (pid $(cat "$dir/pid")); stop it first"
  fi
  "$binary" -host 127.0.0.1 -port "$port" >"$dir/toxiproxy.log" 2>&1 &
  echo $! >"$dir/pid"
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$port/version" >/dev/null 2>&1; then
      echo "127.0.0.1:$port"
      return 0
    fi
    kill -0 "$(cat "$dir/pid")" 2>/dev/null || die "the server exited; see $dir/toxiproxy.log"
    sleep 0.1
  done
  die "the API did not answer on 127.0.0.1:$port within 10 s"
}

stop() {
  local dir="${1:-${TOXIPROXY_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tidemark/toxiproxy-run}}"
  [[ -f "$dir/pid" ]] || return 0
  local pid
  pid="$(cat "$dir/pid")"
  kill "$pid" 2>/dev/null || true
  rm -f "$dir/pid"
}

case "${1:-}" in
install) install ;;
start) shift; start "$@" ;;
stop) shift; stop "$@" ;;
path) [[ -x "$binary" ]] && echo "$binary" || exit 3 ;;
*) die "usage: scripts/toxiproxy.sh install | start [port] [dir] | stop [dir] | path" ;;
esac
