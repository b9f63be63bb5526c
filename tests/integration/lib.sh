# Shared helpers of the shell integration suites: the test token and the tool on it, TAP-like
# lines and a closing "N passed, N failed" line that CI reads. A suite sets `backend` (its
# first argument) and sources this file.

# The throwaway SoftHSMv2 token of tests/CMakeLists.txt (fixture token.setup).
bin=${P11S_BIN:-}
mod=${P11S_TEST_MODULE:-}
label=${P11S_TEST_TOKEN:-}
pki=${P11S_TEST_PKI:-}
pinfile=${P11S_TEST_PIN_FILE:-}

# p11s ARGS...: the tool through $backend on the test module, PIN from the token's PIN file.
p11s() { "$bin" --backend "$backend" --module "$mod" --pin-source "file:$pinfile" "$@"; }

# keyuri OBJECT: the URI of the private key OBJECT on the test token.
keyuri() { printf 'pkcs11:token=%s;object=%s;type=private' "$label" "$1"; }

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
# $tmp/err) and check its exit status; on a mismatch the first lines of both are shown.
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
		sed 's/^/#   stdout: /' "$tmp/out" | head -5
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
