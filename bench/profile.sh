#!/usr/bin/env bash
# bench/profile.sh -- the steadier figures behind the echo table.
#
#   bash bench/profile.sh instr echo [CONNS [SIZE]]   user-space instructions
#   bash bench/profile.sh instr churn [WORKERS]       per round trip / connection
#   bash bench/profile.sh split SERVER [CONNS [SIZE [MODE]]]
#                                                     user and kernel CPU us
#                                                     per round trip (MODE echo,
#                                                     the default) or per
#                                                     connection (MODE churn)
#
# instr runs tasksock's echo server under valgrind --tool=callgrind for
# PROFILE_SECONDS (default 6) of load from build/bench/loadgen and divides the
# instructions the server ran (user space only, start-up included, which is
# well under 1% here) by the round trips or connections loadgen completed.
# Unlike time, the count does not depend on what else the machine runs.
# Set LUA to an unstripped interpreter to read the profile by function
# with callgrind_annotate (the file is kept: see the last line).
#
# split runs SERVER (c-libuv or tasksock) pinned to SERVER_CPU, loadgen
# pinned to LOADGEN_CPU, and reads the server's utime and stime from
# /proc/PID/stat over PROFILE_SECONDS - 1.5 s in the middle of the run: where the
# CPU per round trip goes, ours or the kernel's.
#
# TASKSOCK_DIR=DIR measures another built checkout (default: this one).
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

LUA=${LUA:-lua5.4}
SECONDS_RUN=${PROFILE_SECONDS:-6}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
DIR=${TASKSOCK_DIR:-$PWD}
LOADGEN=$PWD/build/bench/loadgen
ECHO_UV=$PWD/build/bench/echo_uv

die() { echo "profile.sh: $*" >&2; exit 1; }
make -s -f bench/bench.mk bench-tools || die "could not build the bench tools"
[[ -f $DIR/build/tasksock/core.so ]] || die "$DIR is not built (make -C $DIR)"

TMPD=$(mktemp -d "${TMPDIR:-/tmp}/profile.XXXXXX") || exit 1
SRV=
trap '[[ -n $SRV ]] && kill -KILL "$SRV" 2>/dev/null; rm -rf "$TMPD"' EXIT

# a port nothing listens on (Debian's lua5.4 has LuaSocket, whatever LUA is)
freeport() {
	lua5.4 -e 'local s = require "socket"; local t = assert(s.bind("127.0.0.1", 0));
		local _, port = t:getsockname(); print(port); t:close()'
}

# start_server PORT CMD...: sets SRV, waits for READY
start_server() {
	local port=$1 i
	shift
	"$@" "$port" >"$TMPD/out" 2>"$TMPD/err" </dev/null &
	SRV=$!
	for (( i = 0; i < 200; i++ )); do
		grep -q '^READY' "$TMPD/out" 2>/dev/null && return 0
		kill -0 "$SRV" 2>/dev/null || break
		sleep 0.05
	done
	cat "$TMPD/err" >&2
	die "server did not start"
}

# the tasksock server's command (its module paths are exported below)
tasksock_cmd() { echo "$LUA" "$DIR/bench/echo_tasksock.lua"; }
export LUA_PATH="$DIR/lua/?.lua;$DIR/lua/?/init.lua;;" LUA_CPATH="$DIR/build/?.so;;"

case ${1:-} in
instr)
	what=${2:-echo}
	case $what in
	echo)  conns=${3:-64} size=${4:-64} mode=echo key=rps ;;
	churn) conns=${3:-16} size=64 mode=churn key=cps ;;
	*)     die "instr echo|churn" ;;
	esac
	command -v valgrind >/dev/null || die "valgrind is not installed"
	ulimit -n $(( conns * 2 + 256 )) 2>/dev/null
	port=$(freeport)
	out=$TMPD/callgrind.out
	# shellcheck disable=SC2046  # the command's words
	start_server "$port" valgrind --tool=callgrind --callgrind-out-file="$out" $(tasksock_cmd)
	rate=$("$LOADGEN" -h 127.0.0.1 -p "$port" -m "$mode" -c "$conns" -s "$size" \
		-d "$SECONDS_RUN" -w 0 | grep -o "$key=[0-9]*" | cut -d= -f2)
	kill -TERM "$SRV"; wait "$SRV" 2>/dev/null; SRV=
	total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
	[[ -n $rate && -n $total ]] || die "no figures (loadgen rate '$rate', total '$total')"
	awk -v t="$total" -v r="$rate" -v s="$SECONDS_RUN" -v w="$what" -v c="$conns" -v z="$size" 'BEGIN {
		n = r * s; printf "%s conns=%d size=%d: %d %s in %d s under callgrind, %.0f instructions per %s\n",
		w, c, z, n, (w == "echo" ? "round trips" : "connections"), s, t / n,
		(w == "echo" ? "round trip" : "connection") }'
	cp "$out" "${TMPDIR:-/tmp}/tasksock-callgrind.out"
	echo "profile: ${TMPDIR:-/tmp}/tasksock-callgrind.out (callgrind_annotate it)"
	;;
split)
	srv=${2:-tasksock} conns=${3:-64} size=${4:-64} mode=${5:-echo}
	case $mode in
	echo)  key=rps unit=rt ;;
	churn) key=cps unit=conn ;;
	*)     die "split: MODE is echo or churn" ;;
	esac
	ulimit -n $(( conns * 2 + 256 )) 2>/dev/null
	port=$(freeport)
	case $srv in
	c-libuv)  start_server "$port" taskset -c "$SERVER_CPU" "$ECHO_UV" ;;
	tasksock) # shellcheck disable=SC2046
	          start_server "$port" taskset -c "$SERVER_CPU" $(tasksock_cmd) ;;
	*)        die "split c-libuv|tasksock" ;;
	esac
	taskset -c "$LOADGEN_CPU" "$LOADGEN" -h 127.0.0.1 -p "$port" -m "$mode" -c "$conns" \
		-s "$size" -d "$SECONDS_RUN" -w 0 >"$TMPD/lg" &
	lg=$!
	sleep 1
	read -r u0 s0 < <(awk '{ print $14, $15 }' "/proc/$SRV/stat")
	t0=$(date +%s%N)
	sleep "$(awk -v s="$SECONDS_RUN" 'BEGIN { print s - 1.5 }')"
	read -r u1 s1 < <(awk '{ print $14, $15 }' "/proc/$SRV/stat")
	t1=$(date +%s%N)
	wait "$lg"
	kill -TERM "$SRV"; wait "$SRV" 2>/dev/null; SRV=
	rate=$(grep -o "$key=[0-9]*" "$TMPD/lg" | cut -d= -f2)
	awk -v u=$(( u1 - u0 )) -v s=$(( s1 - s0 )) -v r="$rate" -v dt=$(( t1 - t0 )) \
		-v hz="$(getconf CLK_TCK)" -v w="$srv" -v c="$conns" -v z="$size" -v m="$mode" \
		-v x="$unit" 'BEGIN {
		n = r * dt / 1e9
		printf "%s %s conns=%d size=%d: %d %s/s, user %.2f us/%s, kernel %.2f us/%s\n",
		w, m, c, z, r, x, u / hz * 1e6 / n, x, s / hz * 1e6 / n, x }'
	;;
*)
	sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
