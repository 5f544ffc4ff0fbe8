#!/usr/bin/env bash
# Peer databases for `npm run bench:peers` (docs/benchmarks.md, "Peers"), installed from public registries into
# an ignored cache outside the repo, pinned; a second run finds them and downloads nothing.
#
#   scripts/peers.sh install [victoriametrics|questdb ...]   build/fetch the peers (default: all); idempotent
#   scripts/peers.sh path victoriametrics|questdb|java        print the binary / jar (installing it if needed)
#   scripts/peers.sh versions                                 print "name version" per peer
#
# Where: ${XDG_CACHE_HOME:-~/.cache}/tidemark/peers/<name>-<version>/ (TIDEMARK_PEERS_HOME overrides the root).
#  - VictoriaMetrics single-node: the module from the Go module proxy (sources land in the Go module cache),
#    built with `go build` inside the module. `go install ...@version` is refused here: it reads the module's
#    version list (@v/list) to check for deprecation and this proxy answers 403 for that list.
#  - QuestDB: the org.questdb:questdb jar from Maven Central (via ~/.m2); it carries its native libraries and
#    runs on Java 17.
# Not installable here (recorded in docs/benchmarks.md): TSBS (github.com/timescale/tsbs has no tagged versions
# and the proxy answers 403 for its version list and for commit queries; github.com is not reachable), so the
# benchmark generates the TSBS cpu-only data itself (bench/peers/workload.ts).
set -euo pipefail

# Pinned versions. VictoriaMetrics v1.122.0 (July 2025), QuestDB 9.3.4.
VM_VERSION=v1.122.0
QUESTDB_VERSION=9.3.4

root="${TIDEMARK_PEERS_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/tidemark/peers}"
vm_home="$root/victoriametrics-$VM_VERSION"
vm_bin="$vm_home/bin/victoria-metrics"
qdb_home="$root/questdb-$QUESTDB_VERSION"
qdb_jar="$qdb_home/questdb-$QUESTDB_VERSION.jar"

die() {
  echo "peers.sh: $*" >&2
  exit 1
}

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is required ($2)"
}

# Serialize concurrent installs of the same peer (two benchmark runs, or a run and a manual install).
locked() {
  local home="$1"
  shift
  mkdir -p "$home"
  need flock "util-linux"
  (
    flock 9
    "$@"
  ) 9>"$home/.lock"
}

build_vm() {
  [[ -x "$vm_bin" && -f "$vm_home/.complete" ]] && return 0
  need go "Go builds VictoriaMetrics from the module proxy"
  echo "peers.sh: building VictoriaMetrics $VM_VERSION (go build, a few minutes the first time)" >&2
  local dir
  dir="$(go mod download -json "github.com/VictoriaMetrics/VictoriaMetrics@$VM_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -n "$dir" && -d "$dir" ]] || die "go mod download of VictoriaMetrics $VM_VERSION failed"
  # Inside the (read-only) module dir: -mod=mod resolves the dependencies from its go.sum through the proxy.
  (cd "$dir" && GOFLAGS=-mod=mod CGO_ENABLED=1 go build -trimpath -o "$vm_bin.tmp" ./app/victoria-metrics) ||
    die "go build of VictoriaMetrics $VM_VERSION failed"
  mv "$vm_bin.tmp" "$vm_bin"
  touch "$vm_home/.complete"
}

fetch_questdb() {
  [[ -f "$qdb_jar" && -f "$qdb_home/.complete" ]] && return 0
  need mvn "Maven fetches the QuestDB jar from Maven Central"
  need java "Java 17 runs QuestDB"
  echo "peers.sh: fetching org.questdb:questdb:$QUESTDB_VERSION from Maven Central" >&2
  mvn -B -q dependency:copy "-Dartifact=org.questdb:questdb:$QUESTDB_VERSION" "-DoutputDirectory=$qdb_home" >&2 ||
    die "mvn could not fetch org.questdb:questdb:$QUESTDB_VERSION (network? ~/.m2/settings.xml?)"
  [[ -f "$qdb_jar" ]] || die "$qdb_jar missing after mvn"
  touch "$qdb_home/.complete"
}

install_one() {
  case "$1" in
  victoriametrics) locked "$vm_home" build_vm ;;
  questdb) locked "$qdb_home" fetch_questdb ;;
  *) die "unknown peer $1 (victoriametrics, questdb)" ;;
  esac
}

cmd="${1:-install}"
shift || true
case "$cmd" in
install)
  if [[ $# -eq 0 ]]; then set -- victoriametrics questdb; fi
  for p in "$@"; do install_one "$p"; done
  ;;
path)
  case "${1:-}" in
  victoriametrics) install_one victoriametrics && echo "$vm_bin" ;;
  questdb) install_one questdb && echo "$qdb_jar" ;;
  java) command -v java ;;
  *) die "path: victoriametrics, questdb or java" ;;
  esac
  ;;
versions)
  echo "victoriametrics $VM_VERSION"
  echo "questdb $QUESTDB_VERSION"
  ;;
*) die "usage: scripts/peers.sh install [peer...] | path <peer> | versions" ;;
esac
