#!/bin/sh
# Instructions per event of replay (or backtest) in one build, as docs/design.md §7 gives
# them: cachegrind over the first 4,000 and all 20,000 lines of a simulated stream, the
# difference divided by 16,000 (start-up and imports cancel out; the machine's load does
# not change the count).
#   bench/instructions.sh compiled|interpreted fast|history [replay|backtest] [by-library]
# by-library: callgrind instead, and the count split by the shared library whose own code
# ran it (bench/by_library.py): the CPython runtime, the compiled modules, blake2, ...
# compiled and interpreted both run the install of `make compiled` (.compiled/site), the
# second with SIYU_BUILD=interpreted. Needs valgrind. About 2-4 minutes per call.
set -eu
build=$1 stream=$2 command=${3:-replay} split=${4:-}
root=$(cd "$(dirname "$0")/.." && pwd)
python=$root/.venv/bin/python
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
days=""
[ "$stream" = history ] && days="--days 365"
# shellcheck disable=SC2086
"$python" -m siyu_stream.cli simulate --events 20000 --seed 7 $days --out "$work/all.jsonl" 2>/dev/null
head -4000 "$work/all.jsonl" >"$work/head.jsonl"
cd "$work" # not the checkout: python -m would import its source first
export PYTHONPATH="$root/.compiled/site"
if [ "$build" = interpreted ]; then export SIYU_BUILD=interpreted; else unset SIYU_BUILD; fi
count() {
    profile=$1.callgrind
    if [ "$command" = backtest ]; then
        set -- backtest "$1" --rules "$root/rules.example.toml" --out "$work/bt"
    else
        set -- replay "$1" --out "$work/out.jsonl" --deadletter /dev/null
    fi
    if [ -n "$split" ]; then
        valgrind --tool=callgrind --callgrind-out-file="$profile" \
            "$python" -m siyu_stream.cli "$@" --now 2027-06-01T00:00:00Z 2>"$work/log" >/dev/null
        return
    fi
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
        "$python" -m siyu_stream.cli "$@" --now 2027-06-01T00:00:00Z 2>"$work/log" >/dev/null
    sed -n 's/.*I *refs: *//p' "$work/log" | tr -d ,
}
if [ -n "$split" ]; then
    count "$work/head.jsonl"
    count "$work/all.jsonl"
    echo "$build $stream $command: instructions per event by library"
    "$python" "$root/bench/by_library.py" "$work/head.jsonl.callgrind" "$work/all.jsonl.callgrind" 16000
    exit
fi
short=$(count "$work/head.jsonl")
long=$(count "$work/all.jsonl")
ran=$(sed -n 's/^replay: [0-9].*, \([a-z]*\) build$/\1/p' "$work/log")
echo "$build $stream $command: $(((long - short) / 16000)) instructions per event${ran:+ ($ran build ran)}"
