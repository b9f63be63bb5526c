# Shared helpers of the shell integration suites: TAP-like lines and a closing
# "N passed, N failed" line that CI reads.
passed=0
failed=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ok() {
	passed=$((passed + 1))
	echo "ok - $*"
}

not_ok() {
	failed=$((failed + 1))
	echo "not ok - $*"
}

# expect STATUS DESCRIPTION -- COMMAND...: run COMMAND (stdout to $tmp/out, stderr to
# $tmp/err) and check its exit status.
expect() {
	local want=$1 desc=$2 got
	shift 3
	set +e
	"$@" >"$tmp/out" 2>"$tmp/err"
	got=$?
	set -e
	if [ "$got" = "$want" ]; then
		ok "$desc"
	else
		not_ok "$desc (exit $got, expected $want)"
		sed 's/^/#   stderr: /' "$tmp/err" | head -5
	fi
}

# check DESCRIPTION COMMAND...: a predicate.
check() {
	local desc=$1
	shift
	if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}

finish() {
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
}
