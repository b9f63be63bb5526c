#!/bin/bash
# `p11smime agent` end to end on a copy of the throwaway SoftHSMv2 token (docs/agent.md):
#  1. sign/decrypt/wrap/unwrap/receipt through the agent give the same results and exit
#     statuses as in-process; N signatures make exactly one C_Login (OpenSC's pkcs11-spy);
#  2. --agent require without an agent exits 3; auto falls back to in-process;
#  3. a client of another uid (nobody) is refused and logged;
#  4. SIGKILL of the agent mid-run: the client fails (3), the destination is untouched and no
#     temporary file is left (O_TMPFILE);
#  5. --cache-ttl expiry logs out: the next operation logs in again; --cache-ttl 0 per op;
#  6. a CKA_ALWAYS_AUTHENTICATE key: a context-specific login with a PIN read every time;
#  7. a real pinentry (pinentry-tty in tmux): the PIN typed reaches the token; a wrong PIN
#     fails the operation, is not retried, and the next prompt shows the tries left.
# usage: agent.sh   (environment: the token fixture, tests/CMakeLists.txt)
set -euo pipefail
bin=${P11S_BIN:?}
mod=${P11S_TEST_MODULE:?}
pinfile=${P11S_TEST_PIN_FILE:?}
pki=${P11S_TEST_PKI:?}
src=${P11S_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$src/tests/integration/lib.sh"
label=${P11S_TEST_TOKEN:-p11s-test}
pin=$(cat "$pinfile")
exec </dev/null
unset P11SMIME_AGENT_SOCK P11SMIME_MODULE

spy=
for f in /usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so /usr/lib/x86_64-linux-gnu/pkcs11-spy.so; do
	[ -e "$f" ] && { spy=$f; break; }
done
[ -n "$spy" ] || { not_ok "pkcs11-spy.so missing (Debian package opensc-pkcs11)"; finish; }

# A private copy of the token: wrong PINs below must not touch the shared fixture's counters.
chmod 755 "$tmp"
tok=$tmp/tok
mkdir -p "$tok"
cp -a "$P11S_TEST_DIR/tokens" "$tok/tokens"
sed "s|^directories.tokendir *=.*|directories.tokendir = $tok/tokens|" \
	"$P11S_TEST_DIR/softhsm2.conf" >"$tok/softhsm2.conf"
export SOFTHSM2_CONF=$tok/softhsm2.conf
export PKCS11SPY=$mod PKCS11SPY_OUTPUT=$tmp/spy.log

rsa="pkcs11:token=$label;object=rsa2048;type=private"
ec="pkcs11:token=$label;object=ec256;type=private"
sock=$tmp/run/agent.sock
mkdir -p "$tmp/run"
chmod 700 "$tmp/run"
agent_pid=
start_agent() { # start_agent ARGS...: foreground agent in the background, on $sock, via the spy
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
# pkcs11-spy logs "N: C_Login" and then "[in] userType = CKU_USER" (or CKU_CONTEXT_SPECIFIC).
logins() { grep -c '^[0-9]*: C_Login$' "$tmp/spy.log" || true; }
ctx_logins() { grep -A3 ": C_Login$" "$tmp/spy.log" | grep -c "CKU_CONTEXT_SPECIFIC" || true; }
via() { "$bin" --agent require "$@"; }
local_() { "$bin" --agent never --module "$mod" --pin-source "file:$pinfile" "$@"; }
verifies() { "$bin" --agent never verify --trust "$pki/root.pem" --certs "$pki/chain.pem" \
	--no-sender-check --in "$1" --out "$2" >/dev/null 2>&1; }

cd "$tmp"
printf 'From: alice-rsa2048@example.org\nTo: b@example.org\nSubject: agent\n\n' >msg.eml
head -c 4096 /dev/zero | tr '\0' 'x' | fold -w 64 >>msg.eml

# --- 2 (first: nothing runs yet). require without an agent; auto falls back.
export P11SMIME_AGENT_SOCK=$sock
expect 3 "--agent require without an agent exits 3" -- via sign --key "$rsa" --in msg.eml --out x.eml
check "  ... one clear line on stderr naming --agent require" sh -c \
	"[ \$(wc -l <'$tmp/err') = 1 ] && grep -q '^p11smime: error: --agent require: no agent answers on ' '$tmp/err'"
check "  ... and no output file" test ! -e x.eml
expect 0 "--agent auto without an agent signs in-process" -- "$bin" --module "$mod" \
	--pin-source "file:$pinfile" sign --key "$rsa" --in msg.eml --out auto.eml
check "  ... the signature verifies" verifies auto.eml auto.out
expect 2 "--agent with a bad value is a usage error" -- "$bin" --agent sometimes tokens

# --- 1. identical results in-process and via the agent; one C_Login for N signatures.
start_agent --pin-source "file:$pinfile"
check "socket mode 0600" sh -c "[ \$(stat -c %a '$sock') = 600 ]"
n=5
allok=1
for i in $(seq $n); do
	via sign --key "$rsa" --in msg.eml --out "a$i.eml" 2>"$tmp/err" || allok=0
done
check "$n signatures through the agent succeed" test $allok = 1
check "  ... they verify, with the same content as in-process" sh -c \
	"$(declare -f verifies); bin='$bin' pki='$pki'; verifies a1.eml a1.out && verifies a$n.eml an.out && local_() { :; }; cmp -s a1.out auto.out && cmp -s an.out auto.out"
echo "# C_Login calls in the spy log: $(logins)"
check "  ... exactly one C_Login for $n signatures (pkcs11-spy)" test "$(logins)" = 1
via sign --key "$rsa" <msg.eml >stdout.eml
check "sign stdin -> stdout through the agent verifies" verifies stdout.eml so.out
local_ sign --key "$ec" --opaque --in msg.eml --out l-op.eml
via sign --key "$ec" --opaque --in msg.eml --out a-op.eml
check "sign --opaque (EC): both verify to the same content" sh -c \
	"$(declare -f verifies); bin='$bin' pki='$pki'; verifies l-op.eml l1 && verifies a-op.eml a1x && cmp -s l1 a1x"
# Relative paths are the client's: run from another directory.
mkdir -p sub && cp msg.eml sub/
(cd sub && via sign --key "$rsa" --in msg.eml --out rel.eml)
check "relative --in/--out resolve in the client's working directory" verifies sub/rel.eml rel.out
# batch
mkdir -p bin bout
cp msg.eml bin/m1.eml; cp msg.eml bin/m2.eml
expect 0 "sign --batch through the agent" -- via sign --key "$rsa" --batch --out-dir bout bin/m1.eml bin/m2.eml
check "  ... both outputs verify" sh -c "$(declare -f verifies); bin='$bin' pki='$pki'; verifies bout/m1.eml b1 && verifies bout/m2.eml b2"
# decrypt: identical plaintext
"$bin" encrypt --to "$pki/rsa2048.pem" --in msg.eml --out enc.eml
local_ decrypt --key "$rsa" --in enc.eml --out l-dec.eml
via decrypt --key "$rsa" --in enc.eml --out a-dec.eml
check "decrypt: the agent's plaintext is byte-identical to in-process" cmp -s l-dec.eml a-dec.eml
via decrypt --key "$rsa" <enc.eml >a-dec2.eml
check "decrypt stdin -> stdout through the agent" cmp -s l-dec.eml a-dec2.eml
# wrap / unwrap
local_ wrap --key "$rsa" --to "$pki/rsa2048.pem" --in msg.eml --out l-w.eml
via wrap --key "$rsa" --to "$pki/rsa2048.pem" --in msg.eml --out a-w.eml
set +e
local_ unwrap --key "$rsa" --trust "$pki/root.pem" --certs "$pki/chain.pem" --in a-w.eml --out l-uw.eml >l-uw.txt 2>&1; s1=$?
via unwrap --key "$rsa" --trust "$pki/root.pem" --certs "$pki/chain.pem" --in l-w.eml --out a-uw.eml >a-uw.txt 2>&1; s2=$?
set -e
check "wrap/unwrap crosswise (agent <-> in-process): same status ($s1, $s2) and same message" \
	sh -c "[ $s1 = $s2 ] && cmp -s l-uw.eml a-uw.eml"
# Failures: same statuses and messages
for c in "sign --key pkcs11:token=$label;object=nope;type=private --in msg.eml --out f.eml" \
	"decrypt --key $rsa --in msg.eml --out f.eml" \
	"sign --key $rsa --in missing.eml --out f.eml" \
	"sign --key $rsa --digest md5 --in msg.eml"; do
	set +e
	# shellcheck disable=SC2086
	local_ $c >l.out 2>l.err; s1=$?
	# shellcheck disable=SC2086
	via $c >a.out 2>a.err; s2=$?
	set -e
	check "failure '${c%% --in*}...': same exit ($s1/$s2), same stderr, no output file" \
		sh -c "[ $s1 = $s2 ] && [ $s1 != 0 ] && cmp -s l.err a.err && cmp -s l.out a.out && [ ! -e f.eml ]"
done
# receipt: same status and error as in-process on a message that asks for none.
set +e
local_ receipt --key "$rsa" --in a1.eml --out l-r.eml >/dev/null 2>l.err; s1=$?
via receipt --key "$rsa" --in a1.eml --out a-r.eml >/dev/null 2>a.err; s2=$?
set -e
check "receipt: same exit status ($s1/$s2) and stderr" sh -c "[ $s1 = $s2 ] && cmp -s l.err a.err"
expect 0 "agent --status --json" -- "$bin" --json agent --status
check "  ... logged in, operations counted, cache time left" python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
t=[x for x in d["tokens"] if x["label"]==sys.argv[2]]
assert d["logged_in"] and d["operations"]>=10 and 0<d["cache_left"]<=600, d
assert t and t[0]["logged_in"], d' "$tmp/out" "$label"
echo "# C_Login calls after every command: $(logins)"
check "  ... still one C_Login after every command above" test "$(logins)" = 1
check "no PIN in the agent's log" sh -c "! grep -q -- '$pin' '$tmp/agent.log'"

# --- 3. another uid
chmod 711 "$tmp/run"; chmod 666 "$sock" # as a careless user might: SO_PEERCRED still refuses
set +e
setpriv --reuid=nobody --regid=nogroup --clear-groups env P11SMIME_AGENT_SOCK="$sock" \
	"$bin" --agent require sign --key "$rsa" --in /etc/hostname >"$tmp/nobody.out" 2>"$tmp/nobody.err"
s=$?
set -e
check "a client running as nobody is refused (exit $s)" sh -c "[ $s = 3 ] && grep -q 'agent: this agent serves another user' '$tmp/nobody.err'"
check "  ... and the refusal is logged with its uid" grep -q "refused a connection from uid $(id -u nobody)" "$tmp/agent.log"
check "  ... and got no output" test ! -s "$tmp/nobody.out"
sed 's/^/#   nobody: /' "$tmp/nobody.err"
chmod 600 "$sock"; chmod 700 "$tmp/run"
stop_agent
check "agent --stop: the socket is gone" test ! -e "$sock"

# --- 4. SIGKILL mid-run
big=$tmp/big.eml
{ printf 'From: alice-rsa2048@example.org\nSubject: big\n\n'
  { yes 'A line of text, repeated to make a message of a hundred mebibytes.' || true; } |
	head -c 104857600; } >"$big"
echo "previous content" >dest.eml
cp dest.eml expected
start_agent --pin-source "file:$pinfile"
via sign --key "$rsa" --in msg.eml --out warm.eml # log in first
set +e
via sign --key "$rsa" --opaque --in "$big" --out dest.eml 2>kill.err &
cpid=$!
# Kill once the agent is inside the operation (its log says so), well before it can finish.
for _ in $(seq 100); do [ "$(grep -c '^.*: sign for pid' "$tmp/agent.log")" = 2 ] && break; sleep 0.02; done
sleep 0.2
kill -9 "$agent_pid"
wait "$cpid"; s=$?
set -e
wait "$agent_pid" 2>/dev/null || true
agent_pid=
check "agent killed mid-run: the client fails with exit 3 (got $s)" test "$s" = 3
check "  ... saying the agent went away" grep -q "agent closed the connection before it finished" kill.err
check "  ... the destination is untouched" cmp -s dest.eml expected
check "  ... no temporary or partial file is left" sh -c "[ -z \"\$(ls -A | grep '^dest\\.eml\\.')\" ]"
rm -f "$sock"

# --- 5. cache-ttl expiry, and 0
start_agent --pin-source "file:$pinfile" --cache-ttl 2
via sign --key "$rsa" --in msg.eml --out t1.eml
via sign --key "$rsa" --in msg.eml --out t2.eml
check "cache-ttl 2: two signatures in a row, one C_Login" test "$(logins)" = 1
sleep 3.5
"$bin" --json agent --status --socket "$sock" >st.json
check "  ... after 3.5 s the status says logged out" python3 -c '
import json,sys; d=json.load(open(sys.argv[1])); assert not d["logged_in"], d' st.json
via sign --key "$rsa" --in msg.eml --out t3.eml
check "  ... and the next signature logs in again (2 C_Login)" test "$(logins)" = 2
check "  ... the expiry is logged" grep -q "dropping the login (cache time expired)" "$tmp/agent.log"
stop_agent
start_agent --pin-source "file:$pinfile" --cache-ttl 0
for i in 1 2 3; do via sign --key "$rsa" --in msg.eml --out z$i.eml; done
check "cache-ttl 0: three signatures, three C_Login" test "$(logins)" = 3
stop_agent
# max-ttl: the login ends that long after it was made, however often it is used meanwhile.
start_agent --pin-source "file:$pinfile" --cache-ttl 600 --max-ttl 4
via sign --key "$rsa" --in msg.eml --out m1.eml
sleep 1
via sign --key "$rsa" --in msg.eml --out m2.eml
check "max-ttl 4: two signatures 1 s apart, one C_Login" test "$(logins)" = 1
sleep 4
via sign --key "$rsa" --in msg.eml --out m3.eml
check "  ... 5 s after the login, used meanwhile, the next signature logs in again (2 C_Login)" \
	test "$(logins)" = 2
check "  ... the signatures before and after the new login verify" sh -c \
	"$(declare -f verifies); bin='$bin' pki='$pki'; verifies m1.eml m1.out && verifies m3.eml m3.out"
stop_agent

# --- 6. CKA_ALWAYS_AUTHENTICATE
(
	export P11S_PIN=$pin
	pkcs11-tool --module "$mod" --token-label "$label" --login --pin env:P11S_PIN \
		--keypairgen --key-type EC:prime256v1 --id 99 --label aa256 --always-auth --usage-sign
	pkcs11-tool --module "$mod" --token-label "$label" --read-object --type pubkey --id 99 -o aa.der
	openssl pkey -pubin -inform DER -in aa.der -out aa.pem
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout aa.key \
		-subj "/O=p11smime test/CN=always-auth" -out aa.csr
	openssl x509 -req -in aa.csr -CA "$pki/intermediate.pem" -CAkey "$pki/intermediate/intermediate.key" \
		-set_serial 0x99ab -days 30 -force_pubkey aa.pem -out aacert.pem \
		-extfile <(printf 'keyUsage=critical,digitalSignature\nextendedKeyUsage=emailProtection\nsubjectAltName=email:aa@example.org\n')
	openssl x509 -in aacert.pem -outform DER -out aacert.der
	pkcs11-tool --module "$mod" --token-label "$label" --login --pin env:P11S_PIN \
		--write-object aacert.der --type cert --id 99 --label aa256
) >aa.log 2>&1 || { cat aa.log; not_ok "always-authenticate key setup"; finish; }
aa="pkcs11:token=$label;object=aa256;type=private"
start_agent --pin-source "file:$pinfile"
for i in 1 2 3; do via sign --key "$aa" --in msg.eml --out aa$i.eml; done
check "always-authenticate key: 3 signatures through the agent verify" sh -c \
	"$(declare -f verifies); bin='$bin' pki='$pki'; verifies aa1.eml q1 && verifies aa3.eml q3"
echo "# C_Login calls: $(logins) (CKU_CONTEXT_SPECIFIC: $(ctx_logins))"
check "  ... one normal login and one context-specific login per signature (4 C_Login)" \
	sh -c "[ $(logins) = 4 ] && [ $(ctx_logins) = 3 ]"
check "  ... the agent asked its PIN source for every signature" \
	test "$(grep -c "PIN requested for token '$label' (this signature)" "$tmp/agent.log")" = 3
stop_agent

# --- 7. a real pinentry: pinentry-tty in a tmux pane
if ! command -v tmux >/dev/null || [ ! -x /usr/bin/pinentry-tty ]; then
	not_ok "tmux or pinentry-tty missing (Debian packages tmux, pinentry-tty)"; finish
fi
start_agent --pinentry /usr/bin/pinentry-tty
ts=p11s-agent-$$
pane() { tmux capture-pane -p -t "$ts" -S -50; }
wait_pane() { for _ in $(seq 100); do pane | grep -q -- "$1" && return 0; sleep 0.1; done; return 1; }
run_in_tmux() { # run_in_tmux OUT: sign in a fresh tmux session (a terminal for the pinentry)
	rm -f "$tmp/rc"
	tmux kill-session -t "$ts" 2>/dev/null || true
	tmux new-session -d -s "$ts" -x 160 -y 40 "cd '$tmp'; P11SMIME_AGENT_SOCK='$sock' '$bin' --agent require sign --key '$rsa' --in msg.eml --out '$1'; echo \$? >'$tmp/rc'; sleep 30"
}
wait_rc() { for _ in $(seq 100); do [ -s "$tmp/rc" ] && { cat "$tmp/rc"; return 0; }; sleep 0.1; done; echo timeout; }
run_in_tmux pe1.eml
check "pinentry-tty prompts on the client's terminal, naming token and key" sh -c \
	"$(declare -f pane wait_pane); ts='$ts'; wait_pane 'PIN:' && pane | grep -q \"token '$label'\" && pane | grep -q 'object=rsa2048'"
tmux send-keys -t "$ts" "$pin" Enter
check "  ... the PIN typed there signs (exit $(wait_rc))" sh -c "[ \"\$(cat '$tmp/rc')\" = 0 ]"
check "  ... and the signature verifies" verifies pe1.eml pe1.out
check "  ... the PIN is not echoed on the terminal" sh -c "! tmux capture-pane -p -t '$ts' | grep -q -- '$pin'"
run_in_tmux pe2.eml
sleep 1
check "  ... a second signature asks no PIN (exit $(wait_rc))" sh -c "[ \"\$(cat '$tmp/rc')\" = 0 ] && ! tmux capture-pane -p -t '$ts' | grep -q 'PIN:'"
stop_agent
# A wrong PIN: the operation fails, nothing is retried, the next prompt shows the tries left.
start_agent --pinentry /usr/bin/pinentry-tty
run_in_tmux pe3.eml
wait_pane 'PIN:' || true
tmux send-keys -t "$ts" "0000000" Enter
rc3=$(wait_rc)
check "a wrong PIN fails the signature with exit 3 (got $rc3)" test "$rc3" = 3
check "  ... not retried: one C_Login, one PIN request" sh -c \
	"[ $(logins) = 1 ] && [ \$(grep -c 'PIN requested' '$tmp/agent.log' ) -ge 1 ] && [ ! -e pe3.eml ]"
grep -c 'PIN requested' "$tmp/agent.log" >/dev/null
run_in_tmux pe4.eml
check "  ... the next prompt says the PIN was wrong and the tries left (token flags)" sh -c \
	"$(declare -f pane wait_pane); ts='$ts'; wait_pane 'PIN:' && pane | grep -q \"Wrong PIN for token '$label': \""
pane | grep "Wrong PIN" | sed 's/^/#   pinentry: /' || true
tmux send-keys -t "$ts" "$pin" Enter
check "  ... and the right PIN then signs (exit $(wait_rc))" sh -c "[ \"\$(cat '$tmp/rc')\" = 0 ] && [ -s pe4.eml ]"
tmux kill-session -t "$ts" 2>/dev/null || true
stop_agent
finish
