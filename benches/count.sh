#!/usr/bin/env bash
# Counted, not timed: system calls and user-space instructions per request of one server build, the figures
# docs/performance.md quotes where seconds are too noisy to decide (the machines are shared). Linux only.
#
#     benches/count.sh [SERVER] [STRESS] [MODE]
#         SERVER  a socklab-server binary  (default: target/release/socklab-server)
#         STRESS  the socklab-stress that agrees with it (default: target/release/socklab-stress)
#         MODE    its --mode (default: reactor)
#
# For each load (upper at pipeline 1 and 16, http at depth 16, one connection):
# - system calls with `perf stat -e 'syscalls:sys_enter_*' -p PID` over 50,000 (or 160,000) requests, each
#   call's count divided by the requests (needs linux-perf and tracepoints: run as root);
# - instructions with `valgrind --tool=callgrind` over 160 and over 20,160 requests: the difference divided
#   by 20,000, so start-up and shutdown cancel out. After SIGTERM one connection is opened to the server in
#   both runs: valgrind delivers a signal to a thread that only calls io_uring_enter late, at its next call it
#   thinks may block (--mode uring), and the same extra connection in both runs cancels out too.
# Both are repeatable for the same binary and input, whatever else the machine is doing.
set -u
cd "$(dirname "$0")/.."
SERVER=${1:-target/release/socklab-server}
STRESS=${2:-target/release/socklab-stress}
MODE=${3:-reactor}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

start_server() { # SERVICE [WRAPPER...]: sets PID and PORT
    local service=$1; shift
    # At -v: under valgrind a uring server's SIGTERM waits for a system call other than io_uring_enter, and
    # the debug line the extra connection below logs is that call. The same level for every mode, so their
    # figures compare; but -v turns on per-read work a server at the default level skips (the held-line
    # note, `transfer::held_before`): the reactor's upper at pipeline 1 counted 1,604 at -v, 1,490 without.
    "$@" "$SERVER" --port 0 --mode "$MODE" --service "$service" -v >"$work/line" 2>"$work/err" &
    PID=$!
    for _ in $(seq 1 400); do grep -q listening "$work/line" 2>/dev/null && break; sleep 0.05; done
    PORT=$(sed -n 's/.*tcp:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$work/line" | head -1)
}
stop_server() {
    kill -TERM "$PID"; sleep 0.5
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null
    wait "$PID" 2>/dev/null
}
load() { # SERVICE N [ARGS...]
    local service=$1 n=$2; shift 2
    "$STRESS" --addr "127.0.0.1:$PORT" --expect "$service" -c 1 --requests "$n" --timeout 30 -q "$@" >/dev/null 2>&1
}
syscalls() { # SERVICE N [ARGS...]
    local service=$1 n=$2; shift 2
    start_server "$service"
    load "$service" 200 "$@"
    perf stat -e 'syscalls:sys_enter_*' -p "$PID" -o "$work/perf" 2>/dev/null &
    local perf=$!
    sleep 0.5
    load "$service" "$n" "$@"
    kill -INT "$perf"; wait "$perf" 2>/dev/null
    stop_server
    awk -v n="$n" '/syscalls:sys_enter_/ { c=$1; gsub(",","",c); if (c+0>0) { sub("syscalls:sys_enter_","",$2); printf "%s %.3f, ", $2, c/n; t+=c } } END { printf "in all %.3f\n", t/n }' "$work/perf"
}
instructions() { # SERVICE [ARGS...]
    local service=$1; shift
    local totals=()
    for n in 160 20160; do
        start_server "$service" valgrind --tool=callgrind --callgrind-out-file="$work/cg.$n"
        sleep 1
        load "$service" "$n" "$@"
        stop_server
        totals+=("$(callgrind_annotate "$work/cg.$n" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')")
    done
    echo "$(( (totals[1] - totals[0]) / 20000 ))"
}

echo "$SERVER --mode $MODE"
echo "system calls per request:"
echo "  upper, pipeline 1:   $(syscalls upper 50000)"
echo "  upper, pipeline 16:  $(syscalls upper 160000 --pipeline 16)"
echo "  http, depth 16:      $(syscalls http 160000 --pipeline 16)"
echo "user-space instructions per request:"
echo "  upper, pipeline 1:   $(instructions upper)"
echo "  upper, pipeline 16:  $(instructions upper --pipeline 16)"
echo "  http, depth 16:      $(instructions http --pipeline 16)"
