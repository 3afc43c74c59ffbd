# bench_lib.sh -- sourced by the bench scripts (bench/*.sh, bench/peers/compare.sh): what
# each of them needs the same way. Not a script of its own. Expects BUILD and WORK set.
#
# median              the median of the numbers on stdin (0 when there are none)
# field KEY           the value of KEY in the key=value line on stdin
# ff_start NAME ARGS  starts "$BUILD/footfalld" ARGS in the background, its stdout in
#                     $WORK/NAME.ready and stderr in $WORK/NAME.err, and waits (up to
#                     60 s, polling every 20 ms) for its ready line. Sets SERVER_PID and
#                     UDP, TCP, HTTP (the addresses the ready line gives; empty when off).
#                     Returns 1, with the server's stderr shown, when it exits or never
#                     gets ready.

median() { sort -g | awk '{v[NR] = $1} END {if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2); else print 0}'; }
field() { tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }

ff_start() {
    local name=$1 ready
    shift
    ready=$WORK/$name.ready
    "$BUILD/footfalld" "$@" >"$ready" 2>"$WORK/$name.err" &
    SERVER_PID=$!
    for _ in $(seq 3000); do
        grep -q ready "$ready" 2>/dev/null && break
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/$name.err" >&2; return 1; }
        sleep 0.02
    done
    grep -q ready "$ready" || { echo "footfalld did not get ready in 60 s" >&2; return 1; }
    UDP=$(grep -o 'udp=[^ ]*' "$ready" | cut -d= -f2)
    TCP=$(grep -o 'tcp=[^ ]*' "$ready" | cut -d= -f2)
    HTTP=$(grep -o 'http=[^ ]*' "$ready" | cut -d= -f2)
}
