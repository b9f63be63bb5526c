#!/bin/bash
# Integration suite of `sign` on the throwaway SoftHSMv2 token, for one backend: every token
# key, digest and form is checked by `openssl cms -verify` against the test root, and the
# signed content must equal the canonical input byte for byte.
# usage: sign.sh BACKEND   (environment from tests/CMakeLists.txt: P11S_BIN, P11S_TEST_*)
set -euo pipefail
backend=$1
. "$(dirname "$0")/lib.sh"

exec </dev/null

# part1 FILE: the bytes of part 1 of a multipart/signed (RFC 2046 §5.1.1: the CRLF before a
# delimiter belongs to it); sig FILE: the DER of part 2.
part1() {
	python3 - "$1" <<'EOF'
import re, sys
d = open(sys.argv[1], 'rb').read()
b = re.search(rb'boundary="([^"]+)"', d).group(1)
parts = d.split(b'\r\n--' + b)
sys.stdout.buffer.write(parts[1][2:])
EOF
}
sig() {
	python3 - "$1" <<'EOF'
import re, sys, base64
d = open(sys.argv[1], 'rb').read()
b = re.search(rb'boundary="([^"]+)"', d).group(1)
p2 = d.split(b'\r\n--' + b)[2]
sys.stdout.buffer.write(base64.b64decode(p2.split(b'\r\n\r\n', 1)[1]))
EOF
}

# A 7-bit message with LF line ends; its canonical entity is known exactly.
msg=$tmp/msg.eml
# Date: now (verify compares it with the signingTime, docs/verify.md "Dates").
msgdate=$(LC_ALL=C date -R)
export msgdate
printf 'From: Alice <alice@example.org>\nTo: bob@example.org\nSubject: test\nDate: %s\nMessage-ID: <1@example.org>\nContent-Type: text/plain; charset=us-ascii\n\nHello Bob,\n\nthis is signed.\n-- \nAlice\n' "$msgdate" >"$msg"
# RFC 9788 header protection is on by default (CLI.md): the signed entity is the Content-*
# fields with hp="clear", then copies of the message's fields in their order, then the body.
canon=$tmp/canon
printf 'Content-Type: text/plain; charset=us-ascii; hp="clear"\r\nFrom: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: test\r\nDate: %s\r\nMessage-ID: <1@example.org>\r\n\r\nHello Bob,\r\n\r\nthis is signed.\r\n-- \r\nAlice\r\n' "$msgdate" >"$canon"
# --no-protect-headers: the Content-* fields and the body only (RFC 8551 §3.1).
canon_plain=$tmp/canon-plain
printf 'Content-Type: text/plain; charset=us-ascii\r\n\r\nHello Bob,\r\n\r\nthis is signed.\r\n-- \r\nAlice\r\n' >"$canon_plain"

# key pss? digest...
for spec in "rsa2048 -" "rsa3072 --pss" "ec256 -" "ec384 -"; do
	read -r key pss <<<"$spec"
	[ "$pss" = - ] && pss=
	for digest in sha256 sha384 sha512; do
		for form in detached opaque; do
			name="$key${pss:+ pss} $digest $form"
			out=$tmp/out.eml
			rm -f "$out"
			opaque=
			[ "$form" = opaque ] && opaque=--opaque
			if [ -n "$pss" ] && [ "$backend" = libp11 ]; then
				# libp11 declares no CKM_RSA_PKCS_PSS: a clear token-class refusal.
				expect 3 "$name: refused by a backend without PSS" -- \
					p11s sign --key "$(keyuri "$key")" $pss $opaque --digest "$digest" --in "$msg" --out "$out"
				check "  ... and no output file" test ! -e "$out"
				continue
			fi
			expect 0 "$name: sign" -- p11s sign --key "$(keyuri "$key")" $pss $opaque \
				--digest "$digest" --chain "$pki/intermediate.pem" --in "$msg" --out "$out"
			check "  ... outer headers kept, in order" python3 -c '
import os,sys
d=open(sys.argv[1],"rb").read()
h=d.split(b"\r\n\r\n",1)[0].split(b"\r\n")
assert h[:5]==[b"From: Alice <alice@example.org>",b"To: bob@example.org",b"Subject: test",b"Date: "+os.environ["msgdate"].encode(),b"Message-ID: <1@example.org>"],h
assert h[5]==b"MIME-Version: 1.0"
' "$out"
			if [ "$form" = detached ]; then
				check "  ... multipart/signed with micalg=sha-${digest#sha}" \
					grep -q "micalg=sha-${digest#sha};" "$out"
				check "  ... protocol=\"application/pkcs7-signature\"" \
					grep -q 'protocol="application/pkcs7-signature"' "$out"
			else
				check "  ... application/pkcs7-mime; smime-type=signed-data" \
					grep -q '^Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m' "$out"
			fi
			expect 0 "  ... openssl cms -verify" -- openssl cms -verify -in "$out" \
				-CAfile "$pki/root.pem" -out "$tmp/inner"
			check "  ... signed content = canonical input" cmp -s "$tmp/inner" "$canon"
			if [ "$form" = detached ]; then
				part1 "$out" >"$tmp/part1"
				sig "$out" >"$tmp/p7s"
				check "  ... part 1 is the canonical entity byte for byte" cmp -s "$tmp/part1" "$canon"
				expect 0 "  ... verifies with -binary over part 1" -- openssl cms -verify -binary \
					-inform DER -in "$tmp/p7s" -content "$tmp/part1" -CAfile "$pki/root.pem" -out /dev/null
				check "  ... eContent absent" sh -c "openssl cms -cmsout -print -inform DER -in '$tmp/p7s' | grep -q 'eContent: <ABSENT>'"
			fi
		done
	done
done

# Header protection off: the entity of RFC 8551 alone, no hp parameter, no copies.
for form in detached opaque; do
	out=$tmp/plain.eml
	rm -f "$out"
	opaque=
	[ "$form" = opaque ] && opaque=--opaque
	expect 0 "rsa2048 $form --no-protect-headers: sign" -- p11s sign --key "$(keyuri rsa2048)" \
		$opaque --no-protect-headers --chain "$pki/intermediate.pem" --in "$msg" --out "$out"
	expect 0 "  ... openssl cms -verify" -- openssl cms -verify -in "$out" \
		-CAfile "$pki/root.pem" -out "$tmp/inner"
	check "  ... signed content = the Content-* fields and the body" cmp -s "$tmp/inner" "$canon_plain"
done
printf 'protect-headers = no\n' >"$tmp/nohp.conf"
expect 0 "protect-headers = no in the configuration: sign" -- p11s --config "$tmp/nohp.conf" sign \
	--key "$(keyuri rsa2048)" --chain "$pki/intermediate.pem" --in "$msg" --out "$tmp/plain.eml"
openssl cms -verify -in "$tmp/plain.eml" -CAfile "$pki/root.pem" -out "$tmp/inner" 2>/dev/null
check "  ... no header protection" cmp -s "$tmp/inner" "$canon_plain"
expect 0 "  ... --protect-headers on the command line wins over the configuration" -- \
	p11s --config "$tmp/nohp.conf" sign --protect-headers --key "$(keyuri rsa2048)" \
	--chain "$pki/intermediate.pem" --in "$msg" --out "$tmp/hp.eml"
openssl cms -verify -in "$tmp/hp.eml" -CAfile "$pki/root.pem" -out "$tmp/inner" 2>/dev/null
check "  ... protected" cmp -s "$tmp/inner" "$canon"
printf 'protect-headers = maybe\n' >"$tmp/badhp.conf"
expect 2 "protect-headers = maybe: a usage error" -- p11s --config "$tmp/badhp.conf" sign \
	--key "$(keyuri rsa2048)" --in "$msg" --out "$tmp/bad.eml"
check "  ... and no output file" test ! -e "$tmp/bad.eml"

# Signed attributes on a token signature.
out=$tmp/attrs.eml
expect 0 "ec256 with --encryption-cert: sign" -- p11s sign --key "$(keyuri ec256)" \
	--encryption-cert "$pki/rsa2048.pem" --chain "$pki/intermediate.pem" --in "$msg" --out "$out"
sig "$out" >"$tmp/p7s"
openssl cms -cmsout -print -inform DER -in "$tmp/p7s" >"$tmp/print"
check "  ... signingCertificateV2" grep -q 'id-smime-aa-signingCertificateV2' "$tmp/print"
check "  ... SMIMEEncryptionKeyPreference" grep -q 'id-smime-aa-encrypKeyPref' "$tmp/print"
check "  ... our SMIMECapabilities: aes-256-gcm first" grep -q ':aes-256-gcm' "$tmp/print"
check "  ... no 3DES, RC2 or DES" sh -c "! grep -Eq ':(des-ede3-cbc|rc2-cbc|des-cbc)' '$tmp/print'"
check "  ... the chain is included" grep -q 'p11smime Test Intermediate CA' "$tmp/print"

# 8-bit content gets a 7-bit transfer encoding before signing.
msg8=$tmp/msg8.eml
printf 'From: alice@example.org\nSubject: 8bit\n\nGr\303\274\303\237e\nFrom here\n' >"$msg8"
expect 0 "8-bit body: sign" -- p11s sign --key "$(keyuri ec384)" --chain "$pki/intermediate.pem" --in "$msg8" --out "$tmp/o8.eml"
check "  ... the output is 7-bit" sh -c "! LC_ALL=C grep -q '[^[:print:][:space:]]' '$tmp/o8.eml'"
check "  ... charset=utf-8, quoted-printable" grep -q 'Content-Transfer-Encoding: quoted-printable' "$tmp/o8.eml"
expect 0 "  ... verifies" -- openssl cms -verify -in "$tmp/o8.eml" -CAfile "$pki/root.pem" -out "$tmp/inner8"
check "  ... 'From ' is protected" grep -q '^=46rom here' "$tmp/inner8"

# --cert as DER, matching the token key.
expect 0 "--cert DER matching the key" -- p11s sign --key "$(keyuri ec256)" --cert "$pki/ec256.der" \
	--chain "$pki/intermediate.pem" --in "$msg" --out "$tmp/c.eml"

# Standard input on a pipe, standard output.
pipe_sign() { cat "$msg" | p11s sign --key "$(keyuri ec256)" --chain "$pki/intermediate.pem"; }
expect 0 "message on a pipe, signed message on stdout" -- pipe_sign
cp "$tmp/out" "$tmp/piped.eml"
expect 0 "  ... verifies" -- openssl cms -verify -in "$tmp/piped.eml" -CAfile "$pki/root.pem" -out /dev/null

# Failures: one line, documented status, no output.
out=$tmp/fail.eml
printf 'not a message\n\nbody\n' >"$tmp/bad.eml"
expect 2 "not an RFC 5322 message is exit 2" -- p11s sign --key "$(keyuri ec256)" --in "$tmp/bad.eml" --out "$out"
check "  ... one line" test "$(wc -l <"$tmp/err")" -eq 1
check "  ... no output" test ! -e "$out"
printf 'Subject: a\000b\n\nx\n' >"$tmp/nul.eml"
expect 2 "NUL in the header is exit 2" -- p11s sign --key "$(keyuri ec256)" --in "$tmp/nul.eml" --out "$out"
: >"$tmp/empty.eml"
expect 2 "empty input is exit 2" -- p11s sign --key "$(keyuri ec256)" --in "$tmp/empty.eml" --out "$out"
expect 2 "--cert of another key is exit 2" -- p11s sign --key "$(keyuri ec256)" --cert "$pki/rsa2048.pem" --in "$msg" --out "$out"
expect 2 "--pss with an EC key is exit 2" -- p11s sign --key "$(keyuri ec256)" --pss --in "$msg" --out "$out"
expect 2 "unknown digest is exit 2" -- p11s sign --key "$(keyuri ec256)" --digest md5 --in "$msg" --out "$out"
expect 2 "missing --key is exit 2" -- p11s sign --in "$msg" --out "$out"
expect 3 "unknown key is exit 3" -- p11s sign --key "$(keyuri nosuchkey)" --in "$msg" --out "$out"
echo 000000 >"$tmp/bad.pin"
expect 3 "wrong PIN is exit 3" -- "$bin" --backend "$backend" --module "$mod" --pin-source "file:$tmp/bad.pin" \
	sign --key "$(keyuri ec256)" --in "$msg" --out "$out"
check "  ... no output after any failure" test ! -e "$out"

finish
