#!/bin/bash
# `p11smime agent` when the token goes away and when the user cancels the PIN (docs/agent.md):
#  1. token removed under a running, logged-in agent (softhsm2-util --delete-token on a private
#     copy of the token, the agent's module wrapped by pkcs11-spy): the next signature fails
#     cleanly (exit 3, one line, no output file), `agent --status --json` says logged out, the
#     agent logged why; the token put back, the next signature logs in again (second C_Login);
#  2. pinentry cancel: a pinentry that speaks Assuan and answers GETPIN with
#     "ERR 83886179 Operation cancelled" (gpg-error GPG_ERR_CANCELED, source pinentry): exit 2
#     (PIN source error), one line, no output, no C_Login, nothing cached (logged out); the next
#     signature asks the pinentry again, which now gives the PIN, and signs.
# usage: lifecycle.sh   (environment: the token fixture, tests/CMakeLists.txt)
set -euo pipefail
bin=${P11S_BIN:?}
mod=${P11S_TEST_MODULE:?}
pinfile=${P11S_TEST_PIN_FILE:?}
pki=${P11S_TEST_PKI:?}
src=${P11S_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$src/tests/integration/lib.sh"
label=${P11S_TEST_TOKEN:-p11s-test}
client=$(dirname "$bin")/p11smime-client
exec </dev/null
unset P11SMIME_AGENT_SOCK P11SMIME_MODULE
spy=
for f in /usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so /usr/lib/x86_64-linux-gnu/pkcs11-spy.so; do
	[ -e "$f" ] && { spy=$f; break; }
done
[ -n "$spy" ] || { not_ok "pkcs11-spy.so missing (Debian package opensc-pkcs11)"; finish; }
command -v softhsm2-util >/dev/null || { not_ok "softhsm2-util missing"; finish; }

tok=$tmp/tok
mkdir -p "$tok"
cp -a "$P11S_TEST_DIR/tokens" "$tok/tokens"
cp -a "$tok/tokens" "$tmp/tokens.saved"
sed "s|^directories.tokendir *=.*|directories.tokendir = $tok/tokens|" \
	"$P11S_TEST_DIR/softhsm2.conf" >"$tok/softhsm2.conf"
export SOFTHSM2_CONF=$tok/softhsm2.conf
export PKCS11SPY=$mod PKCS11SPY_OUTPUT=$tmp/spy.log
export XDG_CONFIG_HOME=$tmp/config HOME=$tmp

rsa="pkcs11:token=$label;object=rsa2048;type=private"
sock=$tmp/run/agent.sock
mkdir -p "$tmp/run"
chmod 700 "$tmp/run"
export P11SMIME_AGENT_SOCK=$sock
agent_pid=
start_agent() {
	: >"$tmp/spy.log"
	: >"$tmp/agent.log"
	"$bin" --module "$spy" agent --socket "$sock" --log "$tmp/agent.log" "$@" &
	agent_pid=$!
	for _ in $(seq 100); do [ -S "$sock" ] && return 0; sleep 0.05; done
	not_ok "agent did not start"; cat "$tmp/agent.log"; finish
}
stop_agent() {
	"$bin" agent --stop --socket "$sock" >/dev/null 2>&1 || true
	wait "$agent_pid" 2>/dev/null || true
	agent_pid=
}
trap 'if [ -n "$agent_pid" ]; then kill -9 "$agent_pid" 2>/dev/null || true; fi; rm -rf "$tmp"' EXIT
logins() { grep -c '^[0-9]*: C_Login$' "$tmp/spy.log" || true; }
verifies() { "$bin" --agent never verify --trust "$pki/root.pem" --certs "$pki/chain.pem" \
	--no-sender-check --in "$1" --out "$2" >/dev/null 2>&1; }
# status KEY: a field of `agent --status --json`
status() { "$bin" --json agent --status --socket "$sock" |
	python3 -c 'import json,sys; print(str(json.load(sys.stdin)[sys.argv[1]]).lower())' "$1"; }

cd "$tmp"
printf 'From: alice-rsa2048@example.org\nTo: b@example.org\nSubject: lifecycle\n\n' >msg.eml
head -c 2048 /dev/zero | tr '\0' 'y' | fold -w 64 >>msg.eml

# --- 1. the token removed under the agent
start_agent --pin-source "file:$pinfile"
expect 0 "a signature through the agent logs in" -- "$client" --agent require sign --key "$rsa" \
	--in msg.eml --out r1.eml
check "  ... the agent is logged in" test "$(status logged_in)" = true
softhsm2-util --delete-token --token "$label" >/dev/null
check "softhsm2-util deleted the token under the running agent" test -z "$(ls -A "$tok/tokens")"
expect 3 "the next signature fails with exit 3" -- "$client" --agent require sign --key "$rsa" \
	--in msg.eml --out r2.eml
sed 's/^/#   stderr: /' "$tmp/err"
check "  ... one line on stderr, no output file" sh -c "[ \$(wc -l <'$tmp/err') = 1 ] && [ ! -e r2.eml ]"
check "  ... agent --status --json says logged out" test "$(status logged_in)" = false
check "  ... the agent logged that it dropped the login" grep -q "dropping the login" "$tmp/agent.log"
grep "dropping the login" "$tmp/agent.log" | sed 's/^/#   agent: /'
rm -rf "$tok/tokens" && cp -a "$tmp/tokens.saved" "$tok/tokens"
expect 0 "the token back: the next signature succeeds" -- "$client" --agent require sign \
	--key "$rsa" --in msg.eml --out r3.eml
check "  ... by logging in again (2 C_Login in all)" test "$(logins)" = 2
check "  ... and it verifies" verifies r3.eml r3.out
stop_agent

# --- 2. pinentry cancel
# A pinentry on the Assuan protocol ("Developing with Assuan"; pinentry's commands): OK to
# everything, and GETPIN answered per $tmp/pe.mode: cancel -> the error pinentry sends when
# the user cancels (GPG_ERR_CANCELED = 99 with GPG_ERR_SOURCE_PINENTRY = 5: 5 << 24 | 99 =
# 83886179), pin -> the PIN in a D line. Every GETPIN is logged in $tmp/pe.log.
cat >fake-pinentry <<EOF
#!/bin/bash
echo "OK Pleased to meet you"
while IFS= read -r line; do
	case "\$line" in
	GETPIN*)
		echo GETPIN >>'$tmp/pe.log'
		if [ "\$(cat '$tmp/pe.mode')" = cancel ]; then
			echo "ERR 83886179 Operation cancelled <Pinentry>"
		else
			echo "D \$(cat '$pinfile')"
			echo OK
		fi ;;
	BYE*) echo OK; exit 0 ;; # short: the line buffer keeps what follows "OK"
	*) echo OK ;;
	esac
done
EOF
chmod +x fake-pinentry
echo cancel >pe.mode
: >pe.log
start_agent --pinentry "$tmp/fake-pinentry"
expect 2 "pinentry cancelled: exit 2 (PIN source error)" -- "$client" --agent require sign \
	--key "$rsa" --in msg.eml --out c1.eml
sed 's/^/#   stderr: /' "$tmp/err"
check "  ... one line on stderr saying it was cancelled" sh -c \
	"[ \$(wc -l <'$tmp/err') = 1 ] && grep -q 'cancelled' '$tmp/err'"
check "  ... no output file, nothing on stdout" sh -c "[ ! -e c1.eml ] && [ ! -s '$tmp/out' ]"
check "  ... the pinentry was asked once" test "$(grep -c GETPIN pe.log)" = 1
check "  ... no C_Login was made" test "$(logins)" = 0
check "  ... nothing cached: logged out" test "$(status logged_in)" = false
expect 2 "cancelled with stdout as the output: exit 2" -- "$client" --agent require sign \
	--key "$rsa" --in msg.eml
check "  ... and nothing written to stdout" test ! -s "$tmp/out"
echo pin >pe.mode
expect 0 "the next signature asks the pinentry again and signs" -- "$client" --agent require \
	sign --key "$rsa" --in msg.eml --out c2.eml
check "  ... a third GETPIN, one C_Login, logged in" sh -c \
	"[ \$(grep -c GETPIN pe.log) = 3 ] && [ $(logins) = 1 ] && [ $(status logged_in) = true ]"
check "  ... the signature verifies" verifies c2.eml c2.out
check "no PIN in the agent's log" sh -c "! grep -q -- \"\$(cat '$pinfile')\" '$tmp/agent.log'"
# The PIN came from the pinentry in an Assuan D line: once C_Login returned, no copy of it may
# remain in the agent's writable memory (libassuan's line buffer included; src/agent/
# pinentry.c wipes every block libassuan frees). Read through /proc/PID/mem (needs ptrace
# rights over the agent: root, or CAP_SYS_PTRACE, since the agent is not dumpable).
pin_in_memory() {
	python3 - "$agent_pid" "$(cat "$pinfile")" <<'PY'
import re, sys
pid, pin = sys.argv[1], sys.argv[2].encode()
hits = 0
with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
    for line in maps:
        f = line.split()
        if "w" not in f[1]:
            continue
        lo, hi = (int(x, 16) for x in f[0].split("-"))
        # Skip mappings of more than 1 GiB: ASan's shadow memory and allocator reserve
        # (terabytes, mostly never touched) in the sanitizer build; the heap is far smaller.
        if hi - lo > 1 << 30:
            continue
        try:
            mem.seek(lo)
            data = mem.read(hi - lo)
        except (OSError, ValueError, OverflowError):
            continue
        # The PIN, or all of it but its first character: libassuan's next line ("OK")
        # overwrites the start of the "D PIN" line in its buffer, not the rest.
        n = len(re.findall(rb"(?<![0-9])" + re.escape(pin[:1]) + rb"?" + re.escape(pin[1:]) +
                           rb"(?![0-9])", data))
        if n:
            print(f"# {n} cop{'y' if n == 1 else 'ies'} of the PIN in {' '.join(f[5:]) or '[anon]'} {f[0]}")
        hits += n
sys.exit(1 if hits else 0)
PY
}
if [ -r "/proc/$agent_pid/mem" ] && python3 -c "open('/proc/$agent_pid/mem','rb')" 2>/dev/null; then
	check "no copy of the PIN left in the agent's memory after the pinentry login" pin_in_memory
else
	echo "# skipped: no ptrace rights over the agent to read its memory"
fi
stop_agent
finish
