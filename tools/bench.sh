#!/usr/bin/env bash
# bench.sh runs "devsim bench" against a fresh PicoMDM on one backend, the
# way docs/performance.md's figures were measured:
#
#	tools/bench.sh file|mysql|pgsql [devsim bench flags…]
#	tools/bench.sh pgsql -devices 10000 -key-type ecdsa
#
# It builds picomdm and devsim, makes a throw-away device CA, API key and
# mock-APNs certificate, empties the backend (a new directory, or the
# picomdm_bench database, dropped and created), starts picomdm on
# 127.0.0.1:9400 pushing to devsim's mock APNs on 127.0.0.1:9443, runs the
# bench (which reports the server's RSS at the end) and stops the server.
# WEBHOOK=1 adds a webhook receiver (see below); SERVER_FLAGS adds flags
# to picomdm's command line (e.g. SERVER_FLAGS='-repush-interval 0').
# After the bench's lines it prints the CPU seconds the database server,
# picomdm and the load tool spent during the run (cpu_database,
# cpu_server, cpu_load_tool) and the wall time (bench_wall).
# PROFILE=1 also takes a 20 s CPU profile of the server from the start of
# the run, and a heap profile at its end (cpu.prof and heap.prof in the
# work directory, which is printed).
# MariaDB and PostgreSQL are expected where tools/testenv.sh finds them.
set -euo pipefail
cd "$(dirname "$0")/.."

backend=${1:?usage: tools/bench.sh file|mysql|pgsql [devsim bench flags…]}
shift
work=$(mktemp -d "${TMPDIR:-/tmp}/picomdm-bench.XXXXXX")
echo "bench.sh: working in $work" >&2
go build -o "$work/bin/" ./cmd/picomdm ./cmd/devsim
bin=$work/bin
"$bin/devsim" ca -cert "$work/ca.pem" -key "$work/ca.key"
"$bin/devsim" apns-cert -cert "$work/apns.pem" -key "$work/apns.key"
key=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')

case $backend in
file)
	storage=(-storage file -storage-dsn "$work/db")
	;;
mysql)
	mysql -h 127.0.0.1 -u root -e 'DROP DATABASE IF EXISTS picomdm_bench; CREATE DATABASE picomdm_bench'
	storage=(-storage mysql -storage-dsn 'root@tcp(127.0.0.1:3306)/picomdm_bench')
	;;
pgsql)
	psql -q -h 127.0.0.1 -U postgres -c 'DROP DATABASE IF EXISTS picomdm_bench' -c 'CREATE DATABASE picomdm_bench'
	storage=(-storage pgsql -storage-dsn 'postgres://postgres@127.0.0.1:5432/picomdm_bench?sslmode=disable')
	;;
*)
	echo "bench.sh: unknown backend $backend (file, mysql or pgsql)" >&2
	exit 2
	;;
esac

# WEBHOOK=1 also runs a receiver that accepts every event (on
# 127.0.0.1:9402) and points -webhook-url at it, so that the run includes
# the durable outbox's write per device request.
webhook=()
if [ "${WEBHOOK:-}" = 1 ]; then
	python3 -c '
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", 9402), H).serve_forever()' &
	receiver=$!
	webhook=(-webhook-url http://127.0.0.1:9402/webhook)
fi
"$bin/picomdm" -listen 127.0.0.1:9400 -metrics-listen 127.0.0.1:9401 -pprof \
	-ca "$work/ca.pem" -api "$key" -migration \
	-push-url https://127.0.0.1:9443 -push-ca "$work/apns.pem" \
	"${storage[@]}" "${webhook[@]}" ${SERVER_FLAGS:-} >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server ${receiver:-} 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
	curl -fsS -o /dev/null http://127.0.0.1:9400/healthz 2>/dev/null && break
	sleep 0.1
done

if [ "${PROFILE:-}" = 1 ]; then
	(sleep 1; curl -fsS -o "$work/cpu.prof" 'http://127.0.0.1:9401/debug/pprof/profile?seconds=20') &
fi
# The CPU each party spent during the bench, in seconds (utime+stime from
# /proc, clock ticks): the database server's processes, picomdm, and the
# load tool (with its mock APNs), printed after the bench's own lines.
ticks() { # ticks PID…: summed utime+stime of the live ones
	local sum=0 pid f
	for pid in "$@"; do
		f=$(cut -d' ' -f14,15 "/proc/$pid/stat" 2>/dev/null) || continue
		sum=$((sum + ${f% *} + ${f#* }))
	done
	echo "$sum"
}
db_pids() {
	case $backend in
	mysql) pgrep -x mariadbd || pgrep -x mysqld || true ;;
	pgsql) pgrep -x postgres || true ;;
	esac
}
hz=$(getconf CLK_TCK)
db0=$(ticks $(db_pids))
srv0=$(ticks "$server")
start=$(date +%s.%N)
"$bin/devsim" bench -url http://127.0.0.1:9400/mdm -api-key "$key" \
	-ca-cert "$work/ca.pem" -ca-key "$work/ca.key" \
	-apns-listen 127.0.0.1:9443 -apns-cert "$work/apns.pem" -apns-key "$work/apns.key" \
	-server-pid "$server" "$@" &
bench=$!
# The load tool's CPU: what this shell's waited-for children used
# (cutime+cstime), before and after waiting for it.
children() { cut -d' ' -f16,17 /proc/$$/stat | awk '{print $1 + $2}'; }
tool0=$(children)
status=0
wait "$bench" || status=$?
tool=$(($(children) - tool0))
end=$(date +%s.%N)
if [ "${PROFILE:-}" = 1 ]; then
	# The server's heap after the run (after a GC), for what stays.
	curl -fsS -o "$work/heap.prof" 'http://127.0.0.1:9401/debug/pprof/heap?gc=1' || true
fi
db1=$(ticks $(db_pids))
srv1=$(ticks "$server")
awk -v hz="$hz" -v db=$((db1 - db0)) -v srv=$((srv1 - srv0)) -v tool="$tool" -v wall="$(echo "$end - $start" | bc)" 'BEGIN {
	printf "cpu_database %.1f s\ncpu_server %.1f s\ncpu_load_tool %.1f s\nbench_wall %.1f s\n", db/hz, srv/hz, tool/hz, wall
}'
exit $status
