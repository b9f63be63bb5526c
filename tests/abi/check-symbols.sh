#!/bin/bash
# The ABI test (docs/abi.md): the dynamic symbols of a built libp11smime.so against the Debian
# symbols file, the committed list of the exported ABI.
#   - a symbol of the list the library no longer exports fails (a program linked against an
#     earlier build would no longer load: that needs a new SONAME, docs/abi.md);
#   - an exported symbol that is not p11s_* (or the version node) fails: internals are leaking;
#   - a symbol without the version node P11SMIME_0 (or a later P11SMIME_* node) fails;
#   - the SONAME must be the one the symbols file names;
#   - with INCLUDE-DIR: the exported functions must be exactly those declared P11S_EXTERN in its
#     headers (an internal function given default visibility fails; so does a public
#     declaration whose definition is missing or hidden);
#   - a new p11s_* symbol is reported, not failed (an addition is compatible): add it to the
#     list with the version that introduces it.
# usage: check-symbols.sh LIBRARY SYMBOLS-FILE [INCLUDE-DIR]
#        check-symbols.sh --self-test LIBRARY SYMBOLS-FILE [INCLUDE-DIR]
#            (proves each failure is detected)
set -euo pipefail

# The p11s_* function names declared P11S_EXTERN in the headers below $1 (declarations may span
# lines: the whole file is one record).
declared_in() {
	find "$1" -name '*.h' -print0 | xargs -0 perl -0777 -ne \
		'while (/\bP11S_EXTERN\b[^;{}()]*?\b(p11s_[A-Za-z0-9_]+)\s*\(/g) { print "$1\n" }' |
		sort -u
}

check() {
	local lib=$1 symbols=$2 include=${3:-} status=0 soname want_soname
	want_soname=$(awk 'NR == 1 { print $1 }' "$symbols")
	soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
	if [ "$soname" != "$want_soname" ]; then
		echo "check-symbols: SONAME of $lib is '$soname', the symbols file says '$want_soname'" >&2
		status=1
	fi
	# "name@VERSION" of each listed symbol (lines starting with a blank; '|' alternatives,
	# '*' metadata and '#' comments are not used here).
	local listed exported
	listed=$(awk '/^ / { print $1 }' "$symbols" | sort -u)
	# nm prints defined versioned symbols as name@@VERSION (default version); the version
	# node itself is an absolute symbol "VERSION".
	exported=$(nm -D --defined-only "$lib" | awk '{ n = $3; sub(/@@/, "@", n);
		if ($2 == "A" && n !~ /@/) n = n "@" n; print n }' | sort -u)
	local missing extra bad
	missing=$(comm -23 <(echo "$listed") <(echo "$exported"))
	extra=$(comm -13 <(echo "$listed") <(echo "$exported"))
	if [ -n "$missing" ]; then
		echo "check-symbols: no longer exported by $lib (ABI break):" >&2
		echo "$missing" | sed 's/^/  /' >&2
		status=1
	fi
	bad=$(echo "$exported" | grep -Ev '^(p11s_[A-Za-z0-9_]+|P11SMIME_[0-9.]+)@P11SMIME_[0-9.]+$' || true)
	if [ -n "$bad" ]; then
		echo "check-symbols: exported but not public p11s_* API of version node P11SMIME_*:" >&2
		echo "$bad" | sed 's/^/  /' >&2
		status=1
	fi
	if [ -n "$include" ]; then
		local functions declared undeclared unexported
		functions=$(nm -D --defined-only "$lib" | awk '$2 != "A" { n = $3; sub(/@.*/, "", n); print n }' |
			sort -u)
		declared=$(declared_in "$include")
		undeclared=$(comm -13 <(echo "$declared") <(echo "$functions"))
		unexported=$(comm -23 <(echo "$declared") <(echo "$functions"))
		if [ -n "$undeclared" ]; then
			echo "check-symbols: exported but not declared P11S_EXTERN in $include (internal):" >&2
			echo "$undeclared" | sed 's/^/  /' >&2
			status=1
		fi
		if [ -n "$unexported" ]; then
			echo "check-symbols: declared P11S_EXTERN in $include but not exported by $lib:" >&2
			echo "$unexported" | sed 's/^/  /' >&2
			status=1
		fi
	fi
	extra=$(echo "$extra" | grep -Fxv -f <(echo "$bad") || true)
	if [ -n "$extra" ]; then
		echo "check-symbols: new symbols (add them to $symbols with the version that adds them):"
		echo "$extra" | sed 's/^/  /'
	fi
	[ "$status" -eq 0 ] && echo "check-symbols: $(echo "$listed" | wc -l) listed symbols exported, SONAME $soname"
	return "$status"
}

if [ "${1:-}" = --self-test ]; then
	lib=$2 symbols=$3 include=${4:-}
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	fail=0
	# A symbol the library does not have must be reported missing.
	{ cat "$symbols"; echo " p11s_no_such_function@P11SMIME_0 0.1.0"; } >"$tmp/missing"
	if check "$lib" "$tmp/missing" >/dev/null 2>"$tmp/err"; then
		echo "self-test: a missing symbol passed" >&2; fail=1
	fi
	grep -q p11s_no_such_function "$tmp/err" || { echo "self-test: missing symbol not named" >&2; fail=1; }
	# A wrong SONAME must fail.
	sed '1s/libp11smime\.so\.0/libp11smime.so.1/' "$symbols" >"$tmp/soname"
	if check "$lib" "$tmp/soname" >/dev/null 2>&1; then
		echo "self-test: a wrong SONAME passed" >&2; fail=1
	fi
	# A library exporting a non-p11s_ symbol must fail: build one.
	printf 'int p11s_fake(void) { return 0; }\nint leaked_internal(void) { return 1; }\n' >"$tmp/l.c"
	printf 'P11SMIME_0 { global: p11s_*; leaked_*; local: *; };\n' >"$tmp/l.map"
	${CC:-cc} -shared -fPIC -o "$tmp/libl.so" -Wl,-soname,libp11smime.so.0 \
		-Wl,--version-script="$tmp/l.map" "$tmp/l.c"
	printf 'libp11smime.so.0 libp11smime0 #MINVER#\n p11s_fake@P11SMIME_0 0.1.0\n' >"$tmp/l.symbols"
	if check "$tmp/libl.so" "$tmp/l.symbols" >/dev/null 2>"$tmp/err"; then
		echo "self-test: a leaked internal symbol passed" >&2; fail=1
	fi
	grep -q leaked_internal "$tmp/err" || { echo "self-test: leaked symbol not named" >&2; fail=1; }
	# An unversioned export must fail.
	${CC:-cc} -shared -fPIC -o "$tmp/libu.so" -Wl,-soname,libp11smime.so.0 "$tmp/l.c"
	if check "$tmp/libu.so" "$tmp/l.symbols" >/dev/null 2>&1; then
		echo "self-test: unversioned symbols passed" >&2; fail=1
	fi
	if [ -n "$include" ]; then
		# A p11s_ function with default visibility that no public header declares must fail,
		# and so must a public declaration the library does not export.
		mkdir "$tmp/inc"
		printf 'P11S_EXTERN int\n\tp11s_fake(void);\n' >"$tmp/inc/fake.h"
		printf 'int p11s_fake(void) { return 0; }\nint p11s_internal__x(void) { return 1; }\n' >"$tmp/i.c"
		printf 'P11SMIME_0 { global: p11s_*; local: *; };\n' >"$tmp/i.map"
		${CC:-cc} -shared -fPIC -o "$tmp/libi.so" -Wl,-soname,libp11smime.so.0 \
			-Wl,--version-script="$tmp/i.map" "$tmp/i.c"
		if check "$tmp/libi.so" "$tmp/l.symbols" "$tmp/inc" >/dev/null 2>"$tmp/err"; then
			echo "self-test: an undeclared p11s_ export passed" >&2; fail=1
		fi
		grep -q p11s_internal__x "$tmp/err" || { echo "self-test: undeclared export not named" >&2; fail=1; }
		printf 'P11S_EXTERN void p11s_declared_only(int x);\n' >>"$tmp/inc/fake.h"
		printf 'int p11s_fake(void) { return 0; }\n' >"$tmp/i.c"
		${CC:-cc} -shared -fPIC -o "$tmp/libi.so" -Wl,-soname,libp11smime.so.0 \
			-Wl,--version-script="$tmp/i.map" "$tmp/i.c"
		if check "$tmp/libi.so" "$tmp/l.symbols" "$tmp/inc" >/dev/null 2>"$tmp/err"; then
			echo "self-test: a declared but unexported function passed" >&2; fail=1
		fi
		grep -q p11s_declared_only "$tmp/err" || { echo "self-test: unexported declaration not named" >&2; fail=1; }
		sed -i '$d' "$tmp/inc/fake.h"
		check "$tmp/libi.so" "$tmp/l.symbols" "$tmp/inc" >/dev/null 2>&1 ||
			{ echo "self-test: a matching header and library fail" >&2; fail=1; }
	fi
	# And the real list must pass.
	check "$lib" "$symbols" "$include" >/dev/null || { echo "self-test: the real list fails" >&2; fail=1; }
	[ "$fail" -eq 0 ] && echo "check-symbols self-test: every failure detected"
	exit "$fail"
fi
check "$1" "$2" "${3:-}"
