#!/bin/sh
# Side-by-side figures for the sentry backend: startup of /bin/true, getpid cost, file read cost,
# against runsc (gVisor, ptrace platform, no network) and the container backend, same bundle.
# Usage: run.sh [HAKO_BINARY]   (root; needs gcc for the static probe, runsc optional)
set -eu
HAKO=${1:-$(dirname "$0")/../../../target/debug/hako}
HAKO=$(realpath "$HAKO")
# The sentry alone, release build, through the Backend contract (cargo build -p hako-sentry --release --example run_bundle).
RB=$(realpath "$(dirname "$0")/../../../target/release/examples/run_bundle" 2>/dev/null || true)
W=$(mktemp -d /tmp/hako-sentry-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
R=$W/bundle/rootfs
mkdir -p "$R/bin" "$R/etc" "$R/tmp" "$R/proc" "$R/dev" "$R/sys"
cp /bin/busybox "$R/bin/busybox"
for a in sh true cat echo; do ln -s busybox "$R/bin/$a"; done
echo bench-box > "$R/etc/hostname"
gcc -O2 -static -o "$R/bin/probe" "$(dirname "$0")/probe.c"
N=${N:-20000}
PLAT=
mk() { # backend args...
  b=$1; shift
  args=$(printf '"%s",' "$@"); args="[${args%,}]"
  cat > "$W/bundle/config.json" <<J
{"ociVersion":"1.0.2","process":{"terminal":false,"user":{"uid":0,"gid":0},"args":$args,
 "env":["PATH=/bin"],"cwd":"/"},"root":{"path":"rootfs"},"hostname":"bench","mounts":[{"destination":"/proc","type":"proc","source":"proc"}],
 "annotations":{"io.hako.backend":"$b"${PLAT:+,\"io.hako.sentry.platform\":\"$PLAT\"}},
 "linux":{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"network"},{"type":"ipc"},{"type":"uts"}]}}
J
}
ms() { s=$(date +%s%N); "$@" >/dev/null 2>&1 || true; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
startup() { # label cmd...
  label=$1; shift
  for i in 1 2 3 4 5 6 7; do ms "$@"; done | median | xargs printf "%-28s startup /bin/true  %5s ms\n" "$label"
}
cd "$W/bundle"
i=0
for b in sentry container; do
  mk $b /bin/true
  startup "hako ($b)" sh -c "i=\$\$; exec $HAKO --root $W/state run b$b\$RANDOM"
done
if [ -x "$RB" ]; then
  for PLAT in hybrid ptrace; do mk sentry /bin/true; startup "sentry release ($PLAT)" "$RB" .; done; PLAT=
fi
if command -v runsc >/dev/null; then
  startup "runsc --platform=ptrace" runsc --root "$W/runsc" --platform=ptrace --network=none run r$$
fi
# Per-call costs: 5 interleaved rounds of every runner, median reported.
ROUNDS=${ROUNDS:-5}
one() { # label kind args...  -> prints ns/call
  label=$1; kind=$2; shift 2
  case $kind in
    hako-sentry) mk sentry /bin/probe "$@"; $HAKO --root "$W/state" run s$$ 2>&1 | tail -1 ;;
    hako-container) mk container /bin/probe "$@"; $HAKO --root "$W/state" run c$$ 2>&1 | tail -1 ;;
    rel-hybrid) PLAT=hybrid; mk sentry /bin/probe "$@"; PLAT=; "$RB" . 2>&1 | tail -1 ;;
    rel-ptrace) PLAT=ptrace; mk sentry /bin/probe "$@"; PLAT=; "$RB" . 2>&1 | tail -1 ;;
    runsc) mk sentry /bin/probe "$@"; runsc --root "$W/runsc" --platform=ptrace --network=none run r$$ 2>&1 | tail -1 ;;
  esac | awk '{print $2}'
}
kinds="hako-sentry hako-container"
[ -x "$RB" ] && kinds="$kinds rel-hybrid rel-ptrace"
command -v runsc >/dev/null && kinds="$kinds runsc"
for t in "getpid $N" "read $N /etc/hostname"; do
  set -- $t
  rm -f "$W"/res.*
  for r in $(seq "$ROUNDS"); do
    for k in $kinds; do one "$k" "$k" "$@" >> "$W/res.$k"; done
  done
  for k in $kinds; do
    printf "%-28s %-7s %8s ns/call (median of %s)\n" "$k" "$1" "$(median < "$W/res.$k")" "$ROUNDS"
  done
done
