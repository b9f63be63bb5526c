#!/bin/bash
# Run one libFuzzer target for a while (tests/fuzz/README.md).
# usage: ci/fuzz.sh TARGET SECONDS [libFuzzer options...]
#   TARGET: mime_signed mime_enveloped mime_prepare verify decrypt uri pin_source config gateway
# Builds build-fuzz/ (clang, ASan+UBSan, libFuzzer coverage) once, then fuzzes with one job
# (the CI machine is shared: nice, one process). New interesting inputs go to build-fuzz/corpus/
# TARGET (not into the source tree); a crash is written to build-fuzz/artifacts/TARGET/ and
# the script fails. Copy a fixed reproducer into tests/fuzz/corpus/TARGET/ so that the replay
# test (ctest -L fuzz) keeps it fixed.
set -euo pipefail
if [ $# -lt 2 ]; then
	echo "usage: $0 TARGET SECONDS [libFuzzer options...]" >&2
	exit 2
fi
target=$1
seconds=$2
shift 2
top=$(cd "$(dirname "$0")/.." && pwd)
build=${P11S_FUZZ_BUILD:-$top/build-fuzz}
if [ ! -x "$build/tests/fuzz/fuzz_$target" ] || [ -n "${P11S_FUZZ_REBUILD:-}" ]; then
	cmake -S "$top" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DP11S_SANITIZE=address,undefined -DCMAKE_C_FLAGS=-fsanitize=fuzzer-no-link \
		-DP11S_FUZZ=ON >/dev/null
	nice -n 10 cmake --build "$build" -j2 --target "fuzz_$target"
fi
exe=$build/tests/fuzz/fuzz_$target
seeds=$top/tests/fuzz/corpus/$target
work=$build/corpus/$target
artifacts=$build/artifacts/$target
mkdir -p "$work" "$artifacts"
dict=()
if [ -f "$top/tests/fuzz/dict/$target.dict" ]; then
	dict=(-dict="$top/tests/fuzz/dict/$target.dict")
fi
# The leak checker stays on (libp11 is not loaded by any target); the fast unwinder, as the
# slow one (ci/test.sh) costs a factor of ten in speed. -max_len: the message
# readers need room for a whole signed message.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
exec nice -n 10 "$exe" -max_total_time="$seconds" -max_len=65536 \
	-timeout=25 -rss_limit_mb=2048 -artifact_prefix="$artifacts/" -print_final_stats=1 \
	"${dict[@]}" "$@" "$work" "$seeds"
