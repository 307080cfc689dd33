#!/usr/bin/env bash
# bench/run.sh: load benchmark of Portcullis against the floor for its
# architecture (a bare httputil.ReverseProxy) and against the upstream
# itself, all on loopback. See bench/README.md for what is measured and how
# to read the table.
#
#   bench/run.sh                      # defaults: about 4 minutes
#   DURATION=10 ROUNDS=5 bench/run.sh # longer, steadier
#
# Knobs (environment):
#   DURATION     seconds per wrk run (default 4)
#   ROUNDS       alternating rounds per path; medians are reported (default 3)
#   CONNECTIONS  wrk connections (default 64)
#   PATHS        request kinds to run, in order (default: cookie bearer unauth
#                browser public fwdauth download; also: browsercookie, the
#                signed-in request with the headers a real browser sends)
#   DOWNLOADS    100 MiB downloads per target per round (default 3)
#   SERVER_CPU   CPU for upstream and proxies (default 0)
#   LOAD_CPU     CPU for wrk and curl (default 1)
#   MAX_SECONDS  hard limit for the whole run, build included (default 600)
#   OUT          where the Markdown result goes (default bench/results/latest.md)
#   KEEP         1 keeps the temp dir (binaries, config, logs) for inspection
#   LOG_LEVEL    Portcullis log.level (default warn; info writes one access
#                line per request, to a file: the server's stderr)
#   LOG_FORMAT   Portcullis log.format (default text; json)
#   METRICS      1 (default) serves /metrics on a loopback metrics_listen, as
#                production does, so every request is counted; 0 runs
#                without (Portcullis then keeps no metrics at all)
#   PGO_PROFILE  write to this file a CPU profile of Portcullis taken during
#                every Portcullis wrk run, merged: the profile that
#                profile-guided optimisation builds from. Portcullis is then
#                built with -tags pgoprofile (pprof on a loopback port) and
#                its figures include the profiler's cost. Refresh the
#                committed one after changing the hot path with
#                  PGO_PROFILE=cmd/portcullis/default.pgo bench/run.sh
set -euo pipefail

DURATION=${DURATION:-4}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
PATHS=${PATHS:-cookie bearer unauth browser public fwdauth download}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
MAX_SECONDS=${MAX_SECONDS:-600}
DOWNLOADS=${DOWNLOADS:-3}
KEEP=${KEEP:-0}
LOG_LEVEL=${LOG_LEVEL:-warn}
LOG_FORMAT=${LOG_FORMAT:-text}
METRICS=${METRICS:-1}
PGO_PROFILE=${PGO_PROFILE:-}
DOWNLOAD_MIB=100

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# Made absolute now: the build below runs in $ROOT.
case "$PGO_PROFILE" in "" | /*) ;; *) PGO_PROFILE="$PWD/$PGO_PROFILE" ;; esac
OUT=${OUT:-$ROOT/bench/results/latest.md}

# The whole run is bounded: re-run this script under timeout(1), which on
# expiry signals the script's whole process group (servers and wrk too).
if [ -z "${BENCH_BOUNDED:-}" ]; then
  export BENCH_BOUNDED=1
  exec timeout --kill-after=15 "$MAX_SECONDS" bash "$0" "$@"
fi

log() { printf 'bench: %s\n' "$*" >&2; }

PIDS=()  # the servers, alive for the whole run
CHILD="" # the wrk, curl or go build running now
TMP=""
cleanup() {
  local p i
  if [ -n "$CHILD" ]; then kill -TERM "$CHILD" 2>/dev/null || true; fi
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for i in $(seq 1 50); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [ -n "$TMP" ]; then
    if [ "$KEEP" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
  fi
}
trap cleanup EXIT
trap 'log "interrupted (MAX_SECONDS=$MAX_SECONDS reached?)"; exit 124' TERM
trap 'log "interrupted"; exit 130' INT

# fail prints why, and the tail of every server log, then exits non-zero.
fail() {
  log "FAILED: $*"
  if [ -n "$TMP" ]; then
    local f
    for f in "$TMP"/*.log; do
      [ -s "$f" ] || continue
      log "--- last lines of $(basename "$f") ---"
      tail -n 15 "$f" >&2
    done
  fi
  exit 1
}

for n in "$DURATION" "$ROUNDS" "$CONNECTIONS" "$DOWNLOADS" "$SERVER_CPU" "$LOAD_CPU" "$MAX_SECONDS"; do
  [[ "$n" =~ ^[0-9]+$ ]] || fail "DURATION, ROUNDS, CONNECTIONS, DOWNLOADS, SERVER_CPU, LOAD_CPU and MAX_SECONDS must be whole numbers (got \"$n\")"
done
[ "$ROUNDS" -ge 1 ] && [ "$DURATION" -ge 1 ] && [ "$CONNECTIONS" -ge 1 ] && [ "$DOWNLOADS" -ge 1 ] ||
  fail "DURATION, ROUNDS, CONNECTIONS and DOWNLOADS must be at least 1"
case "$LOG_LEVEL/$LOG_FORMAT" in debug/* | info/* | warn/* | error/*) ;; *) fail "LOG_LEVEL must be debug, info, warn or error" ;; esac
case "$LOG_FORMAT" in text | json) ;; *) fail "LOG_FORMAT must be text or json" ;; esac
for p in $PATHS; do
  case "$p" in cookie | browsercookie | bearer | unauth | browser | public | fwdauth | download) ;;
  *) fail "PATHS: unknown \"$p\" (want cookie, browsercookie, bearer, unauth, browser, public, fwdauth, download)" ;;
  esac
done

# ---------------------------------------------------------------- tools
# wrk comes from Debian; install it if missing, like scripts/test-deps.sh.
if ! command -v wrk >/dev/null 2>&1; then
  log "installing wrk (Debian package)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || fail "wrk is missing and installing it needs root or sudo"
    sudo="sudo"
  fi
  export DEBIAN_FRONTEND=noninteractive
  timeout 180 $sudo apt-get update -qq || fail "apt-get update"
  timeout 180 $sudo apt-get install -y -qq --no-install-recommends wrk >/dev/null || fail "apt-get install wrk"
fi
for t in go curl taskset getconf wrk timeout; do
  command -v "$t" >/dev/null 2>&1 || fail "$t is not installed"
done
NCPU=$(getconf _NPROCESSORS_ONLN)
if [ "$NCPU" -lt 2 ]; then
  log "only $NCPU CPU: load generator and servers share CPU 0"
  SERVER_CPU=0 LOAD_CPU=0
fi
for c in "$SERVER_CPU" "$LOAD_CPU"; do
  [ "$c" -lt "$NCPU" ] || fail "CPU $c does not exist (this machine has $NCPU)"
done
TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- build
TMP=$(mktemp -d /tmp/portcullis-bench.XXXXXX)
log "building into $TMP"
# In the background with its pid in CHILD, so an interrupt stops it too
# (timeout passes the signal on to go and its compilers). Every binary is
# built the way the Dockerfile ships Portcullis: static (CGO_ENABLED=0, so
# no libc is mapped), -trimpath, -ldflags="-s -w"; go build's default
# -pgo=auto applies cmd/portcullis/default.pgo to Portcullis, as it does
# there. With PGO_PROFILE the tag adds cmd/portcullis/pgoprofile.go.
TAGS=()
if [ -n "$PGO_PROFILE" ]; then TAGS=(-tags pgoprofile); fi
(cd "$ROOT" && CGO_ENABLED=0 timeout 300 go build -trimpath -ldflags="-s -w" "${TAGS[@]}" -o "$TMP/" \
  ./cmd/portcullis ./bench/upstream ./bench/bareproxy ./bench/signin) \
  >"$TMP/build.log" 2>&1 &
CHILD=$!
wait "$CHILD" || { cat "$TMP/build.log" >&2; fail "go build"; }
CHILD=""

# ---------------------------------------------------------------- ports
USED_PORTS=""
# free_port VAR picks a port nothing listens on, below the ephemeral range
# so outgoing connections cannot be holding it.
free_port() {
  local p
  for _ in $(seq 1 500); do
    p=$((20000 + RANDOM % 12000))
    case " $USED_PORTS " in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      USED_PORTS+=" $p"
      printf -v "$1" '%s' "$p"
      return 0
    fi
  done
  fail "no free port found"
}
free_port UP_PORT
free_port BARE_PORT
free_port PC_PORT
free_port METRICS_PORT
free_port PPROF_PORT
UP="http://127.0.0.1:$UP_PORT"
BARE="http://127.0.0.1:$BARE_PORT"
PC="http://127.0.0.1:$PC_PORT"
METRICS_LISTEN=""
if [ "$METRICS" = 1 ]; then METRICS_LISTEN="127.0.0.1:$METRICS_PORT"; fi

# ---------------------------------------------------------------- config
SESSION_SECRET=$("$TMP/portcullis" secret) || fail "portcullis secret"
CLIENT_SECRET=$("$TMP/portcullis" secret) || fail "portcullis secret"
PASSWORD=$("$TMP/portcullis" secret) || fail "portcullis secret"
HASH=$(printf '%s' "$PASSWORD" | "$TMP/portcullis" hash-password) || fail "portcullis hash-password"
export PORTCULLIS_SESSION_SECRET=$SESSION_SECRET BENCH_CLIENT_SECRET=$CLIENT_SECRET

cat >"$TMP/portcullis.yaml" <<EOF
# Written by bench/run.sh.
server:
  listen: "127.0.0.1:$PC_PORT"
  public_url: "$PC"
  tls: { mode: off }
  log: { format: $LOG_FORMAT, level: $LOG_LEVEL }   # default warn: no access line per request
  metrics_listen: "$METRICS_LISTEN"   # default on, as in production: every request is counted
  timeouts: { shutdown: 5s }
session:
  secrets: ["\${PORTCULLIS_SESSION_SECRET}"]
login:
  issuer: builtin
issuer:
  users:
    - username: bench
      email: bench@example.com
      name: Bench User
      groups: [bench]
      password_hash: "$HASH"
  clients:
    - id: bench-client
      secret: "\${BENCH_CLIENT_SECRET}"
      grants: [client_credentials]
      audience: ["$PC"]
  # Long enough that no token or session is refreshed during the run.
  tokens: { access_ttl: 1h, id_ttl: 1h }
upstreams:
  - name: bench
    path: /
    url: "$UP"
    bearer: true
    public: ["/public/"]
EOF
chmod 600 "$TMP/portcullis.yaml"
"$TMP/portcullis" check -config "$TMP/portcullis.yaml" >"$TMP/check.log" 2>&1 ||
  { cat "$TMP/check.log" >&2; fail "portcullis check rejected the generated config"; }

# ---------------------------------------------------------------- start
# start NAME CMD… runs CMD pinned to SERVER_CPU; its pid is in PID_NAME.
start() {
  local name=$1
  shift
  taskset -c "$SERVER_CPU" "$@" >"$TMP/$name.log" 2>&1 &
  PIDS+=("$!")
  printf -v "PID_$name" '%s' "$!"
}
start upstream "$TMP/upstream" -listen "127.0.0.1:$UP_PORT" -download-mib "$DOWNLOAD_MIB"
start bareproxy "$TMP/bareproxy" -listen "127.0.0.1:$BARE_PORT" -upstream "$UP"
PPROF=""
if [ -n "$PGO_PROFILE" ]; then
  PPROF="127.0.0.1:$PPROF_PORT"
  export PORTCULLIS_PPROF_LISTEN=$PPROF
fi
start portcullis "$TMP/portcullis" serve -config "$TMP/portcullis.yaml"
# pgo_of BINARY: the profile the binary was built with, from its build info.
pgo_of() { go version -m "$1" 2>/dev/null | awk '$1 == "build" && $2 ~ /^-pgo=/ { sub(/^-pgo=/, "", $2); print $2 }'; }
PGO_USED=$(pgo_of "$TMP/portcullis")

# wait_ready NAME URL waits up to 30 s for URL to answer 200.
wait_ready() {
  local name=$1 url=$2 pidvar="PID_$1"
  for _ in $(seq 1 300); do
    kill -0 "${!pidvar}" 2>/dev/null || fail "$name exited during start-up"
    [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" || true)" = 200 ] && return 0
    sleep 0.1
  done
  fail "$name not ready after 30 s ($url)"
}
wait_ready upstream "$UP/"
wait_ready bareproxy "$BARE/"
wait_ready portcullis "$PC/oauth2/readyz"

# ---------------------------------------------------------------- credentials
log "signing in through the login form"
COOKIE=$(BENCH_PASSWORD=$PASSWORD timeout 60 "$TMP/signin" cookie -base "$PC" -user bench 2>"$TMP/signin.log") ||
  { cat "$TMP/signin.log" >&2; fail "sign-in did not yield a working session cookie"; }
[ -n "$COOKIE" ] || fail "sign-in printed no cookie"
TOKEN=$(timeout 60 "$TMP/signin" token -base "$PC" -client bench-client 2>"$TMP/signin.log") ||
  { cat "$TMP/signin.log" >&2; fail "client_credentials did not yield a working access token"; }
[ -n "$TOKEN" ] || fail "token request printed no token"
COOKIE_BYTES=${#COOKIE}

# ---------------------------------------------------------------- paths
# set_request KIND sets URLPATH and HDRS (curl/wrk -H arguments). Direct and
# bare get the same headers as Portcullis so header parsing costs the same.
set_request() {
  HDRS=(-H "Accept: application/json")
  case "$1" in
  cookie) URLPATH=/ HDRS+=(-H "Cookie: $COOKIE") ;;
  browsercookie)
    # What a desktop Chrome sends for a same-site navigation: 11 header
    # fields where wrk's own rows send 2 or 3. The proxies' cost per
    # request depends on the field count (header maps grow past 8
    # entries, every field is parsed, copied and written), so this row
    # shows the signed-in overhead under real browser traffic.
    URLPATH=/
    HDRS=(-H "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
      -H "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
      -H "Accept-Language: en-GB,en;q=0.9" -H "Accept-Encoding: gzip, deflate, br, zstd"
      -H "Cookie: $COOKIE" -H "Referer: $PC/" -H "Upgrade-Insecure-Requests: 1"
      -H "Sec-Fetch-Dest: document" -H "Sec-Fetch-Mode: navigate" -H "Sec-Fetch-Site: same-origin" -H "Sec-Fetch-User: ?1") ;;
  bearer) URLPATH=/ HDRS+=(-H "Authorization: Bearer $TOKEN") ;;
  unauth) URLPATH=/ ;;
  browser) URLPATH=/ HDRS=(-H "Accept: text/html") ;;
  public) URLPATH=/public/ping ;;
  fwdauth) URLPATH=/oauth2/auth HDRS+=(-H "Cookie: $COOKIE") ;;
  download) URLPATH=/download HDRS+=(-H "Cookie: $COOKIE") ;;
  esac
}
label() {
  case "$1" in
  cookie) echo "signed-in cookie \`/\`" ;;
  browsercookie) echo "signed-in browser \`/\` (11 header fields)" ;;
  bearer) echo "bearer JWT \`/\`" ;;
  unauth) echo "unauthenticated API \`/\`" ;;
  browser) echo "unauthenticated browser \`/\`" ;;
  public) echo "public \`/public/ping\`" ;;
  fwdauth) echo "forward-auth \`/oauth2/auth\`" ;;
  download) echo "download ${DOWNLOAD_MIB} MiB (MiB/s)" ;;
  esac
}
base_of() { case "$1" in direct) echo "$UP" ;; bare) echo "$BARE" ;; portcullis) echo "$PC" ;; esac; }
# measured_pid TARGET: the process whose CPU and memory we account. For
# direct that is the upstream itself; otherwise the proxy.
measured_pid() { case "$1" in direct) echo "$PID_upstream" ;; bare) echo "$PID_bareproxy" ;; portcullis) echo "$PID_portcullis" ;; esac; }

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; } # utime+stime (after "(comm)": comm has no spaces here)
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# rss_split PID: "anon file" KiB (VmRSS = RssAnon + RssFile + RssShmem).
rss_split() { awk '/^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 } END { print a + 0, f + 0 }' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# Preflight: one request per kind and target, to show what status each
# answers (a signed-in run answering 401 would be measuring the wrong thing).
declare -A STATUS
for p in $PATHS; do
  set_request "$p"
  for t in direct bare portcullis; do
    head=()
    if [ "$p" = download ]; then head=(-I); fi # not 100 MiB just for a status
    STATUS[$p,$t]=$(curl -s -o /dev/null -m 10 -w '%{http_code}' "${head[@]}" "${HDRS[@]}" "$(base_of "$t")$URLPATH" || echo ERR)
  done
done
for p in cookie browsercookie bearer public fwdauth; do
  case " $PATHS " in *" $p "*) ;; *) continue ;; esac
  s=${STATUS[$p,portcullis]}
  case "$s" in 2??) ;; *) fail "preflight: Portcullis answered $s for $(label "$p"), want 2xx" ;; esac
done

# ---------------------------------------------------------------- measure
RES="$TMP/results.tsv" # path target round value p50ms p99ms non2xx3xx sockerr cpu_us rss_kib anon_kib file_kib
: >"$RES"
HALF=$(awk -v d="$DURATION" 'BEGIN { print d / 2 }')

# run_wrk KIND TARGET ROUND
run_wrk() {
  local p=$1 t=$2 r=$3 pid c0 c1 rss split out
  set_request "$p"
  pid=$(measured_pid "$t")
  out="$TMP/wrk-$p-$t-$r.txt"
  c0=$(cpu_ticks "$pid")
  local prof=""
  if [ -n "$PPROF" ] && [ "$t" = portcullis ]; then
    # The profiler runs for the wrk run's duration, in the background.
    prof="$TMP/cpu-$p-$r.pprof"
    taskset -c "$LOAD_CPU" curl -s -o "$prof" -m $((DURATION + 30)) "http://$PPROF/debug/pprof/profile?seconds=$DURATION" &
    PROF_PID=$!
  fi
  taskset -c "$LOAD_CPU" timeout --foreground $((DURATION + 30)) \
    wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s --latency "${HDRS[@]}" "$(base_of "$t")$URLPATH" >"$out" 2>&1 &
  CHILD=$!
  sleep "$HALF"
  rss=$(rss_kib "$pid") # under load, mid-run
  split=$(rss_split "$pid")
  wait "$CHILD" || { cat "$out" >&2; fail "wrk against $t ($p) failed"; }
  CHILD=""
  if [ -n "$prof" ]; then
    wait "$PROF_PID" && [ -s "$prof" ] || fail "no CPU profile from Portcullis's pprof listener for $p"
  fi
  c1=$(cpu_ticks "$pid")
  awk -v p="$p" -v t="$t" -v r="$r" -v dt=$((c1 - c0)) -v tck="$TCK" -v rss="$rss" -v rsplit="$split" '
    function ms(s,   v) {
      v = s + 0
      if (s ~ /us$/) return v / 1000
      if (s ~ /ms$/) return v
      if (s ~ /m$/) return v * 60000
      if (s ~ /s$/) return v * 1000
      return v
    }
    / requests in / { n = $1 }
    /^Requests\/sec:/ { rps = $2 }
    /^ +50% / { p50 = ms($2) }
    /^ +99% / { p99 = ms($2) }
    /Non-2xx or 3xx responses:/ { bad = $NF }
    /Socket errors:/ { gsub(",", ""); se = $4 + $6 + $8 + $10 }
    END {
      if (n == "" || rps == "") { print "unparsable wrk output" > "/dev/stderr"; exit 1 }
      split(rsplit, sp, " ")
      printf "%s\t%s\t%s\t%.1f\t%.3f\t%.3f\t%d\t%d\t%.2f\t%d\t%d\t%d\n", p, t, r, rps, p50, p99, bad + 0, se + 0, dt * 1e6 / tck / (n > 0 ? n : 1), rss, sp[1], sp[2]
    }' "$out" >>"$RES" || { cat "$out" >&2; fail "could not read wrk output for $t ($p)"; }
}

# run_download TARGET ROUND: one 100 MiB download with curl.
run_download() {
  local t=$1 r=$2 pid c0 c1 res code speed size rss split
  set_request download
  pid=$(measured_pid "$t")
  c0=$(cpu_ticks "$pid")
  res=$(taskset -c "$LOAD_CPU" curl -s -o /dev/null -m 60 -w '%{http_code} %{speed_download} %{size_download}' \
    "${HDRS[@]}" "$(base_of "$t")$URLPATH") || fail "download through $t failed"
  c1=$(cpu_ticks "$pid")
  rss=$(rss_kib "$pid")
  split=$(rss_split "$pid")
  read -r code speed size <<<"$res"
  [ "$code" = 200 ] && [ "$size" = $((DOWNLOAD_MIB << 20)) ] || fail "download through $t: status $code, $size bytes"
  awk -v t="$t" -v r="$r" -v s="$speed" -v dt=$((c1 - c0)) -v tck="$TCK" -v rss="$rss" -v rsplit="$split" 'BEGIN {
    split(rsplit, sp, " ")
    printf "download\t%s\t%s\t%.1f\t0\t0\t0\t0\t%.2f\t%d\t%d\t%d\n", t, r, s / 1048576, dt * 1e6 / tck, rss, sp[1], sp[2] }' >>"$RES"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)
nwrk=0
for p in $PATHS; do [ "$p" = download ] || nwrk=$((nwrk + 1)); done
log "measuring: $nwrk wrk kinds x 3 targets x $ROUNDS rounds x ${DURATION}s (about $((nwrk * 3 * ROUNDS * DURATION / 60 + 1)) min)"
log "pinning: upstream + proxies on CPU $SERVER_CPU, wrk/curl on CPU $LOAD_CPU"
for r in $(seq 1 "$ROUNDS"); do
  # Alternate the order every round (A/B/C, C/B/A) so drift from other load
  # on the machine does not always favour the same target.
  if [ $((r % 2)) = 1 ]; then order="direct bare portcullis"; else order="portcullis bare direct"; fi
  for p in $PATHS; do
    for t in $order; do
      if [ "$p" = download ]; then
        # A download takes well under a second: take several per round.
        for _ in $(seq 1 "$DOWNLOADS"); do run_download "$t" "$r"; done
      else
        run_wrk "$p" "$t" "$r"
      fi
    done
  done
  log "round $r/$ROUNDS done ($(($(date +%s) - T0)) s)"
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
if [ -n "$PPROF" ]; then
  # One profile of every Portcullis run, merged: what PGO builds from.
  go tool pprof -proto "$TMP"/cpu-*.pprof >"$TMP/merged.pgo" 2>"$TMP/pprof.log" ||
    { cat "$TMP/pprof.log" >&2; fail "merging the CPU profiles"; }
  mv "$TMP/merged.pgo" "$PGO_PROFILE"
  log "CPU profile of Portcullis written to $PGO_PROFILE"
fi
HWM_BARE=$(hwm_kib "$PID_bareproxy")
HWM_PC=$(hwm_kib "$PID_portcullis")
AFF_UP=$(awk '/^Cpus_allowed_list:/ { print $2 }' "/proc/$PID_upstream/status")
AFF_BARE=$(awk '/^Cpus_allowed_list:/ { print $2 }' "/proc/$PID_bareproxy/status")
AFF_PC=$(awk '/^Cpus_allowed_list:/ { print $2 }' "/proc/$PID_portcullis/status")

# ---------------------------------------------------------------- report
# col KIND TARGET COLUMN → the median of that column over the rounds.
col() { awk -v p="$1" -v t="$2" -v c="$3" -F'\t' '$1 == p && $2 == t { print $c }' "$RES" | median; }
# median: the median of the numbers on stdin, one per line ("nan" for none).
median() {
  sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
# colsum / colmax KIND TARGET COLUMN over the rounds.
colsum() { awk -v p="$1" -v t="$2" -v c="$3" -F'\t' '$1 == p && $2 == t { s += $c } END { print s + 0 }' "$RES"; }
colmax() { awk -v p="$1" -v t="$2" -v c="$3" -F'\t' '$1 == p && $2 == t && $c > m { m = $c } END { print m + 0 }' "$RES"; }
# per_round KIND COLUMN [BASE]: Portcullis ÷ BASE (default bare) within
# each round, where the two runs are next to each other, one line per round
# in round order; several downloads per round are averaged first.
per_round() {
  awk -v p="$1" -v c="$2" -v base="${3:-bare}" -F'\t' '
    $1 == p && $2 == base { b[$3] += $c; nb[$3]++ }
    $1 == p && $2 == "portcullis" { q[$3] += $c; nq[$3]++ }
    END { for (r = 1; r in q; r++) if ((r in b) && b[r] > 0) printf "%.3f\n", (q[r] / nq[r]) / (b[r] / nb[r]) }' "$RES"
}
# paired KIND COLUMN [BASE]: the median of per_round. Every ratio the
# report gives is this: pairing each Portcullis run with the run next to it
# cancels the drift of the machine's speed over a run (on a shared VM a
# round's bare-proxy figure alone moves by 10-20 %), which the ratio of two
# medians taken over different rounds does not.
paired() { per_round "$@" | median; }
# spread KIND COLUMN: "low–high" of per_round's middle half (the whole
# range for four rounds or fewer), to show how far a verdict is from noise.
spread() {
  per_round "$1" "$2" | sort -g |
    awk '{ a[NR] = $1 } END { if (NR == 0) { print "–"; exit } k = int((NR - 1) / 4); printf "%.2f–%.2f", a[1 + k], a[NR - k] }'
}
# dotted: stdin's lines joined with " · ", for the every-run tables.
dotted() { paste -sd' ' | sed 's/ / · /g'; }
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "nan" || v == "") print "–"; else printf f, v }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0 || a == "nan" || b == "nan") print "nan"; else printf "%.3f", a / b }'; }

declare -A M
for p in $PATHS; do
  for t in direct bare portcullis; do
    M[$p,$t,val]=$(col "$p" "$t" 4)
    M[$p,$t,p50]=$(col "$p" "$t" 5)
    M[$p,$t,p99]=$(col "$p" "$t" 6)
    M[$p,$t,bad]=$(colsum "$p" "$t" 7)
    M[$p,$t,se]=$(colsum "$p" "$t" 8)
    M[$p,$t,cpu]=$(col "$p" "$t" 9)
    M[$p,$t,rss]=$(col "$p" "$t" 10)
  done
done
# The RSS target is judged on the largest mid-load sample of any Portcullis run.
RSS_MAX_PC=0
for p in $PATHS; do
  v=$(colmax "$p" portcullis 10)
  if [ "$v" -gt "$RSS_MAX_PC" ]; then RSS_MAX_PC=$v; fi
done
# rss_split_of TARGET: "anon file" MiB of that target's largest mid-run RSS sample.
rss_split_of() {
  awk -v t="$1" -F'\t' '$2 == t && $10 > m { m = $10; a = $11; f = $12 } END { printf "%.1f MiB anonymous + %.1f MiB file-backed", a / 1024, f / 1024 }' "$RES"
}

GIT=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(cd "$ROOT" && git status --porcelain -- cmd proxy auth upstream 2>/dev/null)" ]; then GIT="$GIT (+ uncommitted changes)"; fi

report() {
  echo "## Portcullis load benchmark"
  echo
  echo "- $(date -u '+%Y-%m-%d %H:%M UTC'), commit $GIT, $(go version | cut -d' ' -f3), Linux $(uname -r), $NCPU × $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "- wrk -t1 -c$CONNECTIONS -d${DURATION}s, $ROUNDS rounds alternating direct/bare/portcullis then portcullis/bare/direct; downloads: curl, $DOWNLOADS per target per round; every figure is the median over rounds (non-2xx: sum); every ratio is the median over rounds of Portcullis's figure over the other target's in the same round"
  echo "- **Pinning (taskset):** upstream, bare proxy and Portcullis on CPU $SERVER_CPU (Cpus_allowed_list: upstream $AFF_UP, bare $AFF_BARE, portcullis $AFF_PC, so Go runs them with GOMAXPROCS=1); wrk and curl on CPU $LOAD_CPU"
  echo "- Portcullis: built-in issuer, cookie session store, \`log: { level: $LOG_LEVEL, format: $LOG_FORMAT }\` (stderr to a file), metrics_listen \`${METRICS_LISTEN:-off}\`; session cookie header $COOKIE_BYTES bytes; bearer = client_credentials access token (RS256 JWT); every binary built static as the Dockerfile ships it (CGO_ENABLED=0, -trimpath, -s -w); Portcullis $(if [ -n "$PGO_USED" ]; then echo "built with profile-guided optimisation ($(basename "$PGO_USED"))"; else echo "built without a PGO profile"; fi)$(if [ -n "$PPROF" ]; then echo "; **profiling on** (PGO_PROFILE): its figures include the profiler's cost"; fi)"
  echo "- load average at start $LOAD_START, at end $LOAD_END. Nothing else on the machine is stopped for the run, so other work shows up as noise: trust the ratios within one run more than absolute numbers across runs"
  echo
  echo "| request | status d/b/p | direct req/s | bare req/s | portcullis req/s | P ÷ bare | P ÷ direct | p50 ms d / b / p | p99 ms d / b / p | p99 P ÷ bare | non-2xx/3xx P | CPU µs/req bare | CPU µs/req P | RSS MiB bare / P |"
  echo "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
  local p s d b c
  for p in $PATHS; do
    s="${STATUS[$p,direct]}/${STATUS[$p,bare]}/${STATUS[$p,portcullis]}"
    d=${M[$p,direct,val]} b=${M[$p,bare,val]} c=${M[$p,portcullis,val]}
    if [ "$p" = download ]; then
      printf '| %s | %s | %s | %s | %s | %s | %s | – | – | – | – | %s | %s | %s / %s |\n' \
        "$(label "$p")" "$s" "$(fmt "$d" %.0f)" "$(fmt "$b" %.0f)" "$(fmt "$c" %.0f)" \
        "$(fmt "$(paired "$p" 4)" %.2f)" "$(fmt "$(paired "$p" 4 direct)" %.2f)" \
        "$(fmt "${M[$p,bare,cpu]}" %.0f)" "$(fmt "${M[$p,portcullis,cpu]}" %.0f)" \
        "$(awk -v k="${M[$p,bare,rss]}" 'BEGIN { printf "%.1f", k / 1024 }')" \
        "$(awk -v k="${M[$p,portcullis,rss]}" 'BEGIN { printf "%.1f", k / 1024 }')"
    else
      printf '| %s | %s | %s | %s | %s | %s | %s | %s / %s / %s | %s / %s / %s | %s | %s | %s | %s | %s / %s |\n' \
        "$(label "$p")" "$s" "$(fmt "$d" %.0f)" "$(fmt "$b" %.0f)" "$(fmt "$c" %.0f)" \
        "$(fmt "$(paired "$p" 4)" %.2f)" "$(fmt "$(paired "$p" 4 direct)" %.2f)" \
        "$(fmt "${M[$p,direct,p50]}" %.2f)" "$(fmt "${M[$p,bare,p50]}" %.2f)" "$(fmt "${M[$p,portcullis,p50]}" %.2f)" \
        "$(fmt "${M[$p,direct,p99]}" %.2f)" "$(fmt "${M[$p,bare,p99]}" %.2f)" "$(fmt "${M[$p,portcullis,p99]}" %.2f)" \
        "$(fmt "$(paired "$p" 6)" %.2f)" \
        "${M[$p,portcullis,bad]}" \
        "$(fmt "${M[$p,bare,cpu]}" %.1f)" "$(fmt "${M[$p,portcullis,cpu]}" %.1f)" \
        "$(awk -v k="${M[$p,bare,rss]}" 'BEGIN { printf "%.1f", k / 1024 }')" \
        "$(awk -v k="${M[$p,portcullis,rss]}" 'BEGIN { printf "%.1f", k / 1024 }')"
    fi
  done
  echo
  local se=0 t
  for p in $PATHS; do for t in direct bare portcullis; do se=$((se + ${M[$p,$t,se]})); done; done
  echo "Status d/b/p is one preflight request's status per target (direct upstream / bare proxy / Portcullis); direct and bare do no auth, so they answer 200 where Portcullis answers 401, 302 or 202. Socket errors over all wrk runs: $se. CPU is the measured process's utime+stime per request (for the download: per 100 MiB); RSS is VmRSS sampled mid-run under load. Peak RSS (VmHWM) over the whole run: bare $(awk -v k="$HWM_BARE" 'BEGIN { printf "%.1f", k / 1024 }') MiB, Portcullis $(awk -v k="$HWM_PC" 'BEGIN { printf "%.1f", k / 1024 }') MiB. Largest mid-run sample split (RssAnon + RssFile): bare $(rss_split_of bare), Portcullis $(rss_split_of portcullis); file-backed pages are the binary's code and read-only data the process has touched (clean, shared with the page cache)."
  echo
  echo "### Targets (reported, not asserted)"
  echo
  target() { # name value op limit unit-note [ratio-of-medians [spread]]
    local verdict pv=""
    verdict=$(awk -v v="$2" -v op="$3" -v l="$4" 'BEGIN {
      if (v == "nan" || v == "") { print "not measured"; exit }
      ok = (op == ">=") ? (v >= l) : (v <= l)
      print ok ? "**met**" : "**not met**" }')
    if [ -n "${6:-}" ]; then pv="; ratio of the medians $(fmt "$6" %.2f)"; fi
    if [ -n "${7:-}" ]; then pv="$pv; middle half of the rounds $7"; fi
    echo "- $1: $(fmt "$2" %.2f)$5 (target $3 $4$5): $verdict$pv"
  }
  # ratio_target NAME KIND val|p99 OP LIMIT: a Portcullis ÷ bare target,
  # judged on the paired ratio, with the ratio of the medians and the spread.
  ratio_target() {
    local c=4
    if [ "$3" = p99 ]; then c=6; fi
    has "$2" || return 0
    target "$1" "$(paired "$2" $c)" "$4" "$5" "" "$(ratio "${M[$2,portcullis,$3]}" "${M[$2,bare,$3]}")" "$(spread "$2" $c)"
  }
  has() { case " $PATHS " in *" $1 "*) return 0 ;; esac; return 1; }
  ratio_target "signed-in req/s ÷ bare" cookie val ">=" 0.85
  ratio_target "bearer req/s ÷ bare" bearer val ">=" 0.80
  ratio_target "signed-in p99 ÷ bare p99 at $CONNECTIONS connections" cookie p99 "<=" 1.2
  ratio_target "bearer p99 ÷ bare p99 at $CONNECTIONS connections" bearer p99 "<=" 1.2
  ratio_target "download MiB/s ÷ bare" download val ">=" 1.0
  target "Portcullis RSS under load (largest mid-run sample)" "$(awk -v k="$RSS_MAX_PC" 'BEGIN { print k / 1024 }')" "<=" 25 " MiB"
  echo
  echo "Each verdict is on the median of the per-round ratios (the table's ratio columns): each Portcullis run is paired with the bare run next to it, so drift in the machine's speed over the run cancels out. The ratio of the two medians (each taken over all rounds, so possibly from different rounds) is given beside it; the two differing by more than a few hundredths means the machine's speed drifted during the run. The middle half of the per-round ratios (all of them with four rounds or fewer) shows how much single rounds disagree: a target inside that band is within this run's noise, and more ROUNDS are worth running before drawing a conclusion."
  echo
  echo "### Every run (req/s, download MiB/s), in round order"
  echo
  echo "| request | direct | bare | portcullis |"
  echo "|---|---|---|---|"
  for p in $PATHS; do
    printf '| %s |' "$(label "$p")"
    for t in direct bare portcullis; do
      printf ' %s |' "$(awk -v p="$p" -v t="$t" -F'\t' '$1 == p && $2 == t { printf "%s%.0f", (n++ ? " · " : ""), $4 }' "$RES")"
    done
    echo
  done
  echo
  echo "### Portcullis ÷ bare in each round (req/s or MiB/s; p99)"
  echo
  echo "| request | req/s | p99 |"
  echo "|---|---|---|"
  for p in $PATHS; do
    printf '| %s | %s | %s |\n' "$(label "$p")" "$(per_round "$p" 4 | dotted)" \
      "$(if [ "$p" = download ]; then echo –; else per_round "$p" 6 | dotted; fi)"
  done
}

report >"$TMP/report.md"
mkdir -p "$(dirname "$OUT")"
cp "$TMP/report.md" "$OUT"
cat "$TMP/report.md"
log "total $(($(date +%s) - T0)) s of measurement; written to $OUT"
