#!/bin/bash
# p11smime-client, the thin client (docs/agent.md "The thin client"), against the full tool on a
# copy of the throwaway SoftHSMv2 token:
#  1. with an agent: sign (file and stdin -> stdout), decrypt, sign --opaque and four failures
#     give the exit status, stderr and (comparable) output of `p11smime` through the agent, in
#     ONE process (strace: one execve) and one C_Login in all (pkcs11-spy);
#  2. everything else execs the full tool with the same argv: --version, --help, `tokens`,
#     `verify`, an unknown command, bad --agent, a PIN on the command line, a missing value,
#     a configuration file that does not load: same stdout, stderr and status;
#  3. no agent: `--agent require` gives the tool's one line and exit 3, `auto` signs in-process;
#  4. the agent killed mid-run: exit 3, one line, the destination untouched, nothing left;
#  5. the agent's key cache: kept after a success (status keys_kept), dropped after a failure.
# usage: client.sh   (environment: the token fixture, tests/CMakeLists.txt)
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
[ -x "$client" ] || { not_ok "$client not built"; finish; }
command -v strace >/dev/null || { not_ok "strace missing (Debian package strace)"; finish; }
spy=
for f in /usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so /usr/lib/x86_64-linux-gnu/pkcs11-spy.so; do
	[ -e "$f" ] && { spy=$f; break; }
done
[ -n "$spy" ] || { not_ok "pkcs11-spy.so missing (Debian package opensc-pkcs11)"; finish; }

tok=$tmp/tok
mkdir -p "$tok"
cp -a "$P11S_TEST_DIR/tokens" "$tok/tokens"
sed "s|^directories.tokendir *=.*|directories.tokendir = $tok/tokens|" \
	"$P11S_TEST_DIR/softhsm2.conf" >"$tok/softhsm2.conf"
export SOFTHSM2_CONF=$tok/softhsm2.conf
export PKCS11SPY=$mod PKCS11SPY_OUTPUT=$tmp/spy.log
# No configuration file of the user's running this test decides anything here.
export XDG_CONFIG_HOME=$tmp/config HOME=$tmp

rsa="pkcs11:token=$label;object=rsa2048;type=private"
ec="pkcs11:token=$label;object=ec256;type=private"
sock=$tmp/run/agent.sock
mkdir -p "$tmp/run"
chmod 700 "$tmp/run"
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
# same DESC ARGS...: the full tool and the thin client, same argv: same status, stdout, stderr.
same() {
	local desc=$1 s1 s2
	shift
	set +e
	"$bin" "$@" >"$tmp/f.out" 2>"$tmp/f.err"; s1=$?
	"$client" "$@" >"$tmp/c.out" 2>"$tmp/c.err"; s2=$?
	set -e
	if [ "$s1" = "$s2" ] && cmp -s "$tmp/f.out" "$tmp/c.out" && cmp -s "$tmp/f.err" "$tmp/c.err"; then
		ok "$desc (exit $s1, same stdout and stderr)"
	else
		not_ok "$desc (exit $s1 vs $s2)"
		diff "$tmp/f.err" "$tmp/c.err" | head -5 | sed 's/^/#   /' || true
	fi
}
# execs CMD...: the number of execve() calls CMD makes (its own included).
execs() { strace -f -qq -e trace=execve -o "$tmp/strace.log" "$@" >/dev/null 2>&1 || true
	grep -c 'execve(' "$tmp/strace.log" || true; }

cd "$tmp"
printf 'From: alice-rsa2048@example.org\nTo: b@example.org\nSubject: client\n\n' >msg.eml
head -c 4096 /dev/zero | tr '\0' 'x' | fold -w 64 >>msg.eml
"$bin" encrypt --to "$pki/rsa2048.pem" --in msg.eml --out enc.eml

# --- 3 first (no agent yet)
export P11SMIME_AGENT_SOCK=$sock
same "no agent, --agent require: the tool's error" --agent require sign --key "$rsa" --in msg.eml --out x.eml
expect 3 "  ... exit 3" -- "$client" --agent require sign --key "$rsa" --in msg.eml --out x.eml
check "  ... one line, no output file" sh -c "[ \$(wc -l <'$tmp/err') = 1 ] && [ ! -e x.eml ]"
expect 0 "no agent, --agent auto: signs in-process (execs p11smime)" -- "$client" --module "$mod" \
	--pin-source "file:$pinfile" sign --key "$rsa" --in msg.eml --out auto.eml
check "  ... the signature verifies" verifies auto.eml auto.out

# --- 2. fallbacks: the full tool's own behaviour
same "--version" --version
same "--help" --help
same "sign --help" sign --help
same "tokens (not an agent command)" --module "$mod" tokens
same "verify (not an agent command)" verify --trust "$pki/root.pem" --certs "$pki/chain.pem" \
	--no-sender-check --in auto.eml
same "unknown command" frobnicate
same "bad --agent value" --agent sometimes sign --key "$rsa" --in msg.eml
same "a PIN on the command line" --pin 1234 sign --key "$rsa" --in msg.eml
same "a global option without its value" sign --key "$rsa" --in msg.eml --module
same "no command" --json
printf 'module = %s\nbogus = 1\n' "$mod" >bad.conf
same "a configuration file that does not load" --config bad.conf sign --key "$rsa" --in msg.eml
mkdir -p "$tmp/config/p11smime"
printf 'colour = blue\n' >"$tmp/config/p11smime/config"
same "a default configuration file that does not load" sign --key "$rsa" --in msg.eml
rm -f "$tmp/config/p11smime/config"

# --- 1. through the agent
start_agent --pin-source "file:$pinfile"
"$client" sign --key "$rsa" --in msg.eml --out c1.eml
check "sign through the agent verifies, with the content signed in-process" sh -c \
	"$(declare -f verifies); bin='$bin' pki='$pki'; verifies c1.eml c1.out && cmp -s c1.out auto.out"
"$client" sign --key "$rsa" <msg.eml >c2.eml
check "sign stdin -> stdout verifies" verifies c2.eml c2.out
"$bin" --agent never --module "$mod" --pin-source "file:$pinfile" sign --key "$ec" --opaque \
	--in msg.eml --out l-op.eml
"$client" sign --key "$ec" --opaque --in msg.eml --out c-op.eml
check "sign --opaque (EC) verifies to the same content as in-process" sh -c \
	"$(declare -f verifies); bin='$bin' pki='$pki'; verifies l-op.eml l1 && verifies c-op.eml c1x && cmp -s l1 c1x"
"$bin" --agent never --module "$mod" --pin-source "file:$pinfile" decrypt --key "$rsa" \
	--in enc.eml --out l-dec.eml
"$client" decrypt --key "$rsa" <enc.eml >c-dec.eml
check "decrypt: byte-identical plaintext" cmp -s l-dec.eml c-dec.eml
n=$(execs "$client" sign --key "$rsa" --in msg.eml --out c3.eml)
check "one process: the thin client does not exec the tool when the agent answers ($n execve)" test "$n" = 1
n=$(execs "$client" tokens)
check "  ... and execs it once for another command ($n execve)" test "$n" = 2
for c in "sign --key pkcs11:token=$label;object=nope;type=private --in msg.eml --out f.eml" \
	"decrypt --key $rsa --in msg.eml --out f.eml" \
	"sign --key $rsa --in missing.eml --out f.eml" \
	"sign --key $rsa --digest md5 --in msg.eml"; do
	# shellcheck disable=SC2086
	same "failure '${c%% --in*}...' through the agent" $c
	check "  ... no output file" test ! -e f.eml
done
same "-q and --json travel with the command" -q --json sign --key "$rsa" --in missing.eml
"$bin" --json agent --status --socket "$sock" >st.json
check "one C_Login for everything above ($(logins))" test "$(logins)" = 1
check "the agent served the thin client (operations counted)" python3 -c '
import json,sys; d=json.load(open(sys.argv[1])); assert d["operations"]>=12, d' st.json

# --- 5. the key cache
"$client" sign --key "$ec" --in msg.eml --out k1.eml
"$bin" --json agent --status --socket "$sock" >st.json
check "after a success the agent keeps the key (keys_kept >= 1)" python3 -c '
import json,sys; d=json.load(open(sys.argv[1])); assert d["keys_kept"]>=1, d' st.json
set +e; "$client" sign --key "$ec" --in missing.eml --out k2.eml 2>/dev/null; set -e
"$bin" --json agent --status --socket "$sock" >st.json
check "  ... after a failure it keeps none (keys_kept = 0)" python3 -c '
import json,sys; d=json.load(open(sys.argv[1])); assert d["keys_kept"]==0, d' st.json
"$client" sign --key "$ec" --in msg.eml --out k3.eml
check "  ... and finds it again for the next signature, which verifies" verifies k3.eml k3.out
"$client" sign --key "pkcs11:token=$label;object=ec256;type=private?pin-source=file:$pinfile" \
	--in msg.eml --out k4.eml
"$bin" --json agent --status --socket "$sock" >st.json
check "  ... a URI with a pin-source is never kept" python3 -c '
import json,sys; d=json.load(open(sys.argv[1])); assert d["keys_kept"]==1, d' st.json

# --- 4. the agent killed mid-run
big=$tmp/big.eml
{ printf 'From: alice-rsa2048@example.org\nSubject: big\n\n'
  { yes 'A line of text, repeated to make a message of a hundred mebibytes.' || true; } |
	head -c 104857600; } >"$big"
echo "previous content" >dest.eml
cp dest.eml expected
before=$(grep -c ': sign for pid' "$tmp/agent.log")
set +e
"$client" sign --key "$rsa" --opaque --in "$big" --out dest.eml 2>kill.err &
cpid=$!
for _ in $(seq 100); do [ "$(grep -c ': sign for pid' "$tmp/agent.log")" -gt "$before" ] && break; sleep 0.02; done
sleep 0.1
kill -9 "$agent_pid"
wait "$cpid"; s=$?
set -e
wait "$agent_pid" 2>/dev/null || true
agent_pid=
check "agent killed mid-run: exit 3 (got $s)" test "$s" = 3
check "  ... one line saying the agent went away" sh -c \
	"[ \$(wc -l <kill.err) = 1 ] && grep -q '^p11smime: error: the agent closed the connection before it finished' kill.err"
check "  ... the destination is untouched, nothing left beside it" sh -c \
	"cmp -s dest.eml expected && [ -z \"\$(ls -A | grep '^dest\\.eml\\.')\" ]"
rm -f "$sock"
finish
