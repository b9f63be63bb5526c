#!/bin/bash
# PIN hygiene, proven (docs/security.md): with the test token's known PIN, from a file and from
# env:, nothing the tool writes (stdout, stderr at -vv, --json) holds the PIN; no child process
# is started with it (strace -f -e trace=execve); the env: variable is unset and wiped once read
# and the buffer handed to C_Login is gone after the login (pin_hygiene.c, mock token); the tool
# runs with RLIMIT_CORE 0 and not dumpable (PR_SET_DUMPABLE 0), checked on the live process
# while it waits for its PIN on a descriptor.
# usage: pin_hygiene.sh PIN_HYGIENE_PROGRAM
#   environment: P11S_BIN, P11S_TEST_MODULE, P11S_TEST_PIN_FILE, SOFTHSM2_CONF (token fixture)
set -euo pipefail
prog=${1:?usage: pin_hygiene.sh PIN_HYGIENE_PROGRAM}
bin=${P11S_BIN:?}
module=${P11S_TEST_MODULE:?}
pinfile=${P11S_TEST_PIN_FILE:?}
src=${P11S_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$src/tests/integration/lib.sh"
pin=$(head -n1 "$pinfile")
[ "${#pin}" -ge 6 ] || { echo "the test PIN is too short to grep for" >&2; exit 2; }
var=P11S_HYGIENE_PIN

# no_pin DESC FILE...: none of the files holds the PIN.
no_pin() {
	local desc=$1
	shift
	if grep -qF -- "$pin" "$@"; then
		not_ok "$desc"
		grep -nF -- "$pin" "$@" | head -3 | sed 's/^/#   /'
	else
		ok "$desc"
	fi
}

# --- in-process checks with the mock (env: unset and wiped, login buffer gone) ---
set +e
env "$var=$pin" "$prog" env "$var" "$pinfile" >"$tmp/inproc-env" 2>&1
rc_env=$?
"$prog" file "$pinfile" >"$tmp/inproc-file" 2>&1
rc_file=$?
set -e
sed 's/^/#   /' "$tmp/inproc-env" "$tmp/inproc-file"
check "in-process checks, env: source" [ "$rc_env" = 0 ]
check "in-process checks, file: source" [ "$rc_file" = 0 ]

# --- the tool on the SoftHSM token ---
for mode in file env; do
	if [ "$mode" = file ]; then
		ps=(--pin-source "file:$pinfile")
		envp=()
	else
		ps=(--pin-source "env:$var")
		envp=("$var=$pin")
	fi
	for extra in "-vv" "--json"; do
		set +e
		# LeakSanitizer cannot run under ptrace (it would fail the exit status of a
		# sanitizer build); leaks are checked by every other run of the tool.
		env "${envp[@]}" ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
			strace -f -v -s 4096 -e trace=execve -o "$tmp/trace" \
			"$bin" "$extra" --module "$module" "${ps[@]}" keys >"$tmp/out" 2>"$tmp/err"
		rc=$?
		set -e
		check "keys ($mode, $extra) exits 0" [ "$rc" = 0 ]
		check "keys ($mode, $extra) logged in and listed private keys" grep -q 'type=private' "$tmp/out"
		no_pin "keys ($mode, $extra): PIN not on stdout or stderr" "$tmp/out" "$tmp/err"
		# The first execve is strace starting the tool (its environment is ours); any other
		# is a child of the tool.
		n=$(grep -c 'execve(' "$tmp/trace" || true)
		check "keys ($mode, $extra): the tool starts no child process ($((n - 1)) children)" [ "$n" = 1 ]
		sed 1d "$tmp/trace" >"$tmp/children"
		no_pin "keys ($mode, $extra): no child's argv or environment holds the PIN" "$tmp/children"
	done
done
# sign and decrypt log in too, and print more.
printf 'From: a@example.org\nSubject: x\n\nbody\n' >"$tmp/msg"
uri="pkcs11:token=${P11S_TEST_TOKEN:-p11s-test};object=ec256;type=private"
set +e
"$bin" -vv --module "$module" --pin-source "file:$pinfile" sign --key "$uri" --in "$tmp/msg" \
	--out "$tmp/signed" 2>"$tmp/err"
rc=$?
set -e
check "sign -vv exits 0" [ "$rc" = 0 ]
no_pin "sign -vv: PIN not on stderr nor in the signed message" "$tmp/err" "$tmp/signed"
# A wrong PIN is reported, not echoed (a neighbour of the real one, so the token stays usable:
# one failure is far from the lock count).
printf '%s9\n' "$pin" >"$tmp/wrong.pin"
set +e
"$bin" -vv --module "$module" --pin-source "file:$tmp/wrong.pin" keys >"$tmp/out" 2>"$tmp/err"
set -e
no_pin "wrong PIN: neither PIN on stdout or stderr" "$tmp/out" "$tmp/err"
# Reset the token's failure counter with a good login.
"$bin" --module "$module" --pin-source "file:$pinfile" keys >/dev/null 2>&1 || true

# --- core dumps off, on the live process waiting for its PIN on fd 3 ---
mkfifo "$tmp/fifo"
exec 4<>"$tmp/fifo"
runas=()
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	# As root every /proc file belongs to root anyway; as nobody, a root-owned
	# /proc/PID/status shows PR_SET_DUMPABLE 0 (proc(5)).
	runas=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
	chmod 755 "$tmp"
fi
"${runas[@]}" "$bin" --backend mock --module mock --pin-source fd:3 keys 3<"$tmp/fifo" \
	>"$tmp/out" 2>"$tmp/err" &
pid=$!
# Wait until it blocks in read(2) on fd 3 (its wchan is a pipe wait), at most 10 s.
for ((i = 0; i < 100; i++)); do
	if grep -q 'pipe' "/proc/$pid/wchan" 2>/dev/null; then
		break
	fi
	sleep 0.1
done
core=$(awk '/^Max core file size/ {print $5 " " $6}' "/proc/$pid/limits")
check "RLIMIT_CORE is 0 in the running tool (soft hard: $core)" [ "$core" = "0 0" ]
owner=$(stat -c %u "/proc/$pid/status")
tooluid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
if [ "$tooluid" != 0 ]; then
	check "the running tool is not dumpable (/proc/$pid owned by uid $owner, tool uid $tooluid)" \
		[ "$owner" = 0 ]
else
	ok "# SKIP dumpable check: the tool runs as root and setpriv is missing"
fi
printf '1234\n' >&4
set +e
wait "$pid"
rc=$?
set -e
exec 4>&-
check "keys with the PIN from fd:3 exits 0" [ "$rc" = 0 ]
finish
