#!/bin/sh
# fuzz/fuzz1.sh BUILD SECONDS NAME:MAXLEN: fuzz one target for SECONDS
# (fuzz/fuzz.mk's fuzz-run and fuzz-ci run several at once through it).
# New inputs go to BUILD/corpus/NAME/, findings to BUILD/artifacts/NAME/.
# A crash, a leak, a slow input (10 s) or memory growth past 2 GB is a
# finding: the log's tail is printed and the exit status is 1. Otherwise
# one line: the target, libFuzzer's final coverage and its speed.
set -u
build=$1 seconds=$2 spec=$3
t=${spec%%:*} maxlen=${spec#*:}
log=$build/run-$t.log
dict= regr=
[ -f fuzz/$t.dict ] && dict=-dict=fuzz/$t.dict
[ -d fuzz/regressions/$t ] && regr=fuzz/regressions/$t
mkdir -p "$build/corpus/$t" "$build/artifacts/$t"
# The corpus under build/ comes first: libFuzzer writes what it finds
# there, never into the seeds in fuzz/corpus/.
if ! "$build/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
	-max_len="$maxlen" -print_final_stats=1 $dict \
	-artifact_prefix="$build/artifacts/$t/" \
	"$build/corpus/$t" "fuzz/corpus/$t" $regr >"$log" 2>&1; then
	tail -n 60 "$log"
	echo "fuzz: $t found something, log in $log" >&2
	exit 1
fi
printf '  %-6s %s (%s s): %s %s\n' FUZZ "$t" "$seconds" \
	"$(grep -aEo '#[0-9]+[[:space:]]+DONE +cov: [0-9]+ ft: [0-9]+ corp: [^ ]+' "$log")" \
	"$(grep -aE '^stat::average_exec_per_sec' "$log")"
