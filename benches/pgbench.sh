#!/usr/bin/env bash
# End-to-end PostgreSQL benchmark of hoop: pgbench against
#   (a) PostgreSQL 15 directly over TLS (sslmode=verify-full),
#   (b) hoop with TLS on both legs, rule policy and masking rules configured, none matching,
#   (c) pgbouncer (Debian) with TLS on both legs, transaction pooling,
#   (d) a 100-row SELECT script, directly and through hoop with masking rules that match.
#
# Usage: benches/pgbench.sh            (as root; installs pgbouncer with apt if missing)
#   DURATION=6   seconds per pgbench run
#   ROUNDS=3     every run is repeated this many times, interleaved (direct, hoop, pgbouncer,
#                ... then again), and the median TPS is reported: single runs on a small
#                shared machine vary by +-10%
#   SCALE=10     pgbench -i scale factor
#   CLIENTS="1 10"  client counts (threads: 1 for one client, 2 otherwise)
#   MODES="simple extended"
#   STOP_ON_ERROR=1  stop at the first failing run (default: mark it in the table, go on)
#   GW_THREADS=N worker threads of the hoop gateways (default 1: one event loop on a
#                current-thread runtime, as pgbouncer runs one; 0: one worker per CPU)
#   NO_DIAG=1    skip the diagnostic runs (hoop without session recording; a transparent
#                TCP relay that does not terminate TLS: the floor of any proxy here)
#   HOLD=1       set everything up, write the connection strings to /tmp/hoop-pgbench.env
#                and wait (for profiling by hand); Ctrl-C tears it all down
set -euo pipefail

DURATION=${DURATION:-6}
ROUNDS=${ROUNDS:-3}
GW_THREADS=${GW_THREADS:-1}
SCALE=${SCALE:-10}
CLIENTS=${CLIENTS:-"1 10"}
MODES=${MODES:-"simple extended"}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PGBIN=/usr/lib/postgresql/15/bin
[ -x "$PGBIN/initdb" ] || PGBIN=$(dirname "$(command -v initdb)")

log() { printf '[pgbench.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# ---------------------------------------------------------------- cleanup
WORK=""
PIDS=()
PG_STARTED=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    local bpid
    if [ -n "$WORK" ] && bpid=$(cat "$WORK/pgbouncer.pid" 2>/dev/null); then
        kill "$bpid" 2>/dev/null || true
    fi
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    if [ "$PG_STARTED" = 1 ]; then
        as_postgres "$PGBIN/pg_ctl" -D "$WORK/pgdata" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "$rc" != 0 ] && [ -z "${KEEP_LOGS:-}" ]; then
            for f in "$WORK"/*.log; do
                [ -f "$f" ] && { log "--- tail of $f"; tail -n 20 "$f" >&2; }
            done
        fi
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for_line() { # file pattern seconds pid
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        kill -0 "$4" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- prerequisites
command -v pgbench >/dev/null || die "pgbench not found (apt-get install -y postgresql-client)"
command -v openssl >/dev/null || die "openssl not found"
if ! command -v pgbouncer >/dev/null && [ ! -x /usr/sbin/pgbouncer ]; then
    log "installing pgbouncer (apt)"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >/dev/null; then
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgbouncer >/dev/null
    fi
    # The Debian package may start its own instance on 6432: we use other ports.
fi
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)

log "building the gateway (release)"
(cd "$REPO" && cargo build --release -q -p hoop-benches --bin pg_gateway --bin tcp_relay)
GATEWAY="$REPO/target/release/pg_gateway"
RELAY_BIN="$REPO/target/release/tcp_relay"
[ -x "$GATEWAY" ] || die "no $GATEWAY"

WORK=$(mktemp -d /tmp/hoop-pgbench.XXXXXX)
chmod 755 "$WORK"

# ---------------------------------------------------------------- certificates
log "certificates (CA, postgres, gateway, pgbouncer) in $WORK"
cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=hoop-bench-ca" -keyout ca.key -out ca.crt \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
issue() { # name
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=localhost" -keyout "$1.key" -out "$1.csr" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -out "$1.crt" -extfile <(printf '%s\n' \
            "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature" \
            "extendedKeyUsage=serverAuth" \
            "subjectAltName=DNS:localhost,IP:127.0.0.1") 2>/dev/null
    chmod 600 "$1.key"
}
issue pg
issue gw
issue bouncer

# ---------------------------------------------------------------- PostgreSQL 15
PG_PORT=$(free_port)
SUPER_PW="bench-super-$RANDOM$RANDOM"
APP_PW="bench-app-$RANDOM$RANDOM"
printf '%s' "$SUPER_PW" >pw
[ "$(id -u)" = 0 ] && chown -R postgres:postgres "$WORK"
log "initdb + start PostgreSQL 15 on 127.0.0.1:$PG_PORT (TLS, SCRAM)"
as_postgres env LC_ALL=C.UTF-8 "$PGBIN/initdb" -D "$WORK/pgdata" -U postgres \
    --auth=scram-sha-256 --no-sync --pwfile="$WORK/pw" >"$WORK/initdb.log" 2>&1
cat >>"$WORK/pgdata/postgresql.conf" <<EOF
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
ssl = on
ssl_cert_file = '$WORK/pg.crt'
ssl_key_file = '$WORK/pg.key'
password_encryption = 'scram-sha-256'
max_connections = 100
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
cat >"$WORK/pgdata/pg_hba.conf" <<EOF
local all all scram-sha-256
hostssl all all 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 reject
EOF
[ "$(id -u)" = 0 ] && chown -R postgres:postgres "$WORK"
as_postgres "$PGBIN/pg_ctl" -D "$WORK/pgdata" -l "$WORK/postgres.log" -w -t 30 start >/dev/null
PG_STARTED=1

conn() { # port user password
    echo "host=localhost hostaddr=127.0.0.1 port=$1 user=$2 password=$3 dbname=bench sslmode=verify-full sslrootcert=$WORK/ca.crt"
}
SUPER_CONN=$(conn "$PG_PORT" postgres "$SUPER_PW" | sed 's/dbname=bench/dbname=postgres/')
psql "$SUPER_CONN" -X -q -v ON_ERROR_STOP=1 \
    -c "CREATE ROLE bench LOGIN PASSWORD '$APP_PW'" \
    -c "CREATE DATABASE bench OWNER bench" >/dev/null
DIRECT=$(conn "$PG_PORT" bench "$APP_PW")
log "pgbench -i -s $SCALE (directly)"
pgbench -i -q -s "$SCALE" "$DIRECT" >"$WORK/pgbench-init.log" 2>&1 || die "pgbench -i failed: $(tail -5 "$WORK/pgbench-init.log")"
psql "$(echo "$SUPER_CONN" | sed 's/dbname=postgres/dbname=bench/')" -X -q -c "VACUUM ANALYZE" >/dev/null

# ---------------------------------------------------------------- hoop gateways
TOKEN="bench-token-$RANDOM$RANDOM$RANDOM"
printf 'bench:bench:%s\n' "$(printf '%s' "$TOKEN" | sha256sum | cut -d' ' -f1)" >tokens.txt
start_gateway() { # name masking [extra args] -> sets GW_PORT
    local port name=$1 masking=$2
    shift 2
    port=$(free_port)
    mkdir -p "$WORK/rec-$name"
    BENCH_PG_PASSWORD="$APP_PW" "$GATEWAY" --listen "127.0.0.1:$port" \
        --cert "$WORK/gw.crt" --key "$WORK/gw.key" \
        --target "127.0.0.1:$PG_PORT" --target-ca "$WORK/ca.crt" --target-name localhost \
        --database bench --user bench --password-env BENCH_PG_PASSWORD \
        --token-hash-file "$WORK/tokens.txt" --recordings "$WORK/rec-$name" \
        --masking "$masking" --threads "$GW_THREADS" "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
    PIDS+=($!)
    wait_for_line "$WORK/$name.out" '^ready' 20 "$!" || die "gateway $name did not start: $(cat "$WORK/$name.log")"
    GW_PORT=$port
}
start_gateway hoop nomatch
HOOP=$(conn "$GW_PORT" bench "$TOKEN")
start_gateway hoopmask match
HOOP_MASK=$(conn "$GW_PORT" bench "$TOKEN")
# Diagnostics only: the same gateway without session recording (what the recorder costs).
start_gateway hoopnorec nomatch --no-recording
HOOP_NOREC=$(conn "$GW_PORT" bench "$TOKEN")
log "hoop gateways ready (masking nomatch, masking match, diagnostic without recording)"
# Diagnostics only: a transparent TCP relay (TLS passes through end to end, no parsing):
# the cost of one more process and hop on this machine, the floor under any proxy.
RELAY_PORT=$(free_port)
"$RELAY_BIN" "127.0.0.1:$RELAY_PORT" "127.0.0.1:$PG_PORT" >"$WORK/relay.out" 2>"$WORK/relay.log" &
PIDS+=($!)
wait_for_line "$WORK/relay.out" '^ready' 20 "$!" || die "tcp_relay did not start"
RELAY=$(conn "$RELAY_PORT" bench "$APP_PW")

# ---------------------------------------------------------------- pgbouncer
BOUNCER_PORT=$(free_port)
printf '"bench" "%s"\n' "$APP_PW" >userlist.txt
cat >pgbouncer.ini <<EOF
[databases]
bench = host=127.0.0.1 port=$PG_PORT dbname=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
pidfile = $WORK/pgbouncer.pid
logfile = $WORK/pgbouncer.log
auth_type = scram-sha-256
auth_file = $WORK/userlist.txt
pool_mode = transaction
max_client_conn = 200
default_pool_size = 20
ignore_startup_parameters = extra_float_digits
client_tls_sslmode = require
client_tls_cert_file = $WORK/bouncer.crt
client_tls_key_file = $WORK/bouncer.key
server_tls_sslmode = verify-full
server_tls_ca_file = $WORK/ca.crt
EOF
[ "$(id -u)" = 0 ] && chown -R postgres:postgres "$WORK"
# pgbouncer refuses to run as root: `-u` drops to postgres in the same process, so the
# PID recorded here is pgbouncer's own (runuser would not pass a SIGTERM on).
if [ "$(id -u)" = 0 ]; then
    "$PGBOUNCER" -u postgres "$WORK/pgbouncer.ini" >"$WORK/pgbouncer.out" 2>&1 &
else
    "$PGBOUNCER" "$WORK/pgbouncer.ini" >"$WORK/pgbouncer.out" 2>&1 &
fi
PIDS+=($!)
BOUNCER=$(conn "$BOUNCER_PORT" bench "$APP_PW")
for _ in $(seq 50); do
    psql "$BOUNCER" -X -q -At -c "select 1" >/dev/null 2>&1 && break
    sleep 0.2
done
psql "$BOUNCER" -X -q -At -c "select 1" >/dev/null || die "pgbouncer does not answer: $(tail -5 "$WORK/pgbouncer.log")"
# Every leg is TLS: check what the server sees for connections through hoop and pgbouncer.
for c in "$HOOP" "$BOUNCER"; do
    ssl=$(psql "$c" -X -At -c "select ssl from pg_stat_ssl where pid = pg_backend_pid()")
    [ "$ssl" = t ] || die "upstream leg is not TLS ($ssl)"
done
log "pgbouncer $("$PGBOUNCER" --version | head -1 | awk '{print $2}') ready on $BOUNCER_PORT"

# ---------------------------------------------------------------- the 100-row script
cat >rows100.sql <<'EOF'
\set aid random(1, 100000 * :scale - 99)
SELECT aid, bid, abalance, filler FROM pgbench_accounts WHERE aid BETWEEN :aid AND :aid + 99;
EOF
# Check that the "match" rules do match and "nomatch" do not.
q="SELECT aid, abalance, filler FROM pgbench_accounts WHERE aid BETWEEN 1 AND 100"
n_mask=$(psql "$HOOP_MASK" -X -At -c "$q" | grep -c '\[REDACTED\]' || true)
n_plain=$(psql "$HOOP" -X -At -c "$q" | grep -c '\[REDACTED' || true)
[ "$n_mask" = 100 ] || die "masking 'match' masked $n_mask of 100 rows"
[ "$n_plain" = 0 ] || die "masking 'nomatch' masked $n_plain rows"

if [ -n "${HOLD:-}" ]; then
    {
        echo "DIRECT='$DIRECT'"
        echo "HOOP='$HOOP'"
        echo "HOOP_MASK='$HOOP_MASK'"
        echo "HOOP_NOREC='$HOOP_NOREC'"
        echo "BOUNCER='$BOUNCER'"
        echo "RELAY='$RELAY'"
        echo "ROWS100='$WORK/rows100.sql'"
        echo "SCALE=$SCALE"
    } >/tmp/hoop-pgbench.env
    log "holding: connection strings in /tmp/hoop-pgbench.env; Ctrl-C (or kill $$) ends"
    while :; do sleep 1; done
fi

# ---------------------------------------------------------------- runs
LOAD_BEFORE=$(cut -d" " -f1-3 /proc/loadavg)
RESULTS="$WORK/results.txt"
: >"$RESULTS"
run() { # label conn mode clients [pgbench args...]
    local label=$1 c=$2 mode=$3 clients=$4 jobs=1 out
    shift 4
    [ "$clients" -gt 1 ] && jobs=2
    log "run: $label -M $mode -c $clients -j $jobs -T $DURATION"
    local status=ok
    if ! out=$(pgbench -n -M "$mode" -c "$clients" -j "$jobs" -T "$DURATION" "$@" "$c" 2>&1); then
        status=aborted
        log "pgbench failed for $label: $(echo "$out" | grep -m 3 -i -e error -e abort)"
        [ -z "${STOP_ON_ERROR:-}" ] || exit 1
    fi
    local tps lat failed
    tps=$(echo "$out" | awk '/^tps = / {print $3; exit}')
    lat=$(echo "$out" | awk '/^latency average = / {print $4; exit}')
    failed=$(echo "$out" | awk '/number of failed transactions:/ {print $5; exit}')
    if [ -n "$failed" ] && [ "$failed" != 0 ]; then
        log "$label: $failed failed transactions"
        status=failed-tx
    fi
    echo "$label $mode $clients ${tps:-0} ${lat:-0} $status" >>"$RESULTS"
}

for clients in $CLIENTS; do
    for mode in $MODES; do
        for _ in $(seq "$ROUNDS"); do
            run direct "$DIRECT" "$mode" "$clients" -S
            run hoop "$HOOP" "$mode" "$clients" -S
            run pgbouncer "$BOUNCER" "$mode" "$clients" -S
            if [ -z "${NO_DIAG:-}" ]; then
                run "hoop-norec(diag)" "$HOOP_NOREC" "$mode" "$clients" -S
                run "tcp-relay(diag)" "$RELAY" "$mode" "$clients" -S
            fi
        done
    done
done
for mode in $MODES; do
    for _ in $(seq "$ROUNDS"); do
        run direct-100rows "$DIRECT" "$mode" 10 -f "$WORK/rows100.sql" -D "scale=$SCALE"
        run hoop-100rows-nomatch "$HOOP" "$mode" 10 -f "$WORK/rows100.sql" -D "scale=$SCALE"
        run hoop-100rows-match "$HOOP_MASK" "$mode" 10 -f "$WORK/rows100.sql" -D "scale=$SCALE"
        if [ -z "${NO_DIAG:-}" ]; then
            run "tcp-relay-100rows(diag)" "$RELAY" "$mode" 10 -f "$WORK/rows100.sql" -D "scale=$SCALE"
        fi
    done
done

# Anything the gateways logged (warn level and above) during the runs.
for g in hoop hoopmask hoopnorec; do
    if grep -v -e "--no-recording" "$WORK/$g.log" | grep -q .; then
        log "gateway $g logged:"
        grep -v -e "--no-recording" "$WORK/$g.log" | head -n 5 >&2
    fi
done
# Sanity: the recordings exist (the gateway really handled the sessions).
nrec=$(find "$WORK/rec-hoop" "$WORK/rec-hoopmask" -type f | wc -l)

# ---------------------------------------------------------------- report
echo
echo "hoop end-to-end PostgreSQL benchmark: pgbench -S (scale $SCALE), ${DURATION}s per run, $(nproc) cores, load before: $LOAD_BEFORE"
echo "all legs TLS (client sslmode=verify-full); hoop: rule policy + masking rules; pgbouncer $(
    "$PGBOUNCER" --version | head -1 | awk '{print $2}'
) pool_mode=transaction; $nrec hoop recordings"
echo "each figure: the median of $ROUNDS interleaved runs (note: the range of the runs); hoop: $GW_THREADS event loop(s) (--threads $GW_THREADS)"
# Medians per target, mode and client count, in the order first run.
python3 - "$RESULTS" >"$WORK/medians.txt" <<'PY'
import sys
rows, order = {}, []
for line in open(sys.argv[1]):
    label, mode, clients, tps, lat, status = line.split()
    key = (label, mode, clients)
    if key not in rows:
        rows[key] = []
        order.append(key)
    rows[key].append((float(tps), float(lat), status))
def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]
for key in order:
    runs = rows[key]
    tps = [r[0] for r in runs]
    bad = [r[2] for r in runs if r[2] != "ok"]
    note = "%d-%d" % (min(tps), max(tps)) if len(runs) > 1 else "ok"
    if bad:
        note += ",%s" % bad[0]
    print(*key, median(tps), median([r[1] for r in runs]), note)
PY
awk -v goal_hoop=0.80 -v goal_mask=0.60 '
{ label[NR]=$1; mode[NR]=$2; cl[NR]=$3; tps[NR]=$4; lat[NR]=$5; st[NR]=($6 == "ok") ? "" : $6
  key=$2 "/" $3
  if ($1 == "direct") direct[key]=$4
  if ($1 == "direct-100rows") direct100[key]=$4
  if ($1 == "pgbouncer") bouncer[key]=$4
  if ($1 == "hoop") hoop[key]=$4
  if ($1 == "hoop-100rows-match") hoopmask[key]=$4
  if ($1 == "tcp-relay(diag)") relay[key]=$4
  if ($1 == "tcp-relay-100rows(diag)") relay100[key]=$4 }
END {
  printf "%-24s %-9s %7s %11s %12s %9s  %s\n", "target", "mode", "clients", "TPS", "latency ms", "ratio", "note"
  printf "%-24s %-9s %7s %11s %12s %9s\n", "------------------------", "---------", "-------", "-----------", "------------", "---------"
  for (i = 1; i <= NR; i++) {
    key = mode[i] "/" cl[i]
    base = (label[i] ~ /100rows/) ? direct100[key] : direct[key]
    ratio = (base > 0) ? sprintf("%.2f", tps[i] / base) : "-"
    printf "%-24s %-9s %7d %11.1f %12.3f %9s  %s\n", label[i], mode[i], cl[i], tps[i], lat[i], ratio, st[i]
  }
  print ""
  print "goals:"
  for (k in hoop) {
    split(k, p, "/")
    if (p[2] + 0 < 10 || !(k in direct) || direct[k] == 0) continue
    r = hoop[k] / direct[k]
    printf "  hoop >= %.2f x direct at -c %s, -M %-8s: %.2f  %s\n", goal_hoop, p[2], p[1], r, (r >= goal_hoop) ? "PASS" : "FAIL"
    if (k in relay && relay[k] > 0)
      printf "    (floor: a transparent TCP relay, no TLS termination, reaches %.2f x direct)\n", relay[k] / direct[k]
    if (k in bouncer && bouncer[k] > 0)
      printf "  hoop ahead of pgbouncer at -c %s, -M %-8s: %.0f vs %.0f TPS (%.2f)  %s\n", p[2], p[1], hoop[k], bouncer[k], hoop[k] / bouncer[k], (hoop[k] > bouncer[k]) ? "PASS" : "FAIL"
  }
  for (k in hoopmask) {
    split(k, p, "/")
    if (!(k in direct100) || direct100[k] == 0) continue
    r = hoopmask[k] / direct100[k]
    printf "  masking-match (100 rows) >= %.2f x direct, -c %s -M %-8s: %.2f  %s\n", goal_mask, p[2], p[1], r, (r >= goal_mask) ? "PASS" : "FAIL"
    if (k in relay100 && relay100[k] > 0)
      printf "    (floor: the transparent TCP relay reaches %.2f x direct on this script)\n", relay100[k] / direct100[k]
  }
}' "$WORK/medians.txt"
