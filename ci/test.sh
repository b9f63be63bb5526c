#!/bin/bash
# Run every test: install what is missing, build with gcc (-Werror), build again with clang
# under AddressSanitizer + UndefinedBehaviorSanitizer, and run all CTest suites in both.
# usage: ci/test.sh [--no-package]  (from anywhere; build trees go to build-ci/ and build-asan/)
#   Every test includes the Debian packages, built and tested installed (they are installed
#   and purged system-wide, like the packages ci/deps.sh installs; tests/package/installed.sh
#   refuses to start when p11smime is already installed). --no-package skips that step.
#   (--package, the former opt-in, is still accepted.)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
package=1
for arg in "$@"; do
	case $arg in
	--package) package=1 ;;
	--no-package) package=0 ;;
	*) echo "usage: ci/test.sh [--no-package]" >&2; exit 2 ;;
	esac
done
"$top/ci/deps.sh"

jobs=$(nproc 2>/dev/null || echo 2)
status=0

run_tree() {
	local dir=$1 ctest_args=$2
	shift 2
	echo "=== ci/test.sh: $dir: configure and build"
	cmake -S "$top" -B "$top/$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
	cmake --build "$top/$dir" -j"$jobs"
	echo "=== ci/test.sh: $dir: ctest"
	# shellcheck disable=SC2086 # ctest_args is a list of options
	(cd "$top/$dir" && ctest --output-on-failure -j"$jobs" --timeout 900 $ctest_args) || status=1
}

run_tree build-ci "" -DCMAKE_C_COMPILER=gcc
# valgrind memcheck over the CLI flows (sign, verify, encrypt, decrypt, wrap/unwrap, the
# bad-input sample), on the gcc tree just built: no memory errors, no leaks (suppressions for
# third-party code only, each justified in ci/valgrind.supp). The default backend only (about
# 1.5 min; the libp11 repeats of the same flows add about 35 s): docs/security.md, "Memory
# checking".
echo "=== ci/test.sh: valgrind: CLI flows under memcheck"
vg_start=$SECONDS
P11S_VG_BACKENDS=pkcs11 "$top/ci/valgrind.sh" "$top/build-ci" || status=1
echo "=== ci/test.sh: valgrind: $((SECONDS - vg_start)) s"
# LeakSanitizer on; third-party leaks (SoftHSM, p11-kit) are suppressed in ci/lsan.supp,
# each with its reason.
# fast_unwind_on_malloc=0: libcrypto and libp11 have no frame pointers; without the slow
# unwinder their leak stacks stop short and the suppressions cannot match.
export ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0:strict_string_checks=1
export LSAN_OPTIONS=suppressions=$top/ci/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# The sanitizer pass runs the unit suites (every backend's own tests included) and the
# integration suites through the default backend; the interop peers, the PKITS vectors and the
# per-backend repeats of the same CLI flows ran in the gcc pass (keeps CI well under 30 min).
export P11S_GW_LOAD=200 # the 500-message load test ran in the gcc pass
run_tree build-asan "-LE interop|pkits -E \.(libp11|pkcs11-helper)$" \
	-DCMAKE_C_COMPILER=clang -DP11S_SANITIZE=address,undefined

# The Debian packages (docs/packaging.md): built from the committed tree into dist/ (lintian:
# no errors), installed with apt-get, used, purged. After both CTest passes, so that nothing
# installed can stand in for the build trees' programs; tests/package/installed.sh purges on
# every exit. About 30 s.
if [ "$package" -eq 1 ]; then
	echo "=== ci/test.sh: packages: build, install, use, purge"
	pkg_start=$SECONDS
	sudo=
	if [ "$(id -u)" -ne 0 ]; then sudo=sudo; fi
	if "$top/ci/package.sh" "$top/dist"; then
		$sudo "$top/tests/package/installed.sh" "$top/dist" || status=1
	else
		status=1
	fi
	echo "=== ci/test.sh: packages: $((SECONDS - pkg_start)) s"
fi

if [ "$status" -ne 0 ]; then
	echo "ci/test.sh: FAILED" >&2
fi
exit "$status"
