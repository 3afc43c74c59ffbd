# wrk_lib.sh -- sourced by bench/run_http.sh and bench/run_year.sh: one wrk run on a
# footfalld, summarised as one key=value line. Not a script of its own.
#
# wrk_once PID URL THREADS CONNS SECONDS (env FF_KIND, FF_SPACES, ... for wrk_random.lua)
#   prints: rps=… p50_us=… p75_us=… p90_us=… p99_us=… requests=… non2xx=… socket_errors=…
#           server_cpu_pct=… server_cpu_us_per_req=…
# wrk runs with --latency over keep-alive connections (wrk's default); the server's CPU
# time (utime + stime of /proc/PID/stat) over the run, divided by the requests, is the
# server-side cost per request, whatever the client does on the same cores.

# wrk prints 12.34us, 1.20ms, 2.00s: in microseconds
wrk_us() { awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
    m = (u == "ms") ? 1000 : (u == "s") ? 1e6 : (u == "m") ? 6e7 : 1; printf "%.1f", n * m }'; }

proc_cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# shellcheck source=bench/bench_lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"

wrk_once() {
    local pid=$1 url=$2 threads=$3 conns=$4 secs=$5 out c0 c1 hz
    out=$(mktemp /tmp/ffwrk.XXXXXX)
    hz=$(getconf CLK_TCK)
    c0=$(proc_cpu_ticks "$pid")
    wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -s "$(dirname "${BASH_SOURCE[0]}")/wrk_random.lua" \
        "$url" >"$out" 2>&1 || true
    c1=$(proc_cpu_ticks "$pid")
    local rps req non2xx serr p50 p75 p90 p99
    rps=$(sed -n 's/^Requests\/sec:[[:space:]]*//p' "$out")
    req=$(sed -n 's/^[[:space:]]*\([0-9]*\) requests in.*/\1/p' "$out")
    non2xx=$(sed -n 's/^[[:space:]]*Non-2xx or 3xx responses:[[:space:]]*//p' "$out")
    serr=$(sed -n 's/^[[:space:]]*Socket errors:[[:space:]]*//p' "$out" | tr -d ' ,' )
    p50=$(wrk_us "$(awk '$1 == "50%" { print $2 }' "$out")")
    p75=$(wrk_us "$(awk '$1 == "75%" { print $2 }' "$out")")
    p90=$(wrk_us "$(awk '$1 == "90%" { print $2 }' "$out")")
    p99=$(wrk_us "$(awk '$1 == "99%" { print $2 }' "$out")")
    [ -n "$rps" ] || { cat "$out" >&2; rm -f "$out"; return 1; }
    awk -v rps="$rps" -v req="$req" -v n="${non2xx:-0}" -v e="${serr:-none}" -v p50="$p50" \
        -v p75="$p75" -v p90="$p90" -v p99="$p99" -v c="$((c1 - c0))" -v hz="$hz" -v s="$secs" \
        'BEGIN { printf "rps=%s p50_us=%s p75_us=%s p90_us=%s p99_us=%s requests=%s non2xx=%s socket_errors=%s server_cpu_pct=%.1f server_cpu_us_per_req=%.2f\n",
                 rps, p50, p75, p90, p99, req, n, e, 100 * c / hz / s, (req > 0 ? 1e6 * c / hz / req : 0) }'
    rm -f "$out"
}
