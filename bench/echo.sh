#!/usr/bin/env bash
# bench/echo.sh -- compare echo servers under the same load.
#
# For every scenario and every server (in this order: c-libuv, luv,
# luv-coroutines, nginx-lua, cqueues, copas, tasksock) the server is started
# pinned to one core, the load generator (build/bench/loadgen) runs pinned
# to another, and the server's CPU time (utime+stime from /proc/PID/stat)
# is sampled over the measured window. Each pair is run REPEAT times; the
# table shows medians. A server whose file or packages are missing, or that
# does not print READY within 5 s, is reported as skipped.
#
# Settings (environment):
#   DURATION=2     measured seconds per run
#   WARMUP=0.5     warm-up seconds per run (not counted)
#   REPEAT=3       runs per scenario/server (median is reported)
#   SCENARIOS="name:mode:size:conns ..."
#                  default: "64B/64c:echo:64:64 64B/1000c:echo:64:1000
#                            16KiB/64c:echo:16384:64 churn/16c:churn:64:16"
#   SERVERS="c-libuv luv luv-coroutines nginx-lua cqueues copas tasksock"
#                  (subset/order)
#   SERVER_CPU=0 LOADGEN_CPU=1   cores to pin to (PIN=0 disables pinning)
#   PORT_BASE=...  first port to try (default derived from the PID)
#   LUA=lua5.4     Lua interpreter
#   NGINX=nginx    nginx binary (nginx-lua; needs Debian's libnginx-mod-http-lua)
#   TASKSOCK_ALT=DIR  another built checkout of tasksock, run as the server
#                  "tasksock-alt" when SERVERS names it (A/B comparisons)
#   NOISE_MAX=15   a run during which other processes used more than this
#                  (% of one core) of the two pinned cores is discarded ...
#   MAX_RETRY=3    ... and re-run, at most this many extra runs per
#                  scenario/server and RETRY_BUDGET=16 extra runs in all
#                  (bounds the total time); when they are used up noisy
#                  runs are kept and flagged with * in the table
#
# Must be run from anywhere inside the repo; it works from the repo root.
set -u

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

DURATION=${DURATION:-2}
WARMUP=${WARMUP:-0.5}
REPEAT=${REPEAT:-3}
SCENARIOS=${SCENARIOS:-"64B/64c:echo:64:64 64B/1000c:echo:64:1000 16KiB/64c:echo:16384:64 churn/16c:churn:64:16"}
SERVERS=${SERVERS:-"c-libuv luv luv-coroutines nginx-lua cqueues copas tasksock"}
SERVER_CPU=${SERVER_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
PIN=${PIN:-1}
LUA=${LUA:-lua5.4}
HOST=127.0.0.1
PORT_BASE=${PORT_BASE:-$((20000 + ($$ % 100) * 100))}
READY_TIMEOUT=5
NGINX=${NGINX:-nginx}
# copas waits in socket.select: descriptors must stay below FD_SETSIZE (1024);
# 0-2, the listener and one per connection
COPAS_MAX_CONNS=1020
# http-lua needs an HTTP request before it hands over the raw socket:
# loadgen sends this once after every connect (-P, escapes decoded there)
NGINX_PREAMBLE='GET / HTTP/1.1\r\nHost: bench\r\n\r\n'
NOISE_MAX=${NOISE_MAX:-15}
MAX_RETRY=${MAX_RETRY:-3}
RETRY_BUDGET=${RETRY_BUDGET:-16}

LOADGEN=build/bench/loadgen
ECHO_UV=build/bench/echo_uv

TMPD=$(mktemp -d "${TMPDIR:-/tmp}/echo-bench.XXXXXX") || exit 1
SRV_PID=
LG_PID=

cleanup() {
	if [[ -n $LG_PID ]]; then kill -KILL "$LG_PID" 2>/dev/null; wait "$LG_PID" 2>/dev/null; fi
	if [[ -n $SRV_PID ]]; then kill -KILL "$SRV_PID" 2>/dev/null; wait "$SRV_PID" 2>/dev/null; fi
	LG_PID='' SRV_PID=''
	rm -rf "$TMPD"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() { echo "echo.sh: $*" >&2; exit 1; }

# --- tools ---------------------------------------------------------------
if ! make -s -f bench/bench.mk bench-tools; then
	die "could not build the bench tools (make -f bench/bench.mk bench-tools)"
fi
[[ -x $LOADGEN ]] || die "missing $LOADGEN"

PIN_S=() PIN_L=()
if [[ $PIN != 0 ]]; then
	if command -v taskset >/dev/null && (( $(nproc) >= 2 )); then
		PIN_S=(taskset -c "$SERVER_CPU")
		PIN_L=(taskset -c "$LOADGEN_CPU")
	else
		echo "echo.sh: taskset missing or fewer than 2 cores: not pinning" >&2
	fi
fi

CLK_TCK=$(getconf CLK_TCK)
if (( ${#PIN_S[@]} )); then
	BUSY_CPUS=("cpu$SERVER_CPU")
	[[ $LOADGEN_CPU != "$SERVER_CPU" ]] && BUSY_CPUS+=("cpu$LOADGEN_CPU")
else
	BUSY_CPUS=(cpu)
fi

# enough descriptors for the largest scenario (both processes inherit it)
max_conns=0
for sc in $SCENARIOS; do
	IFS=: read -r _ _ _ c <<<"$sc"
	(( c > max_conns )) && max_conns=$c
done
want_fd=$(( max_conns * 2 + 256 ))
(( want_fd < 4096 )) && want_fd=4096
if (( $(ulimit -n) < want_fd )); then
	ulimit -n "$want_fd" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
fi
if (( $(ulimit -n) < max_conns + 64 )); then
	echo "echo.sh: warning: ulimit -n is $(ulimit -n), scenarios need $((max_conns + 64))" >&2
fi

# --- helpers -------------------------------------------------------------
port_counter=0
next_port() {
	local p
	while :; do
		p=$(( PORT_BASE + port_counter ))
		port_counter=$(( port_counter + 1 ))
		(( p > 65000 )) && die "ran out of ports"
		# something accepts there already? take the next one
		if ! (exec 3<>"/dev/tcp/$HOST/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}

server_file() {
	case $1 in
	c-libuv)        echo "$ECHO_UV" ;;
	luv)            echo bench/echo_luv.lua ;;
	luv-coroutines) echo bench/echo_luv_co.lua ;;
	nginx-lua)      echo bench/echo_nginx.conf ;;
	cqueues)        echo bench/echo_cqueues.lua ;;
	copas)          echo bench/echo_copas.lua ;;
	tasksock)       echo bench/echo_tasksock.lua ;;
	tasksock-alt)   [[ -n ${TASKSOCK_ALT:-} ]] && echo "$TASKSOCK_ALT/bench/echo_tasksock.lua" ;;
	*)              return 1 ;;
	esac
}

# nginx_prepare PORT: writes $TMPD/nginx/nginx.conf from bench/echo_nginx.conf;
# returns 1 (with the reason in server.err) if nginx or its lua module is
# not installed
nginx_prepare() {
	local port=$1 dir=$TMPD/nginx moddir
	if ! command -v "$NGINX" >/dev/null; then
		echo "$NGINX not found (Debian: nginx-core libnginx-mod-http-lua)" >"$TMPD/server.err"
		return 1
	fi
	# the module directory nginx was built with (Debian: /usr/lib/nginx/modules)
	moddir=$("$NGINX" -V 2>&1 | tr ' ' '\n' | sed -n 's/^--modules-path=//p')
	[[ -n $moddir ]] || moddir=/usr/lib/nginx/modules
	if [[ ! -e $moddir/ngx_http_lua_module.so || ! -e $moddir/ndk_http_module.so ]]; then
		echo "no ngx_http_lua_module.so/ndk_http_module.so in $moddir" \
		     "(Debian: libnginx-mod-http-lua)" >"$TMPD/server.err"
		return 1
	fi
	rm -rf "$dir" && mkdir -p "$dir" || return 1
	sed -e "s|@PORT@|$port|g" -e "s|@PREFIX@|$dir|g" -e "s|@MODDIR@|$moddir|g" \
	    -e "s|@CONNS@|$(ulimit -n)|g" bench/echo_nginx.conf >"$dir/nginx.conf"
}

# start_server NAME PORT: sets SRV_PID; returns 0 once it printed READY
# (nginx-lua prints nothing: once its port accepts a connection), 1 if it
# exited first, 2 if READY did not come within READY_TIMEOUT, 3 if it is
# not installed (reason in server.err)
start_server() {
	local name=$1 port=$2 out=$TMPD/server.out err=$TMPD/server.err
	: >"$out"
	: >"$err"
	case $name in
	c-libuv)
		"${PIN_S[@]}" "$ECHO_UV" "$port" >"$out" 2>"$err" </dev/null & ;;
	nginx-lua)
		nginx_prepare "$port" || return 3
		# one process (master_process off), so $! is the server's PID
		"${PIN_S[@]}" "$NGINX" -p "$TMPD/nginx" -e stderr -c "$TMPD/nginx/nginx.conf" \
			>"$out" 2>"$err" </dev/null & ;;
	tasksock)
		LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
			"${PIN_S[@]}" "$LUA" bench/echo_tasksock.lua "$port" >"$out" 2>"$err" </dev/null & ;;
	tasksock-alt)
		LUA_PATH="$TASKSOCK_ALT/lua/?.lua;$TASKSOCK_ALT/lua/?/init.lua;;" \
			LUA_CPATH="$TASKSOCK_ALT/build/?.so;;" \
			"${PIN_S[@]}" "$LUA" "$TASKSOCK_ALT/bench/echo_tasksock.lua" "$port" >"$out" 2>"$err" </dev/null & ;;
	*)
		"${PIN_S[@]}" "$LUA" "$(server_file "$name")" "$port" >"$out" 2>"$err" </dev/null & ;;
	esac
	SRV_PID=$!
	local i
	for (( i = 0; i < READY_TIMEOUT * 20; i++ )); do
		if [[ $name == nginx-lua ]]; then
			if (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null; then
				return 0
			fi
		elif grep -q '^READY' "$out" 2>/dev/null; then
			return 0
		fi
		if ! kill -0 "$SRV_PID" 2>/dev/null; then
			stop_server
			return 1
		fi
		sleep 0.05
	done
	stop_server
	return 2
}

stop_server() {
	[[ -n $SRV_PID ]] || return 0
	kill -TERM "$SRV_PID" 2>/dev/null
	local i
	for (( i = 0; i < 60; i++ )); do
		kill -0 "$SRV_PID" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL "$SRV_PID" 2>/dev/null
	wait "$SRV_PID" 2>/dev/null
	SRV_PID=
}

# cpu_ticks PID: utime+stime in clock ticks (fields 14 and 15 of stat)
cpu_ticks() {
	local stat rest
	stat=$(<"/proc/$1/stat") || { echo 0; return; }
	rest=${stat##*) }          # the command name may contain spaces
	# shellcheck disable=SC2086  # split into fields
	set -- $rest               # $1 is field 3 (state)
	echo $(( ${12} + ${13} ))
}

now_ns() { date +%s%N; }

# busy clock ticks (user+nice+system+irq+softirq+steal) of the cores in use
cpu_busy() {
	local name u n sy irq sirq st rest c total=0
	while read -r name u n sy _ _ irq sirq st rest; do
		for c in "${BUSY_CPUS[@]}"; do
			[[ $name == "$c" ]] && total=$(( total + u + n + sy + irq + sirq + st ))
		done
	done </proc/stat
	echo "$total"
}

# median of the arguments (numbers); "-" if none
median() {
	(( $# )) || { echo "-"; return; }
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

field() { # field KEY LINE
	local kv
	for kv in $2; do
		[[ $kv == "$1="* ]] && { echo "${kv#*=}"; return; }
	done
}

# --- one measured run ----------------------------------------------------
# run_once SERVER MODE SIZE CONNS LABEL
# Sets R_RATE R_P99 R_CPURT R_CPUPCT R_ERR R_OTHER R_ACTIVE. Returns 0 on success,
# 1 if the loadgen failed, 2 if the server could not be started.
run_once() {
	local srv=$1 mode=$2 size=$3 conns=$4 label=$5
	local port rc t0 t1 c0 c1 b0 b1 lg_rc alive line lgcpu
	local lg_extra=()
	[[ $srv == nginx-lua ]] && lg_extra=(-P "$NGINX_PREAMBLE")
	port=$(next_port)
	start_server "$srv" "$port"; rc=$?
	if (( rc != 0 )); then
		if (( rc == 1 )); then
			echo "   $srv: exited before printing READY, skipped"
		elif (( rc == 3 )); then
			echo "   $srv: not installed, skipped"
		else
			echo "   $srv: no READY within ${READY_TIMEOUT}s, skipped"
		fi
		sed 's/^/      | /' "$TMPD/server.err" | head -5
		return 2
	fi
	# loadgen bounds itself (alarm), no external timeout needed
	"${PIN_L[@]}" "$LOADGEN" -h "$HOST" -p "$port" -m "$mode" \
		-c "$conns" -s "$size" -d "$DURATION" -w "$WARMUP" "${lg_extra[@]}" \
		>"$TMPD/lg.out" 2>"$TMPD/lg.err" &
	LG_PID=$!
	sleep "$WARMUP"
	t0=$(now_ns); c0=$(cpu_ticks "$SRV_PID"); b0=$(cpu_busy)
	wait "$LG_PID"; lg_rc=$?
	t1=$(now_ns); c1=$(cpu_ticks "$SRV_PID"); b1=$(cpu_busy)
	LG_PID=
	alive=1
	kill -0 "$SRV_PID" 2>/dev/null || alive=0
	stop_server
	line=$(grep '^RESULT' "$TMPD/lg.out")
	if [[ $lg_rc != 0 || -z $line ]]; then
		echo "   $srv $label: loadgen failed (rc=$lg_rc)"
		sed 's/^/      | /' "$TMPD/lg.err" | head -5
		return 1
	fi
	(( alive )) || echo "   $srv $label: server died during the run"
	R_RATE=$(field rps "$line"); [[ -n $R_RATE ]] || R_RATE=$(field cps "$line")
	R_P99=$(field p99_us "$line")
	R_ERR=$(field errors "$line")
	R_ACTIVE=$(field active "$line"); [[ -n $R_ACTIVE ]] || R_ACTIVE=$conns
	lgcpu=$(grep -o 'loadgen_cpu=[0-9.]*' "$TMPD/lg.out" | cut -d= -f2)
	# server CPU us per round trip, server CPU %, and the load that other
	# processes put on the measured cores (% of one core)
	read -r R_CPURT R_CPUPCT R_OTHER < <(awk -v c="$((c1 - c0))" -v b="$((b1 - b0))" \
		-v hz="$CLK_TCK" -v dt="$((t1 - t0))" -v r="$R_RATE" -v lg="${lgcpu:-0}" '
		BEGIN { cpu = c / hz; secs = dt / 1e9; n = r * secs
		        o = (secs > 0) ? 100 * (b / hz - cpu) / secs - lg : 0
		        if (o < 0) o = 0
		        printf "%.2f %.0f %.0f\n", (n > 0 ? cpu * 1e6 / n : 0),
		               (secs > 0 ? 100 * cpu / secs : 0), o }')
	printf '   %-15s %s: %s=%s p99_us=%s cpu_us/rt=%s cpu=%s%% loadgen_cpu=%s%% other=%s%% errors=%s' \
		"$srv" "$label" "$([[ $mode == churn ]] && echo cps || echo rps)" "$R_RATE" "$R_P99" \
		"$R_CPURT" "$R_CPUPCT" "${lgcpu:-?}" "$R_OTHER" "$R_ERR"
	(( R_ACTIVE < conns )) && printf ' active=%s/%s' "$R_ACTIVE" "$conns"
	return 0
}

# --- main loop -----------------------------------------------------------
# Repeats are interleaved (round 1 of every server, then round 2, ...) so
# that slow phases of a shared machine hit all servers alike.
declare -A RATE P99 CPURT CPUPCT ERRS STATUS NOISY
declare -A RATES P99S CPURTS CPUPCTS RETRIES PARTIAL
declare -A SKIPPED

echo "echo benchmark: duration=${DURATION}s warmup=${WARMUP}s repeat=$REPEAT" \
     "pinning: server=${PIN_S[*]:-none} loadgen=${PIN_L[*]:-none}" \
     "nproc=$(nproc) ulimit-n=$(ulimit -n) loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"

for sc in $SCENARIOS; do
	IFS=: read -r sname mode size conns <<<"$sc"
	echo "== $sname (mode=$mode size=$size conns=$conns)"
	active=()
	for srv in $SERVERS; do
		key="$sname|$srv"
		STATUS[$key]=skipped
		if ! file=$(server_file "$srv"); then
			echo "   $srv: unknown server, skipped"
		elif [[ ! -e $file ]]; then
			echo "   $srv: $file missing, skipped"
		elif [[ -n ${SKIPPED[$srv]:-} ]]; then
			echo "   $srv: skipped"
		elif [[ $srv == copas ]] && (( conns > COPAS_MAX_CONNS )); then
			echo "   $srv: $conns connections need descriptors past select()'s FD_SETSIZE (1024), skipped"
		else
			active+=("$srv")
			RATES[$key]='' P99S[$key]='' CPURTS[$key]='' CPUPCTS[$key]=''
			ERRS[$key]=0 NOISY[$key]=0 PARTIAL[$key]=0 RETRIES[$key]=$MAX_RETRY
		fi
	done
	for (( rep = 1; rep <= REPEAT; rep++ )); do
		for srv in "${active[@]}"; do
			[[ -n ${SKIPPED[$srv]:-} ]] && continue
			key="$sname|$srv"
			try=0
			while :; do
				try=$(( try + 1 ))
				label="run $rep"
				(( try > 1 )) && label="run $rep (retry $(( try - 1 )))"
				run_once "$srv" "$mode" "$size" "$conns" "$label"; rc=$?
				if (( rc == 2 )); then
					SKIPPED[$srv]=1
					break
				fi
				if (( rc == 0 )) && (( R_OTHER <= NOISE_MAX )); then
					echo
				elif (( RETRIES[$key] > 0 && RETRY_BUDGET > 0 )); then
					# failed, or other processes used the pinned cores: retry
					RETRIES[$key]=$(( RETRIES[$key] - 1 ))
					RETRY_BUDGET=$(( RETRY_BUDGET - 1 ))
					(( rc == 0 )) && echo "  -> noisy, discarded"
					sleep 1          # let the burst pass
					continue
				elif (( rc == 0 )); then
					echo "  -> noisy, kept (no retries left)"
					NOISY[$key]=$(( NOISY[$key] + 1 ))
				else
					break
				fi
				RATES[$key]+=" $R_RATE"; P99S[$key]+=" $R_P99"
				CPURTS[$key]+=" $R_CPURT"; CPUPCTS[$key]+=" $R_CPUPCT"
				ERRS[$key]=$(( ERRS[$key] + R_ERR ))
				(( R_ACTIVE < conns )) && PARTIAL[$key]=$(( PARTIAL[$key] + 1 ))
				break
			done
		done
	done
	for srv in "${active[@]}"; do
		key="$sname|$srv"
		[[ -n ${RATES[$key]} ]] || continue
		STATUS[$key]=ok
		# shellcheck disable=SC2086  # word splitting wanted
		RATE[$key]=$(median ${RATES[$key]})
		# shellcheck disable=SC2086
		P99[$key]=$(median ${P99S[$key]})
		# shellcheck disable=SC2086
		CPURT[$key]=$(median ${CPURTS[$key]})
		# shellcheck disable=SC2086
		CPUPCT[$key]=$(median ${CPUPCTS[$key]})
	done
done

# --- table ---------------------------------------------------------------
echo
if (( ${#PIN_S[@]} )); then
	pinning="server on core ${SERVER_CPU}, loadgen on core ${LOADGEN_CPU}"
else
	pinning="no CPU pinning"
fi
echo "Medians of $REPEAT run(s), ${DURATION}s each after ${WARMUP}s warm-up;" \
     "$pinning. Churn rows count connections/s (rps column)."
printf '| %-11s | %-15s | %9s | %9s | %9s | %7s | %10s | %7s | %6s |\n' \
	scenario server "rps" "p99 us" "CPU us/rt" "rps/C" "CPU/rt /C" "srv CPU" errors
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' -------------  ----------------- ----------:  ----------: \
	----------: --------: -----------: --------: -------:
any_noisy='' any_partial=''
for sc in $SCENARIOS; do
	IFS=: read -r sname _ _ _ <<<"$sc"
	base="$sname|c-libuv"
	for srv in $SERVERS; do
		key="$sname|$srv"
		if [[ ${STATUS[$key]:-skipped} != ok ]]; then
			printf '| %-11s | %-15s | %9s | %9s | %9s | %7s | %10s | %7s | %6s |\n' \
				"$sname" "$srv" skipped - - - - - -
			continue
		fi
		rr=- cr=-
		if [[ ${STATUS[$base]:-} == ok ]]; then
			rr=$(awk -v a="${RATE[$key]}" -v b="${RATE[$base]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
			cr=$(awk -v a="${CPURT[$key]}" -v b="${CPURT[$base]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
		fi
		label=$srv
		if (( ${NOISY[$key]:-0} > 0 )); then label="$label*"; any_noisy=1; fi
		if (( ${PARTIAL[$key]:-0} > 0 )); then label="$label~"; any_partial=1; fi
		printf '| %-11s | %-15s | %9.0f | %9.0f | %9.2f | %7s | %10s | %6.0f%% | %6s |\n' \
			"$sname" "$label" "${RATE[$key]}" "${P99[$key]}" "${CPURT[$key]}" "$rr" "$cr" \
			"${CPUPCT[$key]}" "${ERRS[$key]}"
	done
done
if [[ -n ${any_noisy:-} ]]; then
	echo "* includes runs during which other processes used more than ${NOISE_MAX}% of a pinned core"
fi
if [[ -n ${any_partial:-} ]]; then
	echo "~ includes runs in which some connections made no round trip in the measured window" \
	     "(not yet accepted by the server; see active= in the per-run lines)"
fi
