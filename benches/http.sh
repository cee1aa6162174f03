#!/usr/bin/env bash
# HTTP benchmark (issue 4): wrk against a hyper upstream directly over TLS, through hoop
# (TLS on both legs, token identity, policy, JSON masking, recording) and through nginx as
# a TLS reverse proxy (without an access log, and with one as nginx ships: hoop records
# every request), for a small JSON response and a 64 KB one. Prints requests/s, p99
# latency and the ratios. Not a test: figures depend on the machine.
#
#   benches/http.sh [duration_seconds] [connections]
#   ROUNDS=3   runs of each, interleaved; the medians are compared
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
CONNS="${2:-32}"
THREADS="${THREADS:-2}"
ROUNDS="${ROUNDS:-3}"
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
cargo build --release -q -p hoop-http --example bench_env
tmp="$(mktemp -d)"
trap 'exec 3>&-; wait 2>/dev/null; rm -rf "$tmp"' EXIT
mkfifo "$tmp/in"
target/release/examples/bench_env <"$tmp/in" >"$tmp/env" 2>"$tmp/env.err" &
exec 3>"$tmp/in"
for _ in $(seq 1 200); do grep -q READY "$tmp/env" 2>/dev/null && break; sleep 0.1; done
grep -q READY "$tmp/env" || { cat "$tmp/env.err"; exit 1; }
get() { sed -n "s/^$1=//p" "$tmp/env"; }
TOKEN="$(get token)"

declare -A RPS P99 ALL
run() { # name url path: one wrk run, its req/s appended to ALL[name path]
  local out rps
  out="$(wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency \
         -H "Authorization: Bearer $TOKEN" "$2$3" 2>&1)"
  if grep -q "Non-2xx" <<<"$out"; then echo "$1$3: errors"; echo "$out"; fi
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  ALL["$1$3"]="${ALL[$1$3]:-} $rps"
  P99["$1$3"]="${P99[$1$3]:-} $(awk '$1=="99%" {print $2}' <<<"$out")"
  printf '%-10s %-6s %12s req/s   p99 %s\n' "$1" "$3" "$rps" "$(awk '$1=="99%" {print $2}' <<<"$out")"
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
# Rounds are interleaved (direct, hoop, nginx, nginx+log, then again) and the median is
# reported: single runs on a small shared machine vary by +-10%.
for round in $(seq 1 "$ROUNDS"); do
  [ "$ROUNDS" = 1 ] || echo "round $round of $ROUNDS"
  for path in /small /64k; do
    run direct "$(get direct)" "$path"
    run hoop "$(get hoop)" "$path"
    if [ -n "$(get nginx)" ]; then run nginx "$(get nginx)" "$path"; fi
    if [ -n "$(get nginx_log)" ]; then run nginx+log "$(get nginx_log)" "$path"; fi
  done
done
for k in "${!ALL[@]}"; do RPS["$k"]="$(median <<<"${ALL[$k]}")"; done
echo
echo "medians of $ROUNDS round(s), req/s:"
for path in /small /64k; do
  for name in direct hoop nginx nginx+log; do
    [ -n "${RPS[$name$path]:-}" ] && printf '%-10s %-6s %12s\n' "$name" "$path" "${RPS[$name$path]}"
  done
done
echo
for path in /small /64k; do
  d="${RPS[direct$path]}"; h="${RPS[hoop$path]}"; n="${RPS[nginx$path]:-}"
  l="${RPS[nginx+log$path]:-}"
  printf '%-6s hoop/direct %.2f' "$path" "$(echo "$h / $d" | bc -l)"
  if [ -n "$n" ]; then printf '   hoop/nginx %.2f' "$(echo "$h / $n" | bc -l)"; fi
  if [ -n "$l" ]; then printf '   hoop/nginx+log %.2f' "$(echo "$h / $l" | bc -l)"; fi
  if [ -n "$n" ]; then printf '   nginx/direct %.2f' "$(echo "$n / $d" | bc -l)"; fi
  echo
done
