#!/usr/bin/env bash
# Run the test suite with the clock set to INSTANT: scripts/test_at.sh "INSTANT" [pytest args]
#
#   scripts/test_at.sh "2027-01-01 00:04:00"                 # the whole suite
#   scripts/test_at.sh "2027-03-14 06:30:00" tests/dashboard  # part of it
#
# INSTANT is anything `date -d` reads, in UTC unless it names its own offset
# ("2027-02-28 18:25:00 UTC", "2027-03-01 00:10 +0545"). The clock starts there when the
# script starts and keeps ticking, so a run that starts at 23:58 crosses midnight.
#
# Debian's libfaketime is preloaded into every process of the run, and children inherit
# it: pytest, the PostgreSQL servers it starts (the embedded one, the replica, the
# PostgreSQL 15 one), PgBouncer, `streamlit run` and Chromium. A server already running
# at the real time would not be under the fake clock, so the run gets its own embedded
# server in a fresh data directory (DASHBOARD_PGDATA), stopped and removed at the end.
# CI keeps running at the real time (.ci/run does not use this script).
set -euo pipefail

if [ $# -lt 1 ] || [ -z "$1" ]; then
    echo "usage: $0 \"INSTANT\" [pytest args]   e.g. $0 \"2027-01-01 00:04:00\" -x" >&2
    exit 2
fi
instant=$1
shift
cd "$(dirname "$0")/.."

# The multi-threaded build: pytest, Streamlit, PostgreSQL's clients and Chromium run threads.
library=$(dpkg -L libfaketime 2>/dev/null | grep '/libfaketimeMT.so.1$' | head -n 1 || true)
if [ -z "$library" ]; then
    echo "libfaketime is missing: apt-get install -y faketime" >&2
    exit 2
fi
if ! command -v gcc >/dev/null 2>&1; then
    echo "gcc is missing (it builds scripts/faketime/waits.c): apt-get install -y gcc" >&2
    exit 2
fi
if ! target=$(TZ=UTC date -d "$instant" +%s); then
    echo "cannot read the instant $instant" >&2
    exit 2
fi

# Outside the fake clock: the project's environment, a folder for this run (its embedded
# server's data directory and the waits library), readable by the server's user.
uv sync --locked --quiet
work=$(mktemp -d "${TMPDIR:-/tmp}/dashboard-test-at.XXXXXX")
chmod 755 "$work"
export DASHBOARD_PGDATA=$work/pgdata
mkdir "$DASHBOARD_PGDATA"
stop_server() {
    # Under the real clock: the server is stopped, whatever the tests did.
    uv run --no-sync python -c 'from tooling import embedded; embedded.stop()' || true
    rm -rf "$work"
}
trap stop_server EXIT
gcc -O2 -shared -fPIC -o "$work/waits.so" scripts/faketime/waits.c -ldl

# An offset from the real clock, the same in every process (a start-at "@INSTANT" restarts
# in each new process: the server started a minute later would be a minute behind).
offset=$((target - $(date +%s)))
if [ "$offset" -ge 0 ]; then export FAKETIME="+$offset"; else export FAKETIME="$offset"; fi
# Only the wall clock moves: monotonic clocks measure durations and time out waits, and
# nothing reads a date from them. Shifting them too hangs Python: Debian 12's libfaketime
# (0.9.10) does not intercept sem_clockwait, so every timed lock or Event wait (threading,
# queues, subprocess and pool timeouts) would wait for a deadline weeks away.
export FAKETIME_DONT_FAKE_MONOTONIC=1
# 0.9.10 turns its "monotonic fix" on by itself on this glibc, and with the monotonic clock
# left real it then breaks every timed wait on a monotonic condition variable: Python's
# GIL hand-over (two busy threads ran 20 times slower, the suite about 5 times) and
# Chromium's timers (pages never finished loading). Off, those waits are passed through.
export FAKETIME_FORCE_MONOTONIC_FIX=0
echo "test_at: the clock of this run starts at $(TZ=UTC date -d "@$target" '+%Y-%m-%d %H:%M:%S UTC')" >&2
# waits.so first: relative waits go straight to the C library, not through libfaketime,
# which would let a signal handler read the real clock (PostgreSQL's statement and lock
# timeouts never fired) and breaks Python's time.sleep (scripts/faketime/waits.c says how).
LD_PRELOAD="$work/waits.so:$library${LD_PRELOAD:+:$LD_PRELOAD}" uv run --no-sync pytest "$@"
