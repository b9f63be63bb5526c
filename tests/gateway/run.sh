#!/bin/bash
# p11smime-gateway end to end, with a real Postfix on loopback (issue 6).
#
# A private Postfix instance (own config, queue and data directories under a temp dir) has two
# smtpd listeners on 127.0.0.1:
#   IN    accepts test mail into the queue and relays it (content_filter) to FILT;
#   FILT  runs the gateway as smtpd_milters (milter_default_action = tempfail) and delivers
#         with virtual(8) to a maildir.
# So a tempfail at FILT leaves the message deferred in IN's queue (postqueue -p), and a flush
# after the fault is fixed delivers it: nothing lost. A client that talks to FILT directly sees
# the milter's answer at SMTP (the reject test). A third listener
#   UNIX  like FILT, with the milter on a unix socket (smtpd_milters = unix:PATH)
# serves the scenarios run with a second and third gateway configuration (oversize and reject;
# unix socket, several sessions and workers under load, outbound encryption).
#
# usage: run.sh GATEWAY_BIN   (environment from p11s_token_test: SOFTHSM2_CONF, P11S_TEST_*,
#                              P11S_BIN)
set -u
GW=${1:?usage: run.sh GATEWAY_BIN}
here=$(cd "$(dirname "$0")" && pwd)
. "$P11S_SOURCE_DIR/tests/integration/lib.sh"
# lib.sh's expect leaves `set -e` on; this suite checks every step itself and must reach its
# cleanup and its summary, so expect is redefined without it.
expect() {
	local want=$1 desc=$2 got
	shift 3
	"$@" >"$tmp/out" 2>"$tmp/err"
	got=$?
	if [ "$got" = "$want" ]; then
		ok "$desc"
	else
		not_ok "$desc (exit $got, expected $want)"
		sed 's/^/#   stderr: /' "$tmp/err" | head -5
	fi
}

if [ "$(id -u)" != 0 ] || ! command -v postfix >/dev/null || ! command -v python3 >/dev/null; then
	echo "needs root, postfix and python3 (CI installs them: ci/deps.sh)"
	if [ -n "${CI:-}" ]; then exit 1; fi
	exit 77
fi

W=$(mktemp -d /tmp/p11s-gw.XXXXXX)
chmod 755 "$W"
PKI=$P11S_TEST_PKI
gwpid=
cleanup() {
	[ -n "$gwpid" ] && kill "$gwpid" 2>/dev/null && wait "$gwpid" 2>/dev/null
	postfix -c "$W/etc" stop >/dev/null 2>&1
	# master(8) exits asynchronously; give it a moment before removing its queue.
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		[ -e "$W/queue/pid/master.pid" ] && kill -0 "$(tr -d ' ' <"$W/queue/pid/master.pid")" \
			2>/dev/null || break
		sleep 0.5
	done
	if [ "${P11S_KEEP:-}" = 1 ]; then echo "# kept $W"; else rm -rf "$W"; fi
	rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
P_IN=$(free_port); P_FILT=$(free_port); P_GW=$(free_port); P_UNIX=$(free_port)
while [ "$P_FILT" = "$P_IN" ]; do P_FILT=$(free_port); done
while [ "$P_GW" = "$P_IN" ] || [ "$P_GW" = "$P_FILT" ]; do P_GW=$(free_port); done
while [ "$P_UNIX" = "$P_IN" ] || [ "$P_UNIX" = "$P_FILT" ] || [ "$P_UNIX" = "$P_GW" ]; do
	P_UNIX=$(free_port)
done

# ---- Postfix -------------------------------------------------------------------------------
mkdir -p "$W/etc" "$W/queue" "$W/data" "$W/mail" "$W/spool" "$W/milter" "$W/certs"
chown nobody:nogroup "$W/mail"
chown postfix "$W/data"
cp /etc/postfix/master.cf "$W/etc/master.cf"
cp /etc/postfix/dynamicmaps.cf "$W/etc/" 2>/dev/null || true
cat >"$W/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $W/queue
data_directory = $W/data
mail_owner = postfix
setgid_group = postdrop
myhostname = gw.test
mydomain = gw.test
myorigin = gw.test
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
alias_maps =
alias_database =
local_recipient_maps =
biff = no
virtual_mailbox_domains = example.org example.com
virtual_mailbox_base = $W/mail
virtual_mailbox_maps = static:box/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 100
milter_default_action = tempfail
milter_protocol = 6
maillog_file = $W/maillog
maillog_file_prefixes = $W
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
delay_warning_time = 0
smtp_dns_support_level = disabled
smtpd_client_connection_count_limit = 0
default_process_limit = 20
message_size_limit = 104857600
virtual_mailbox_limit = 0
EOF
# No chroot (the queue directory is ours); the stock "smtp inet" listener is replaced by ours.
postconf -c "$W/etc" -M# smtp/inet >/dev/null
postconf -c "$W/etc" -F '*/*/chroot = n' >/dev/null
cat >>"$W/etc/master.cf" <<EOF
127.0.0.1:$P_IN inet n - n - - smtpd
  -o content_filter=smtp:[127.0.0.1]:$P_FILT
127.0.0.1:$P_FILT inet n - n - - smtpd
  -o content_filter=
  -o myhostname=filter.gw.test
  -o smtpd_milters=inet:127.0.0.1:$P_GW
127.0.0.1:$P_UNIX inet n - n - - smtpd
  -o content_filter=
  -o myhostname=filter.gw.test
  -o smtpd_milters=unix:$W/milter/gw.sock
EOF
postfix -c "$W/etc" check >"$W/check.log" 2>&1 || { cat "$W/check.log" "$W/maillog" 2>/dev/null; exit 1; }
if ! postfix -c "$W/etc" start >"$W/start.log" 2>&1; then
	cat "$W/start.log" "$W/maillog" 2>/dev/null
	exit 1
fi
ok "private Postfix started (in :$P_IN, filter :$P_FILT, unix-milter filter :$P_UNIX, milter :$P_GW)"

# ---- the gateway ---------------------------------------------------------------------------
ln -s "$P11S_TEST_MODULE" "$W/module.so"
cat >"$W/gateway.conf" <<EOF
[milter]
socket = inet:$P_GW@127.0.0.1
workers = 4
max-message-size = 2M
spool = $W/spool
log = stderr

[token]
module = $W/module.so
uri = pkcs11:token=$P11S_TEST_TOKEN
pin-source = file:$P11S_TEST_PIN_FILE
retry = 1

[inbound]
decrypt = yes
verify = yes
trust = $PKI/root.pem
undecryptable = pass
authserv-id = gw.test

[outbound]
sign = alice-rsa2048@example.org pkcs11:token=$P11S_TEST_TOKEN;object=rsa2048;type=private
EOF

start_gw() { # start_gw [CONFIG]
	local conf=${1:-$W/gateway.conf} n
	n=$(grep -c "listening on" "$W/gateway.log" 2>/dev/null)
	# P11S_GW_WRAPPER: e.g. "valgrind -q" or a debugger, for a failing run.
	${P11S_GW_WRAPPER:-} "$GW" --config "$conf" >>"$W/gateway.log" 2>&1 &
	gwpid=$!
	for _ in $(seq 1 50); do
		[ "$(grep -c "listening on" "$W/gateway.log" 2>/dev/null)" -gt "${n:-0}" ] && return 0
		kill -0 "$gwpid" 2>/dev/null || break
		sleep 0.1
	done
	cat "$W/gateway.log"
	return 1
}
stop_gw() {
	kill "$gwpid" 2>/dev/null
	wait "$gwpid" 2>/dev/null
	gwpid=
}

expect 2 "an unknown configuration key is an error at start" -- \
	sh -c "sed 's/^workers = 4/wrokers = 4/' '$W/gateway.conf' >'$W/bad.conf' && '$GW' --config '$W/bad.conf'"
expect 2 "a pin-source of env: is refused" -- \
	sh -c "sed 's/^pin-source = .*/pin-source = env:PIN/' '$W/gateway.conf' >'$W/bad.conf' && '$GW' --config '$W/bad.conf'"
start_gw && ok "gateway started" || not_ok "gateway started"

# ---- messages ------------------------------------------------------------------------------
msg() { # msg FILE FROM TO SUBJECT [BODY]
	printf 'From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@gw.test>\r\nDate: %s\r\n\r\n%s\r\n' \
		"$2" "$3" "$4" "$4" "$(date -R)" "${5:-Hello from the gateway test ($4).}" >"$1"
}
send() { python3 "$here/send.py" "$P_IN" "$@"; }
# delivered SUBJECT: the delivered file holding Subject: SUBJECT, or msg()'s Message-ID for
# it (an encrypted message that stays encrypted shows the obscured Subject "[...]" of RFC 9788,
# the default of p11smime encrypt); waits up to 30 s
delivered() {
	local f
	for _ in $(seq 1 150); do
		f=$(grep -l -x -e "Subject: $1" -e "Message-ID: <$1@gw.test>" "$W/mail/box/new/"* \
			2>/dev/null | head -1)
		if [ -n "$f" ]; then echo "$f"; return 0; fi
		sleep 0.2
	done
	return 1
}
# deferred SUBJECT-ID: the message is in the Postfix queue (deferred), waits up to 20 s
deferred() {
	for _ in $(seq 1 100); do
		# Postfix's smtp client got the 4xx of the filter smtpd and kept the message.
		if postqueue -c "$W/etc" -j 2>/dev/null | grep -q '"delay_reason": *"[^"]*said: 4'; then
			return 0
		fi
		sleep 0.2
	done
	postqueue -c "$W/etc" -j | head -3 | sed 's/^/#   queue: /' >&2
	return 1
}
queue_empty() { [ -z "$(postqueue -c "$W/etc" -j 2>/dev/null)" ]; }

# 1. encrypted to the token's RSA certificate: delivered decrypted.
msg "$tmp/plain1" sender@example.com alice-rsa2048@example.org enc-rsa "secret text 4711"
"$P11S_BIN" encrypt --to "$PKI/rsa2048.pem" --in "$tmp/plain1" --out "$tmp/enc1"
send sender@example.com alice-rsa2048@example.org "$tmp/enc1"
if f=$(delivered enc-rsa); then
	check "encrypted (RSA) message is delivered decrypted" grep -q "secret text 4711" "$f"
	check "decrypted message has no pkcs7-mime left" sh -c "! grep -qi 'pkcs7-mime' '$f'"
	check "decrypted message carries the gateway header" \
		grep -q "^X-P11smime-Gateway: decrypted; content=authEnveloped-data" "$f"
else
	not_ok "encrypted (RSA) message delivered"
fi

# 2. encrypted to the token's EC certificate (ECDH on the token).
msg "$tmp/plain2" sender@example.com alice-ec256@example.org enc-ec "ec secret 0815"
"$P11S_BIN" encrypt --to "$PKI/ec256.pem" --in "$tmp/plain2" --out "$tmp/enc2"
send sender@example.com alice-ec256@example.org "$tmp/enc2"
if f=$(delivered enc-ec); then
	check "encrypted (EC) message is delivered decrypted" grep -q "ec secret 0815" "$f"
else
	not_ok "encrypted (EC) message delivered"
fi

# 3. encrypted to a certificate whose key is not on the token: passed unchanged, with why.
msg "$tmp/plain3" sender@example.com revoked@example.org enc-nokey
"$P11S_BIN" encrypt --to "$PKI/keyenc-only.pem" --in "$tmp/plain3" --out "$tmp/enc3" 2>/dev/null ||
	"$P11S_BIN" encrypt --to "$PKI/revoked.pem" --in "$tmp/plain3" --out "$tmp/enc3"
send sender@example.com revoked@example.org "$tmp/enc3"
if f=$(delivered enc-nokey); then
	check "message for another key passes encrypted" grep -qi "application/pkcs7-mime" "$f"
	check "... with a header saying no key" \
		grep -q "^X-P11smime-Gateway: not decrypted (no key for any recipient)" "$f"
else
	not_ok "message for another key delivered"
fi

# 4. corrupt ciphertext for our key: passed unchanged with the uniform reason.
python3 - "$tmp/enc1" "$tmp/enc4" <<'EOF'
import sys
lines = open(sys.argv[1], "rb").read().split(b"\n")
lines = [l.replace(b"enc-rsa", b"enc-corrupt") for l in lines]
body = [i for i, l in enumerate(lines) if len(l.strip()) >= 60]
i = body[len(body) - 3]  # near the end: the encrypted content, not the RecipientInfo
l = bytearray(lines[i])
l[10] = ord("A") if l[10] != ord("A") else ord("B")
lines[i] = bytes(l)
open(sys.argv[2], "wb").write(b"\n".join(lines))
EOF
send sender@example.com alice-rsa2048@example.org "$tmp/enc4"
if f=$(delivered enc-corrupt); then
	check "corrupt encrypted message passes with the uniform reason" \
		grep -q "^X-P11smime-Gateway: not decrypted (decryption failed)" "$f"
	check "... and no plaintext" sh -c "! grep -q 'secret text 4711' '$f'"
else
	not_ok "corrupt encrypted message delivered"
fi

# 5. a signed message (not from a configured sender) gets the verdict header.
msg "$tmp/plain5" alice-ec256@example.org bob@example.org signed-ok
"$P11S_BIN" --module "$P11S_TEST_MODULE" --pin-source "file:$P11S_TEST_PIN_FILE" sign \
	--key "pkcs11:token=$P11S_TEST_TOKEN;object=ec256;type=private" \
	--chain "$PKI/intermediate.pem" --in "$tmp/plain5" --out "$tmp/signed5"
send alice-ec256@example.org bob@example.org "$tmp/signed5"
if f=$(delivered signed-ok); then
	# p11smime sign protects the header fields by default (RFC 9788): the comment says so.
	check "signed message: Authentication-Results smime=pass with the signer" \
		grep -q "^Authentication-Results: gw.test; smime=pass (protected headers hp=clear) body.smime-identifier=alice-ec256@example.org" "$f"
else
	not_ok "signed message delivered"
fi

# 6. altered signed content, plus a forged Authentication-Results claiming our authserv-id.
sed -e 's/signed-ok/signed-bad/' -e 's/Hello from/Hullo from/' "$tmp/signed5" |
	sed '1i Authentication-Results: gw.test; smime=pass body.smime-identifier=forged@example.org' \
	>"$tmp/signed6"
send alice-ec256@example.org bob@example.org "$tmp/signed6"
if f=$(delivered signed-bad); then
	check "altered signed message: smime=fail" \
		grep -q "^Authentication-Results: gw.test; smime=fail (protected headers hp=clear[^)]*) reason=.*content-altered" "$f"
	check "forged Authentication-Results with our authserv-id removed" \
		sh -c "! grep -q 'forged@example.org' '$f'"
else
	not_ok "altered signed message delivered"
fi

# 6b. every layer (issue 23): a triple wrap whose outer signed content was altered (a header
#     field added to the signed part, as a list server might) is still decrypted for the
#     recipient; the marker names the failed outer layer, the inner signature gets the A-R.
msg "$tmp/plain6b" alice-ec256@example.org alice-rsa2048@example.org triple-bad "inner words 6b"
"$P11S_BIN" --module "$P11S_TEST_MODULE" --pin-source "file:$P11S_TEST_PIN_FILE" wrap --triple \
	--key "pkcs11:token=$P11S_TEST_TOKEN;object=ec256;type=private" --chain "$PKI/intermediate.pem" \
	--to "$PKI/rsa2048.pem" --in "$tmp/plain6b" --out "$tmp/triple6b"
python3 - "$tmp/triple6b" "$tmp/triple6b-bad" <<'EOF'
import sys
d = open(sys.argv[1], 'rb').read()
i = d.index(b'Content-Type: application/pkcs7-mime')
open(sys.argv[2], 'wb').write(d[:i] + b'X-List-Footer: added\r\n' + d[i:])
EOF
send alice-ec256@example.org alice-rsa2048@example.org "$tmp/triple6b-bad"
if f=$(delivered triple-bad); then
	check "broken outer signature: still delivered decrypted" grep -q "inner words 6b" "$f"
	check "... the marker names the failed outer layer" \
		grep -q "^X-P11smime-Gateway: decrypted; .*; layer1=signed:fail(content-altered)" "$f"
	check "... the inner signature: smime=pass" \
		grep -q "^Authentication-Results: gw.test; smime=pass (protected headers hp=cipher) body.smime-identifier=alice-ec256@example.org" "$f"
else
	not_ok "triple wrap with a broken outer signature delivered"
fi

# 7. outbound: a configured sender's mail is signed with the token key; openssl verifies it.
msg "$tmp/plain7" alice-rsa2048@example.org bob@example.com out-signed "Signed by the gateway."
send alice-rsa2048@example.org bob@example.com "$tmp/plain7"
if f=$(delivered out-signed); then
	check "outbound message is multipart/signed" grep -qi "multipart/signed" "$f"
	expect 0 "outbound signature verifies with openssl cms" -- \
		openssl cms -verify -in "$f" -CAfile "$PKI/chain.pem" -out "$tmp/out7"
	check "... and holds the text" grep -q "Signed by the gateway." "$tmp/out7"
	expect 0 "outbound signature verifies with p11smime verify" -- \
		"$P11S_BIN" verify --trust "$PKI/root.pem" --certs "$PKI/intermediate.pem" --in "$f"
else
	not_ok "outbound message delivered"
fi

# 8. the gateway stopped: Postfix defers (milter_default_action = tempfail); started: delivered.
stop_gw
msg "$tmp/plain8" sender@example.com alice-rsa2048@example.org gw-down "while the gateway was down"
"$P11S_BIN" encrypt --to "$PKI/rsa2048.pem" --in "$tmp/plain8" --out "$tmp/enc8"
send sender@example.com alice-rsa2048@example.org "$tmp/enc8"
check "gateway stopped: the message is deferred in the Postfix queue" deferred
start_gw || not_ok "gateway restarted"
postqueue -c "$W/etc" -f
if f=$(delivered gw-down); then
	check "after restart the queued message is delivered decrypted" \
		grep -q "while the gateway was down" "$f"
else
	not_ok "queued message delivered after restart"
fi

# 9. the token module unavailable: tempfail, kept in the queue; back: delivered.
stop_gw
rm -f "$W/module.so"
ln -s /nonexistent/libsofthsm2.so "$W/module.so"
start_gw || not_ok "gateway started without its token"
msg "$tmp/plain9" sender@example.com alice-rsa2048@example.org token-down "while the token was away"
"$P11S_BIN" encrypt --to "$PKI/rsa2048.pem" --in "$tmp/plain9" --out "$tmp/enc9"
send sender@example.com alice-rsa2048@example.org "$tmp/enc9"
check "token unavailable: the message is deferred in the Postfix queue" deferred
check "... and the gateway logged tempfail" grep -q "outcome=tempfail token unavailable" "$W/gateway.log"
rm -f "$W/module.so"
ln -s "$P11S_TEST_MODULE" "$W/module.so"
sleep 1.2
postqueue -c "$W/etc" -f
if f=$(delivered token-down); then
	check "token back: the queued message is delivered decrypted" \
		grep -q "while the token was away" "$f"
else
	not_ok "queued message delivered once the token is back"
fi

# 10. counters on SIGUSR1, reload on SIGHUP.
kill -USR1 "$gwpid"
sleep 0.3
check "SIGUSR1 logs the counters" grep -q "counters: messages=" "$W/gateway.log"
kill -HUP "$gwpid"
for _ in $(seq 1 50); do grep -q reloaded "$W/gateway.log" && break; sleep 0.2; done
check "SIGHUP reloads (the gateway keeps running)" sh -c "kill -0 $gwpid && grep -q reloaded '$W/gateway.log'"

# 11. load: N encrypted messages, PAR at a time, all delivered decrypted, exactly once.
N=${P11S_GW_LOAD:-500}
PAR=8
printf 'From: sender@example.com\r\nTo: alice-rsa2048@example.org\r\nSubject: load TEMPLATE\r\nMessage-ID: <load-TEMPLATE@gw.test>\r\n\r\nload body\r\n' >"$tmp/load.txt"
# --no-protect-headers: send.py numbers the copies in their outer fields, and a protected
# Message-ID inside (RFC 9788, the default) would give every decrypted copy the template's.
"$P11S_BIN" encrypt --no-protect-headers --to "$PKI/rsa2048.pem" --in "$tmp/load.txt" \
	--out "$tmp/load.eml"
python3 "$here/send.py" --load "$P_IN" sender@example.com alice-rsa2048@example.org "$N" "$PAR" \
	"$tmp/load.eml" >"$tmp/ids" 2>"$tmp/load.err"
check "load: all $N messages accepted" test "$(wc -l <"$tmp/ids")" -eq "$N"
for _ in $(seq 1 300); do
	n=$(grep -h -l "^Subject: load " "$W/mail/box/new/"* 2>/dev/null | wc -l)
	[ "$n" -ge "$N" ] && queue_empty && break
	sleep 0.2
done
grep -h -i "^Message-ID: <load-" "$W/mail/box/new/"* | sort >"$tmp/got"
check "load: $N delivered, none lost" test "$(sort -u "$tmp/got" | wc -l)" -eq "$N"
check "load: none duplicated" test "$(wc -l <"$tmp/got")" -eq "$N"
check "load: every one decrypted" test "$(grep -l '^X-P11smime-Gateway: decrypted' \
	$(grep -l '^Subject: load ' "$W/mail/box/new/"*) | wc -l)" -eq "$N"

# 12. SIGTERM drains and exits.
kill -TERM "$gwpid"
if wait "$gwpid"; then ok "SIGTERM: clean exit"; else not_ok "SIGTERM: clean exit"; fi
gwpid=
check "no spool files left behind" sh -c "[ -z \"\$(ls -A '$W/spool')\" ]"

# body FILE: the body (after the first blank line), line ends without CR.
body() { tr -d '\r' <"$1" | sed '1,/^$/d'; }

# ---- second configuration: a small size limit, undecryptable = reject ----------------------
sed -e 's/^max-message-size = .*/max-message-size = 64k/' \
	-e 's/^undecryptable = pass/undecryptable = reject/' "$W/gateway.conf" >"$W/gateway-b.conf"
start_gw "$W/gateway-b.conf" && ok "gateway started (max-message-size = 64k, undecryptable = reject)" ||
	not_ok "gateway started with the second configuration"

# 13. over the size limit: delivered exactly as sent (encrypted, not decrypted, no header).
{
	printf 'From: sender@example.com\r\nTo: alice-rsa2048@example.org\r\nSubject: oversize\r\nMessage-ID: <oversize@gw.test>\r\n\r\n'
	for i in $(seq 1 1500); do printf 'line %05d of a message larger than the limit of 64k\r\n' "$i"; done
} >"$tmp/plain13"
"$P11S_BIN" encrypt --to "$PKI/rsa2048.pem" --in "$tmp/plain13" --out "$tmp/enc13"
check "oversize test message is over 64k" test "$(stat -c %s "$tmp/enc13")" -gt 65536
send sender@example.com alice-rsa2048@example.org "$tmp/enc13"
if f=$(delivered oversize); then
	check "oversize message is delivered still encrypted" grep -qi "application/pkcs7-mime" "$f"
	check "... with the body exactly as sent" cmp -s <(body "$tmp/enc13") <(body "$f")
	check "... and no gateway header" sh -c "! grep -q '^X-P11smime-Gateway' '$f'"
	check "... the gateway logged outcome=oversize" grep -q "outcome=oversize" "$W/gateway.log"
else
	not_ok "oversize message delivered"
fi

# 14. undecryptable = reject: at SMTP (straight to the milter's smtpd), a 5xx for a message
#     for another key and for a corrupt one; a decryptable one still goes through.
sed 's/enc-nokey/rej-nokey/' "$tmp/enc3" >"$tmp/enc14a"
sed 's/enc-corrupt/rej-corrupt/' "$tmp/enc4" >"$tmp/enc14b"
expect 5 "undecryptable = reject: no key for any recipient is a 5xx at SMTP" -- \
	python3 "$here/send.py" "$P_FILT" sender@example.com revoked@example.org "$tmp/enc14a"
check "... with the uniform reply" grep -q "^554 .*message cannot be processed" "$tmp/err"
expect 5 "undecryptable = reject: a corrupt message is a 5xx at SMTP" -- \
	python3 "$here/send.py" "$P_FILT" sender@example.com alice-rsa2048@example.org "$tmp/enc14b"
msg "$tmp/plain14" sender@example.com alice-rsa2048@example.org rej-ok "decryptable under reject"
"$P11S_BIN" encrypt --to "$PKI/rsa2048.pem" --in "$tmp/plain14" --out "$tmp/enc14c"
expect 0 "undecryptable = reject: a decryptable message is accepted" -- \
	python3 "$here/send.py" "$P_FILT" sender@example.com alice-rsa2048@example.org "$tmp/enc14c"
if f=$(delivered rej-ok); then
	check "... and delivered decrypted" grep -q "decryptable under reject" "$f"
else
	not_ok "decryptable message delivered under undecryptable = reject"
fi
check "rejected messages were never delivered" \
	sh -c "! grep -l -x -e 'Subject: rej-nokey' -e 'Subject: rej-corrupt' '$W/mail/box/new/'* >/dev/null 2>&1"
stop_gw

# ---- third configuration: unix socket, 2 sessions, 4 workers, outbound encryption -----------
# The recipient's certificate in [outbound] certs (a software key the test PKI ships, so that
# openssl can decrypt what was delivered).
cp "$PKI/keyenc-only.pem" "$W/certs/bob@example.com.pem"
sed -e "s|^socket = .*|socket = unix:$W/milter/gw.sock|" -e 's/^workers = .*/workers = 4/' \
	-e 's/^retry = 1/retry = 1\nsessions = 2/' "$W/gateway.conf" >"$W/gateway-c.conf"
# With an audit log (docs/evidence.md): a periodic checkpoint every 3 signatures and a final
# one at shutdown, checked after SIGTERM below.
printf 'encrypt = yes\ncerts = %s\nstore = %s\naudit-log = %s\naudit-checkpoint-every = 3\n[inbound]\nharvest = yes\n' \
	"$W/certs" "$W/certs.db" "$W/audit.log" >>"$W/gateway-c.conf"
# A recipient known only to the certificate store (docs/certificates.md): a software key
# certified by the test intermediate, imported with the chain by the CLI.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/dave.key" 2>/dev/null
openssl req -new -key "$tmp/dave.key" -subj "/O=p11smime test/CN=Dave/emailAddress=dave@example.com" \
	-out "$tmp/dave.csr" 2>/dev/null
openssl x509 -req -in "$tmp/dave.csr" -CA "$PKI/intermediate.pem" -CAkey "$PKI/intermediate/intermediate.key" \
	-set_serial 0x5151 -days 30 -extfile "$PKI/openssl.cnf" -extensions ee_rsa -out "$tmp/dave.pem" 2>/dev/null
expect 0 "store: the CLI imports dave and the chain" -- \
	"$P11S_BIN" certs --store "$W/certs.db" import "$tmp/dave.pem" "$PKI/chain.pem"
# Postfix's smtpd (user postfix) must be able to connect: the socket takes the gateway's umask
# (docs/gateway.md: a common group and UMask=0007 in production).
(umask 0; exec "$GW" --config "$W/gateway-c.conf" >>"$W/gateway.log" 2>&1) &
gwpid=$!
for _ in $(seq 1 50); do [ -S "$W/milter/gw.sock" ] && break; sleep 0.1; done
check "gateway listens on a unix socket" test -S "$W/milter/gw.sock"
check "... with 4 workers and 2 token contexts" \
	grep -q "socket unix:$W/milter/gw.sock, 4 workers, 2 token contexts" "$W/gateway.log"
sendu() { python3 "$here/send.py" "$P_UNIX" "$@"; }

# 15. outbound, recipient with a certificate in certs: signed, then encrypted to it.
msg "$tmp/plain15" alice-rsa2048@example.org bob@example.com out-enc "Signed and sealed."
expect 0 "outbound message through the unix-socket milter is accepted" -- \
	sendu alice-rsa2048@example.org bob@example.com "$tmp/plain15"
if f=$(delivered out-enc); then
	check "outbound message to a recipient with a certificate is enveloped" \
		grep -qiE 'smime-type="?(authE|e)nveloped-data' "$f"
	check "... and holds no plaintext" sh -c "! grep -q 'Signed and sealed' '$f'"
	expect 0 "... decrypts with the recipient's key (openssl cms)" -- \
		openssl cms -decrypt -in "$f" -recip "$PKI/keyenc-only.pem" -inkey "$PKI/keyenc-only.key" \
		-out "$tmp/dec15"
	expect 0 "... to a signature that verifies (openssl cms)" -- \
		openssl cms -verify -in "$tmp/dec15" -CAfile "$PKI/chain.pem" -out "$tmp/out15"
	check "... over the text" grep -q "Signed and sealed." "$tmp/out15"
else
	not_ok "outbound encrypted message delivered"
fi
# ... and to a recipient without a certificate: signed only.
msg "$tmp/plain15b" alice-rsa2048@example.org carol@example.com out-nocert "Signed only."
sendu alice-rsa2048@example.org carol@example.com "$tmp/plain15b"
if f=$(delivered out-nocert); then
	check "outbound message to a recipient without a certificate is signed, not encrypted" \
		sh -c "grep -qi 'multipart/signed' '$f' && ! grep -qi 'enveloped-data' '$f'"
else
	not_ok "outbound message without recipient certificate delivered"
fi

# 15c. outbound to a recipient only in the store, many at once over 4 workers while four CLI
#      processes import into the same store: every message encrypted to dave (AES-256-CBC: he
#      announced nothing), no imported row lost.
printf 'From: alice-rsa2048@example.org\r\nTo: dave@example.com\r\nSubject: storeout TEMPLATE\r\nMessage-ID: <storeout-TEMPLATE@gw.test>\r\n\r\nfor dave only\r\n' \
	>"$tmp/storeout.txt"
for i in $(seq 1 16); do
	openssl req -x509 -newkey rsa:2048 -nodes -keyout /dev/null -days 30 \
		-subj "/CN=bulk $i/emailAddress=bulk$i@example.com" -out "$tmp/bulk$i.pem" 2>/dev/null
done
NS=${P11S_GW_STORE_LOAD:-40}
importers=()
for p in 0 1 2 3; do
	( for k in 1 2 3 4; do "$P11S_BIN" certs --store "$W/certs.db" import "$tmp/bulk$((p * 4 + k)).pem" \
		>/dev/null || exit 1; done ) &
	importers+=($!)
done
python3 "$here/send.py" --load "$P_UNIX" alice-rsa2048@example.org dave@example.com "$NS" 8 \
	"$tmp/storeout.txt" >"$tmp/sids" 2>"$tmp/sload.err"
ibad=0
for pid in "${importers[@]}"; do wait "$pid" || ibad=$((ibad + 1)); done
check "store: 4 CLI importers beside the gateway's workers all succeed" test "$ibad" = 0
check "store: ... every imported row is there (2 + 1 + 16)" test "$("$P11S_BIN" certs --store "$W/certs.db" list | wc -l)" = 19
check "store: all $NS outbound messages accepted" test "$(wc -l <"$tmp/sids")" -eq "$NS"
for _ in $(seq 1 300); do
	n=$(grep -h -l "^Message-ID: <storeout-" "$W/mail/box/new/"* 2>/dev/null | wc -l)
	[ "$n" -ge "$NS" ] && break
	sleep 0.2
done
# The gateway encrypts with header protection (the default): the outer Subject is "[...]",
# the Message-ID stays outside (RFC 9788 hcp_baseline).
sfiles=$(grep -l "^Message-ID: <storeout-" "$W/mail/box/new/"* 2>/dev/null)
check "store: $NS delivered" test "$(echo "$sfiles" | grep -c .)" -eq "$NS"
nenv=0
for f in $sfiles; do
	grep -qiE 'smime-type="?enveloped-data' "$f" && ! grep -q 'for dave only' "$f" && nenv=$((nenv + 1))
done
check "store: every one enveloped (CBC: dave announced nothing), no plaintext" test "$nenv" -eq "$NS"
expect 0 "store: ... one decrypts with dave's key (openssl cms)" -- \
	openssl cms -decrypt -in "$(echo "$sfiles" | head -1)" -recip "$tmp/dave.pem" -inkey "$tmp/dave.key" \
	-out "$tmp/decs"
expect 0 "store: ... to a signature that verifies" -- \
	openssl cms -verify -in "$tmp/decs" -CAfile "$PKI/chain.pem" -out "$tmp/outs"
check "store: ... over the text" grep -q "for dave only" "$tmp/outs"

# 15d. [inbound] harvest = yes: a verified inbound signature puts its signer (and its
#      AES-256-GCM announcement) into the store; an altered one records nothing.
msg "$tmp/plain15d" alice-ec256@example.org bob@example.org harvest-in
"$P11S_BIN" --module "$P11S_TEST_MODULE" --pin-source "file:$P11S_TEST_PIN_FILE" sign \
	--key "pkcs11:token=$P11S_TEST_TOKEN;object=ec256;type=private" \
	--chain "$PKI/intermediate.pem" --in "$tmp/plain15d" --out "$tmp/signed15d"
msg "$tmp/plain15e" alice-ec384@example.org bob@example.org harvest-bad
"$P11S_BIN" --module "$P11S_TEST_MODULE" --pin-source "file:$P11S_TEST_PIN_FILE" sign \
	--key "pkcs11:token=$P11S_TEST_TOKEN;object=ec384;type=private" \
	--chain "$PKI/intermediate.pem" --in "$tmp/plain15e" --out "$tmp/signed15e"
sed -i 's/Hello from the gateway test (harvest-bad)/Hello from the gateway test (HARVEST-BAD)/' "$tmp/signed15e"
check "harvest: (the second message's signed text is altered)" grep -q 'HARVEST-BAD' "$tmp/signed15e"
sendu alice-ec256@example.org bob@example.org "$tmp/signed15d"
sendu alice-ec384@example.org bob@example.org "$tmp/signed15e"
if f=$(delivered harvest-in) && delivered harvest-bad >/dev/null; then
	check "harvest: the verified signer is in the store, harvested" test "$(sqlite3 "$W/certs.db" \
		"SELECT c.source FROM certs c JOIN addresses a USING (fingerprint)
		 WHERE a.address = 'alice-ec256@example.org'")" = harvested
	check "harvest: ... with its aes-256-gcm announcement" test "$(sqlite3 "$W/certs.db" \
		"SELECT gcm FROM announcements WHERE address = 'alice-ec256@example.org'")" = 1
	check "harvest: the altered signature's signer is not" test "$(sqlite3 "$W/certs.db" \
		"SELECT count(*) FROM addresses WHERE address = 'alice-ec384@example.org'")" = 0
else
	not_ok "harvest: signed inbound messages delivered"
fi

# 16. load over the unix socket with 2 sessions and 4 workers: each message delivered once,
#     decrypted (a 4xx would fail the sender here: it talks to the milter's smtpd directly).
N2=${P11S_GW_LOAD2:-150}
sed 's/load TEMPLATE/unixload TEMPLATE/; s/<load-TEMPLATE@/<unixload-TEMPLATE@/' "$tmp/load.txt" \
	>"$tmp/uload.txt"
"$P11S_BIN" encrypt --no-protect-headers --to "$PKI/rsa2048.pem" --in "$tmp/uload.txt" \
	--out "$tmp/uload.eml"
python3 "$here/send.py" --load "$P_UNIX" sender@example.com alice-rsa2048@example.org "$N2" 8 \
	"$tmp/uload.eml" >"$tmp/uids" 2>"$tmp/uload.err"
check "unix-socket load: all $N2 messages accepted" test "$(wc -l <"$tmp/uids")" -eq "$N2"
for _ in $(seq 1 300); do
	n=$(grep -h -l "^Subject: unixload " "$W/mail/box/new/"* 2>/dev/null | wc -l)
	[ "$n" -ge "$N2" ] && break
	sleep 0.2
done
grep -h -i "^Message-ID: <unixload-" "$W/mail/box/new/"* | sort >"$tmp/ugot"
check "unix-socket load: $N2 delivered, none lost" test "$(sort -u "$tmp/ugot" | wc -l)" -eq "$N2"
check "unix-socket load: none duplicated" test "$(wc -l <"$tmp/ugot")" -eq "$N2"
check "unix-socket load: every one decrypted" test "$(grep -l '^X-P11smime-Gateway: decrypted' \
	$(grep -l '^Subject: unixload ' "$W/mail/box/new/"*) | wc -l)" -eq "$N2"
kill -TERM "$gwpid"
if wait "$gwpid"; then ok "SIGTERM (unix socket): clean exit"; else not_ok "SIGTERM (unix socket): clean exit"; fi
gwpid=
# The audit log of the outbound signatures ends at the final checkpoint of the run (issue 23):
# removing its last records is detected without an external hash.
expect 0 "audit log: every outbound signature recorded, anchored by a final checkpoint" -- \
	"$P11S_BIN" audit verify --require-checkpoint --signer-cert "$PKI/rsa2048.pem" "$W/audit.log"
check "... with periodic checkpoints too" test "$(grep -c '"operation":"checkpoint"' "$W/audit.log")" -ge 2
head -n 2 "$W/audit.log" >"$tmp/audit-cut.log"
expect 1 "audit log cut after two records: detected" -- \
	"$P11S_BIN" audit verify "$tmp/audit-cut.log"
check "no spool files left behind" sh -c "[ -z \"\$(ls -A '$W/spool')\" ]"

# 15e. [outbound] protect-headers (RFC 9788, docs/gateway.md), on by default: the
# configuration does not name it. Signed and encrypted, the signed entity is the
# Cryptographic Payload (hp="cipher", the outer Subject "[...]"); signed only, hp="clear" and
# the Subject stays.
grep -q '^protect-headers' "$W/gateway-c.conf" && not_ok "the configuration of 15e names protect-headers"
cp "$W/gateway-c.conf" "$W/gateway-hp.conf"
rm -f "$W/milter/gw.sock"
(umask 0; exec "$GW" --config "$W/gateway-hp.conf" >>"$W/gateway.log" 2>&1) &
gwpid=$!
for _ in $(seq 1 50); do [ -S "$W/milter/gw.sock" ] && break; sleep 0.1; done
msg "$tmp/plainhp" alice-rsa2048@example.org bob@example.com out-hp "Protected subject."
msg "$tmp/plainhp2" alice-rsa2048@example.org carol@example.com out-hp-clear "Signed, protected."
expect 0 "protect-headers: outbound messages accepted" -- \
	sendu alice-rsa2048@example.org bob@example.com "$tmp/plainhp"
sendu alice-rsa2048@example.org carol@example.com "$tmp/plainhp2"
f=
for _ in $(seq 1 150); do
	f=$(grep -l -x 'Message-ID: <out-hp@gw.test>' "$W/mail/box/new/"* 2>/dev/null | head -1)
	[ -n "$f" ] && break
	sleep 0.2
done
if [ -n "$f" ]; then
	check "protect-headers, encrypted: the outer Subject is [...]" grep -q -x 'Subject: \[\.\.\.\]' "$f"
	check "... and the real one is not outside" sh -c "! grep -q '^Subject: out-hp' '$f'"
	expect 0 "... decrypts with the recipient's key (openssl cms)" -- \
		openssl cms -decrypt -in "$f" -recip "$PKI/keyenc-only.pem" -inkey "$PKI/keyenc-only.key" \
		-out "$tmp/dechp"
	check "... to a payload with hp=\"cipher\" and the Subject inside" \
		sh -c "grep -q 'hp=\"cipher\"' '$tmp/dechp' && tr -d '\r' <'$tmp/dechp' | grep -q -x 'Subject: out-hp'"
	expect 0 "... whose signature verifies (openssl cms)" -- \
		openssl cms -verify -in "$tmp/dechp" -CAfile "$PKI/chain.pem" -out /dev/null
	"$P11S_BIN" verify --trust "$PKI/root.pem" --certs "$PKI/intermediate.pem" --in "$tmp/dechp" \
		>"$tmp/vhp" 2>&1
	if grep -q 'header protection: hp=cipher' "$tmp/vhp"; then
		ok "... and p11smime verify reports hp=cipher"
	else
		not_ok "... and p11smime verify reports hp=cipher"
		sed 's/^/#   verify: /' "$tmp/vhp" | head -12
		head -c 400 "$tmp/dechp" | od -c | sed 's/^/#   /' | head -12
	fi
else
	not_ok "protect-headers: encrypted message delivered"
fi
if f=$(delivered out-hp-clear); then
	check "protect-headers, signed only: hp=\"clear\", the Subject kept outside" \
		sh -c "grep -q 'hp=\"clear\"' '$f' && grep -c -x 'Subject: out-hp-clear' '$f' | grep -qx 2"
	"$P11S_BIN" verify --trust "$PKI/root.pem" --certs "$PKI/intermediate.pem" --in "$f" >"$tmp/vhp2" 2>&1
	check "... and p11smime verify reports hp=clear, valid" \
		sh -c "grep -q 'header protection: hp=clear' '$tmp/vhp2' && grep -q '^verdict: VALID' '$tmp/vhp2'"
else
	not_ok "protect-headers: signed message delivered"
fi
# ... and inbound: a wrapped message with hp="cipher" (outer Subject "[...]") is delivered
# decrypted with its real Subject, changed in place (smfi_chgheader).
msg "$tmp/plainhp3" alice-ec256@example.org alice-rsa2048@example.org in-hp-real "Inbound protected."
"$P11S_BIN" --module "$P11S_TEST_MODULE" --pin-source "file:$P11S_TEST_PIN_FILE" wrap \
	--protect-headers --key "pkcs11:token=$P11S_TEST_TOKEN;object=ec256;type=private" \
	--chain "$PKI/intermediate.pem" --to "$PKI/rsa2048.pem" --in "$tmp/plainhp3" --out "$tmp/wraphp3"
check "protect-headers, inbound: the sent message says Subject [...]" \
	sh -c "tr -d '\r' <'$tmp/wraphp3' | grep -q -x 'Subject: \[\.\.\.\]'"
sendu sender@example.com alice-rsa2048@example.org "$tmp/wraphp3"
f=
for _ in $(seq 1 150); do
	f=$(grep -l -x 'Message-ID: <in-hp-real@gw.test>' "$W/mail/box/new/"* 2>/dev/null | head -1)
	[ -n "$f" ] && break
	sleep 0.2
done
if [ -n "$f" ]; then
	sed -n '1,/^\r\{0,1\}$/p' "$f" | tr -d '\r' >"$tmp/hdrhp3"
	check "protect-headers, inbound: delivered decrypted with the real Subject, once" \
		sh -c "grep -c -x 'Subject: in-hp-real' '$tmp/hdrhp3' | grep -qx 1 && ! grep -q '\[\.\.\.\]' '$tmp/hdrhp3'"
	check "... and marked decrypted" grep -q '^X-P11smime-Gateway: decrypted' "$f"
else
	not_ok "protect-headers, inbound: message delivered"
fi
kill -TERM "$gwpid"
wait "$gwpid" 2>/dev/null
gwpid=

# ---- fourth configuration: live revocation (issue 19 item 5, docs/gateway.md) --------------
# Carol's certificate (from the test intermediate) names a CRL distribution point on a
# loopback HTTP server. The gateway fetches that CRL, caches it until its nextUpdate (a day
# away), and refreshes it in the background every second (crl-refresh-before: two days), so a
# revocation the CA publishes early is seen by the next message, with no message waiting.
mkdir -p "$W/www" "$W/ca/new"
: >"$W/www/requests.log"
python3 "$P11S_SOURCE_DIR/tests/revocation/http_server.py" "$W/www" "$W/http.port" 2>"$W/http.log" &
httppid=$!
for _ in $(seq 100); do [ -s "$W/http.port" ] && break; sleep 0.1; done
HP=$(cat "$W/http.port" 2>/dev/null)
check "revocation: loopback HTTP server for the CRL" test -n "$HP"
: >"$W/ca/index.txt"
echo 01 >"$W/ca/crlnumber"
cat >"$W/ca.cnf" <<EOT
[ca]
default_ca = int
[int]
database = $W/ca/index.txt
new_certs_dir = $W/ca/new
certificate = $PKI/intermediate.pem
private_key = $PKI/intermediate/intermediate.key
crlnumber = $W/ca/crlnumber
default_md = sha256
default_crl_days = 1
[carol]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = emailProtection
subjectAltName = email:carol@example.com
authorityKeyIdentifier = keyid
crlDistributionPoints = URI:http://127.0.0.1:$HP/int.crl
EOT
gencrl() { openssl ca -config "$W/ca.cnf" -gencrl -out "$W/ca/crl.pem" 2>>"$W/ca.log" &&
	openssl crl -in "$W/ca/crl.pem" -outform DER -out "$W/www/int.crl.tmp" && mv "$W/www/int.crl.tmp" "$W/www/int.crl"; }
openssl req -new -newkey rsa:2048 -nodes -keyout "$tmp/carol.key" -subj "/CN=Carol" \
	-out "$tmp/carol.csr" 2>>"$W/ca.log" &&
	openssl x509 -req -in "$tmp/carol.csr" -CA "$PKI/intermediate.pem" \
		-CAkey "$PKI/intermediate/intermediate.key" -set_serial 0x6161 -days 30 \
		-extfile "$W/ca.cnf" -extensions carol -out "$tmp/carol.pem" 2>>"$W/ca.log" && gencrl
check "revocation: carol's certificate and the intermediate's first CRL" test -s "$W/www/int.crl"
csign() { # csign SUBJECT: carol signs a message to alice (openssl cms, with the intermediate)
	printf 'Hello from carol (%s).\n' "$1" >"$tmp/$1.txt"
	openssl cms -sign -md sha256 -text -in "$tmp/$1.txt" -signer "$tmp/carol.pem" -inkey "$tmp/carol.key" \
		-certfile "$PKI/intermediate.pem" -from carol@example.com -to alice-rsa2048@example.org \
		-subject "$1" -out "$tmp/$1.eml"
}
sed -e "s|^crl = .*||" "$W/gateway.conf" >"$W/gateway-d.conf"
printf '[inbound]\nrevocation = crl\nfetch = yes\nfetch-allow = 127.0.0.1\ncrl = %s\ncrl-refresh-interval = 1\ncrl-refresh-before = 172800\n' \
	"$PKI/root.crl.pem" >>"$W/gateway-d.conf"
start_gw "$W/gateway-d.conf" && ok "gateway started ([inbound] revocation = crl, fetch = yes)" ||
	not_ok "gateway started with the revocation configuration"
csign rev-good
send carol@example.com alice-rsa2048@example.org "$tmp/rev-good.eml"
if f=$(delivered rev-good); then
	check "revocation: carol, not revoked, passes with the fetched CRL" \
		grep -q "^Authentication-Results: gw.test; smime=pass body.smime-identifier=carol@example.com" "$f"
else
	not_ok "revocation: carol's first message delivered"
fi
check "revocation: the CRL came from the distribution point" grep -q "^GET /int.crl" "$W/www/requests.log"
# The CA revokes carol and reissues its CRL (thisUpdate one second later at least).
sleep 1
openssl ca -config "$W/ca.cnf" -revoke "$tmp/carol.pem" -crl_reason keyCompromise 2>>"$W/ca.log" &&
	gencrl
for _ in $(seq 50); do
	grep -q "CRL refreshed before expiry" "$W/gateway.log" && break
	sleep 0.2
done
check "revocation: the background refresh fetched the reissued CRL (logged)" \
	grep -q "revocation: 1 CRL refreshed before expiry" "$W/gateway.log"
csign rev-revoked
send carol@example.com alice-rsa2048@example.org "$tmp/rev-revoked.eml"
if f=$(delivered rev-revoked); then
	# Without the refresh the cached CRL (nextUpdate a day away) would still say good.
	check "revocation: carol's next message fails as revoked (the refreshed CRL decides)" \
		grep -q "^Authentication-Results: gw.test; smime=fail reason=.*revoked" "$f"
else
	not_ok "revocation: carol's message after the revocation delivered"
fi
# An unreachable OCSP responder: the configured verdict (fail), and the mail still delivered.
closed=$(free_port)
sed -e 's/^revocation = crl/revocation = ocsp/' -e "s|^fetch-allow = .*|ocsp-url = http://127.0.0.1:$closed/|" \
	"$W/gateway-d.conf" >"$W/gateway-d.tmp" && mv "$W/gateway-d.tmp" "$W/gateway-d.conf"
kill -HUP "$gwpid"
for _ in $(seq 50); do grep -q "reloaded $W/gateway-d.conf" "$W/gateway.log" && break; sleep 0.1; done
csign rev-outage
send carol@example.com alice-rsa2048@example.org "$tmp/rev-outage.eml"
if f=$(delivered rev-outage); then
	check "revocation: responder down: delivered, smime=fail (revocation status unknown)" \
		grep -q "^Authentication-Results: gw.test; smime=fail reason=.*revocation" "$f"
else
	not_ok "revocation: message during a responder outage delivered (never lost)"
fi
printf 'soft-fail = yes\n' >>"$W/gateway-d.conf"
kill -HUP "$gwpid"
sleep 0.5
for _ in $(seq 50); do [ "$(grep -c "reloaded $W/gateway-d.conf" "$W/gateway.log")" -ge 2 ] && break; sleep 0.1; done
csign rev-soft
send carol@example.com alice-rsa2048@example.org "$tmp/rev-soft.eml"
if f=$(delivered rev-soft); then
	check "revocation: soft-fail = yes: the same outage passes" \
		grep -q "^Authentication-Results: gw.test; smime=pass body.smime-identifier=carol@example.com" "$f"
else
	not_ok "revocation: message under soft-fail delivered"
fi
stop_gw
kill "$httppid" 2>/dev/null
expect 2 "revocation: [inbound] fetch without [inbound] revocation is refused at start" -- \
	sh -c "printf '[inbound]\nfetch = yes\n' | cat '$W/gateway.conf' - >'$W/bad.conf' && '$GW' --config '$W/bad.conf'"

if [ "$failed" -gt 0 ]; then
	echo "# gateway log:"; tail -40 "$W/gateway.log" | sed 's/^/#   /'
	echo "# postfix log:"; tail -20 "$W/maillog" | sed 's/^/#   /'
fi
finish
