#!/bin/bash
# The real NeoMutt with contrib/neomutt/smime.rc on the test token, driven in tmux
# (docs/mail-clients.md): compose and send a signed message through a fake sendmail into an
# mbox, check it with `openssl cms -verify`, open it (NeoMutt must say "S/MIME signature
# successfully verified"), open a copy with one byte altered (it must not), and open a
# message encrypted to the token's certificate, typing the PIN at NeoMutt's passphrase
# prompt (the --pin-source fd:0 path). Then the same with the agent started as a user does
# (eval "$(p11smime agent --daemon)"): NeoMutt signs and decrypts with the agent's login, one
# C_Login for the whole session (counted through OpenSC's pkcs11-spy); a message composed and
# encrypted from the compose menu (S, e) to the token's certificate ($smime_certificates/.index)
# decrypts in openssl cms with the token key and reopens decrypted. Exit 77 (skip) without
# neomutt or tmux.
set -euo pipefail

for tool in neomutt tmux openssl; do
	command -v "$tool" >/dev/null || { echo "SKIP: $tool not installed" >&2; exit 77; }
done
: "${P11S_BIN:?}" "${P11S_TEST_PKI:?}" "${P11S_TEST_PIN_FILE:?}" "${SOFTHSM2_CONF:?}"
: "${P11S_SOURCE_DIR:?}" "${P11S_TEST_MODULE:?}"
pki=$P11S_TEST_PKI
work=$(mktemp -d)
n_session=0
sock=
cleanup() {
	local i
	if [ -n "${P11SMIME_AGENT_SOCK:-}" ]; then
		"$P11S_BIN" agent --stop >/dev/null 2>&1 || true
	fi
	for i in $(seq 1 "$n_session"); do
		tmux -L "p11smime-mua-$$-$i" kill-server 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$work/screen" ] && cat "$work/screen" >&2; exit 1; }

addr=$(openssl x509 -in "$pki/rsa2048.pem" -noout -email | head -1)
[ -n "$addr" ] || fail "no e-mail address in $pki/rsa2048.pem"
mkdir -p "$work/bin" "$work/home"
ln -s "$P11S_BIN" "$work/bin/p11smime"
cat "$pki/root.pem" "$pki/intermediate.pem" > "$work/ca.pem"

# The fake sendmail: the message goes into an mbox, with its From_ line (RFC 4155).
cat > "$work/bin/sendmail" <<EOS
#!/bin/sh
{ printf 'From p11smime-test %s\n' "\$(date -u '+%a %b %e %H:%M:%S %Y')"; cat; echo; } >> "$work/sent.mbox"
EOS
chmod +x "$work/bin/sendmail"

# The user's muttrc: source the shipped file unchanged, set the few variables it names.
cat > "$work/muttrc" <<EOR
source $P11S_SOURCE_DIR/contrib/neomutt/smime.rc
set smime_default_key="$addr"
set smime_ca_location="$work/ca.pem"
set crypt_autosign=yes
set sendmail="$work/bin/sendmail"
set from="$addr"
set realname="Alice"
set editor="true"
set record=""
set postpone=no
set folder="$work"
set mbox_type=mbox
set header_cache=""
set wait_key=no
set timeout=1
set fast_reply=yes
EOR

env_run="env -i HOME=$work/home TERM=xterm-256color PATH=$work/bin:/usr/bin:/bin \
SOFTHSM2_CONF=$SOFTHSM2_CONF P11SMIME_MODULE=$P11S_TEST_MODULE"

# Start NeoMutt in a tmux server of its own (a new socket each time: a server just killed
# may still hold the old one); wait_for polls the screen for a string.
start() {
	[ -z "$sock" ] || tmux -L "$sock" kill-server 2>/dev/null || true
	n_session=$((n_session + 1))
	sock=p11smime-mua-$$-$n_session
	tmux -L "$sock" new-session -d -x 132 -y 50 "$env_run neomutt -n -F $work/muttrc $*; sleep 60"
}
screen() { tmux -L "$sock" capture-pane -p -S -200 > "$work/screen"; }
wait_for() {
	local i
	for i in $(seq 1 100); do
		screen
		grep -qF -- "$1" "$work/screen" && return 0
		sleep 0.1
	done
	fail "NeoMutt did not show \"$1\""
}
keys() { tmux -L "$sock" send-keys "$@"; }
pin=$(head -1 "$P11S_TEST_PIN_FILE")

# 0. The commands themselves on bad input: one line on stderr, the documented status, no
#    stdout; the message never from stdin (stdin carries the PIN).
expect() { # STATUS CMD... : stdout must stay empty
	local want=$1 rc=0
	shift
	"$@" > "$work/out" 2> "$work/err" < "$P11S_TEST_PIN_FILE" || rc=$?
	[ "$rc" -eq "$want" ] || { cat "$work/err" >&2; fail "$* exited $rc, not $want"; }
	[ ! -s "$work/out" ] || fail "$* wrote to stdout"
	[ "$(wc -l < "$work/err")" -ge 1 ] || fail "$* gave no error"
}
export SOFTHSM2_CONF P11SMIME_MODULE=$P11S_TEST_MODULE
printf 'Content-Type: text/plain\n\nx\n' > "$work/entity"
expect 2 "$P11S_BIN" --pin-source fd:0 mua decrypt --in -
expect 2 "$P11S_BIN" --pin-source fd:0 mua sign --key "$addr" --in -
expect 3 "$P11S_BIN" --pin-source fd:0 mua sign --key nobody@example.org --in "$work/entity"
expect 2 "$P11S_BIN" --pin-source fd:0 mua decrypt --in "$work/entity"
expect 2 "$P11S_BIN" mua verify --sig "$work/entity" --in "$work/entity" -CAfile "$work/ca.pem"
head -1 "$work/err" | grep -qx "Verification failure" || fail "a bad signature's first line"
expect 2 "$P11S_BIN" mua frobnicate --in "$work/entity"
echo "ok 0 - mua on bad input: one-line errors, exit 2/3, nothing on stdout"

# 1. Compose and send a signed message; the PIN is typed at NeoMutt's prompt.
# send_signed PASSPHRASE SUBJECT BODY: compose in NeoMutt, sign (typing PASSPHRASE at its
# prompt), send into an empty mbox; openssl cms -verify must accept it with BODY as content.
send_signed() {
	: > "$work/sent.mbox"
	printf 'From: %s\nTo: bob@example.org\nSubject: %s\n\n%s\n' "$addr" "$2" "$3" > "$work/draft"
	start -H "$work/draft"
	wait_for "Security: Sign (S/MIME)"
	keys y
	wait_for "Enter S/MIME passphrase:"
	keys "$1" Enter
	wait_for "Mail sent"
	[ -s "$work/sent.mbox" ] || fail "nothing reached the mbox"
	grep -q '^Content-Type: multipart/signed' "$work/sent.mbox" || fail "the sent message is not multipart/signed"
	grep -qF "$pin" "$work/sent.mbox" && fail "the PIN is in the message"
	tail -n +2 "$work/sent.mbox" > "$work/sent.eml"
	openssl cms -verify -in "$work/sent.eml" -CAfile "$work/ca.pem" -purpose smimesign \
		-out "$work/content" 2> "$work/openssl.err" || { cat "$work/openssl.err" >&2; fail "openssl cms -verify refused NeoMutt's message"; }
	grep -q "Verification successful" "$work/openssl.err" || fail "openssl did not verify"
	grep -qF "$3" "$work/content" || fail "openssl's content differs"
}
send_signed "$pin" "signed on the token" "Hello from NeoMutt, signed on the token."
echo "ok 1 - NeoMutt sent a message signed on the token; openssl cms -verify accepts it"

# 2. Open it: NeoMutt runs smime_verify_command and reports a good signature.
start -f "$work/sent.mbox"
wait_for "signed on the token"
keys Enter
wait_for "S/MIME signature successfully verified"
# The status line can be drawn before the body (CI run 27 under ASan): wait for the body too.
wait_for "Hello from NeoMutt, signed on the token."
echo "ok 2 - NeoMutt shows \"S/MIME signature successfully verified\""

# 3. One byte of the signed body altered: NeoMutt must report a bad signature.
sed 's/^Hello from NeoMutt, signed/Hello from NeoMutt, siGned/' "$work/sent.mbox" > "$work/altered.mbox"
cmp -s "$work/sent.mbox" "$work/altered.mbox" && fail "the alteration did not happen"
start -f "$work/altered.mbox"
wait_for "signed on the token"
keys Enter
wait_for "S/MIME signature could NOT be verified"
wait_for "content-altered"
grep -qF "successfully verified" "$work/screen" && fail "an altered message verified"
echo "ok 3 - one altered byte: \"S/MIME signature could NOT be verified\" (content-altered)"

# 4. A message encrypted to the token's certificate opens decrypted; the PIN is typed at
#    NeoMutt's passphrase prompt and reaches p11smime on stdin (--pin-source fd:0).
#    AES-CBC only: NeoMutt 20220429 does not know RFC 8551's smime-type=authEnveloped-data
#    (AES-GCM) and shows such a part as unsupported (docs/mail-clients.md).
for cipher in aes-256-cbc; do
	printf 'From: bob@example.org\nTo: %s\nSubject: secret %s\nContent-Type: text/plain\n\nThe secret word is %s-tangerine.\n' \
		"$addr" "$cipher" "$cipher" > "$work/plain.eml"
	"$P11S_BIN" encrypt --cipher "$cipher" --to "$pki/rsa2048.pem" --in "$work/plain.eml" \
		--out "$work/enc.eml"
	grep -q "tangerine" "$work/enc.eml" && fail "the plaintext is in the encrypted message"
	{ echo "From bob@example.org Sun Dec  6 00:00:00 2026"; cat "$work/enc.eml"; echo; } > "$work/enc.mbox"
	grep -q '^Subject: \[\.\.\.\]$' "$work/enc.eml" || fail "the outer Subject is not obscured (RFC 9788)"
	start -f "$work/enc.mbox"
	# NeoMutt 20220429 knows nothing of RFC 9788: its index shows the obscured Subject.
	wait_for "[...]"
	keys Enter
	wait_for "Enter S/MIME passphrase:"
	keys "$pin" Enter
	wait_for "The secret word is $cipher-tangerine."
	grep -qF "S/MIME encrypted" "$work/screen" || fail "NeoMutt did not mark the part encrypted"
	echo "ok 4 - NeoMutt decrypted a message ($cipher) with the token key, PIN via its prompt"
done

# 5. A wrong PIN at the prompt: no plaintext, and the token's refusal, not a crash.
start -f "$work/enc.mbox"
wait_for "[...]"
keys Enter
wait_for "Enter S/MIME passphrase:"
keys "0000${pin}x" Enter
wait_for "Could not copy message" # NeoMutt 20220429: the failed decryption leaves no message
grep -qF "tangerine" "$work/screen" && fail "decrypted with a wrong PIN"
echo "ok 5 - a wrong PIN decrypts nothing"

# 6. The agent, started as the user does: eval "$(p11smime agent --daemon)". From now on the
#    smime.rc commands run in the agent (--agent auto finds it through P11SMIME_AGENT_SOCK):
#    whatever is typed at NeoMutt's passphrase prompt is not used (here "not-the-pin"), the
#    agent logs in once with its own PIN source, and the whole session - a message signed and
#    sent, a signed message read, an encrypted one opened - makes exactly one C_Login.
spy=
for f in /usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so /usr/lib/x86_64-linux-gnu/pkcs11-spy.so; do
	[ -e "$f" ] && { spy=$f; break; }
done
[ -n "$spy" ] || fail "pkcs11-spy.so missing (Debian package opensc-pkcs11)"
mkdir -p "$work/run"
chmod 700 "$work/run"
: > "$work/spy.log"
eval "$(env XDG_RUNTIME_DIR="$work/run" PKCS11SPY="$P11S_TEST_MODULE" PKCS11SPY_OUTPUT="$work/spy.log" \
	"$P11S_BIN" --module "$spy" --pin-source "file:$P11S_TEST_PIN_FILE" agent --daemon \
	--log "$work/agent.log")"
[ -S "${P11SMIME_AGENT_SOCK:-}" ] || fail "agent --daemon printed no socket"
env_run="$env_run P11SMIME_AGENT_SOCK=$P11SMIME_AGENT_SOCK"
logins() { grep -c '^[0-9]*: C_Login$' "$work/spy.log" || true; }

send_signed "not-the-pin" "signed via the agent" "Hello from NeoMutt, signed through the agent."
grep -q '^p11smime agent\[[0-9]*\]: mua for pid' "$work/agent.log" || fail "the signature was not made in the agent"
echo "ok 6 - with the agent: NeoMutt sent a signed message, no PIN typed; openssl verifies it"

start -f "$work/sent.mbox"
wait_for "signed via the agent"
keys Enter
wait_for "S/MIME signature successfully verified"
echo "ok 7 - with the agent: NeoMutt shows \"S/MIME signature successfully verified\""

start -f "$work/enc.mbox"
wait_for "[...]"
keys Enter
wait_for "Enter S/MIME passphrase:"
keys "not-the-pin" Enter
wait_for "The secret word is aes-256-cbc-tangerine."
echo "ok 8 - with the agent: NeoMutt decrypted a message, no PIN typed"

# 9. Encrypt from the compose menu: the security menu (S), "(e)ncrypt", send. NeoMutt finds the
#    recipient's certificate in $smime_certificates/.index (the format smime_keys writes:
#    mailbox, certificate file, label, issuer hash, trust, purpose) and runs
#    smime_encrypt_command = `p11smime mua encrypt --in %f %c`. The sent message must decrypt
#    with the token key in openssl cms (libp11's engine) and reopen decrypted in NeoMutt.
mkdir -p "$work/certs"
h=$(openssl x509 -in "$pki/rsa2048.pem" -noout -hash)
ih=$(openssl x509 -in "$pki/rsa2048.pem" -noout -issuer_hash)
cp "$pki/rsa2048.pem" "$work/certs/$h.0"
# NeoMutt also encrypts to the sender ($smime_self_encrypt) with the certificate file named
# by $smime_default_key: here the address, so a copy under that name.
cp "$pki/rsa2048.pem" "$work/certs/$addr"
printf '%s %s.0 alice %s t e\n' "$addr" "$h" "$ih" > "$work/certs/.index"
printf 'set smime_certificates="%s"\n' "$work/certs" >> "$work/muttrc"
: > "$work/sent.mbox"
printf 'From: %s\nTo: %s\nSubject: %s\n\n%s\n' "$addr" "$addr" "encrypted in compose" \
	"The compose menu encrypted this: kumquat." > "$work/draft"
start -H "$work/draft"
wait_for "Security: Sign (S/MIME)"
keys S
wait_for "(e)ncrypt"
keys e
wait_for "Security: Encrypt (S/MIME)"
keys y
wait_for "Mail sent"
grep -q 'application/\(x-\)\?pkcs7-mime' "$work/sent.mbox" || fail "the sent message is not S/MIME encrypted"
grep -qF "kumquat" "$work/sent.mbox" && fail "the plaintext is in the sent message"
tail -n +2 "$work/sent.mbox" > "$work/sent-enc.eml"
printf '%s' "$pin" > "$work/engine.pin"
chmod 600 "$work/engine.pin"
PKCS11_MODULE_PATH=$P11S_TEST_MODULE openssl cms -decrypt -engine pkcs11 -keyform engine \
	-inkey "pkcs11:object=rsa2048;type=private?pin-source=file:$work/engine.pin" \
	-recip "$pki/rsa2048.pem" -in "$work/sent-enc.eml" -out "$work/openssl-plain" \
	2> "$work/openssl.err" || { cat "$work/openssl.err" >&2; fail "openssl cms -decrypt refused NeoMutt's message"; }
grep -qF "kumquat" "$work/openssl-plain" || fail "openssl's plaintext differs"
echo "ok 9 - NeoMutt encrypted a composed message to the token's certificate; openssl cms -decrypt (token key, engine) reads it"
start -f "$work/sent.mbox"
wait_for "encrypted in compose"
keys Enter
wait_for "Enter S/MIME passphrase:"
keys "not-the-pin" Enter
wait_for "The compose menu encrypted this: kumquat."
echo "ok 10 - reopened in NeoMutt, it decrypts through the agent"

echo "# C_Login calls through the agent for the whole NeoMutt session: $(logins)"
[ "$(logins)" = 1 ] || { cat "$work/agent.log" >&2; fail "$(logins) C_Login calls, not 1"; }
grep -qF "$(head -1 "$P11S_TEST_PIN_FILE")" "$work/agent.log" && fail "the PIN is in the agent's log"
echo "ok 11 - one C_Login for signing, verifying, encrypting and decrypting in NeoMutt (pkcs11-spy)"
"$P11S_BIN" agent --stop >/dev/null
unset P11SMIME_AGENT_SOCK
