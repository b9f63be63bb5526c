#!/bin/bash
# Every layer, always (issue 23): `unwrap` peels past a failed layer and reports each one,
# and S/MIME parts inside the payload are content, not protection (RFC 9787 §3).
# The broken message is built with openssl cms: a list server's outer signature (a host key
# certified by the test intermediate CA) around an openssl-encrypted part holding a message
# signed on the token; then the outer signed content or the outer signature is altered.
# usage: layers.sh BACKEND   (environment from tests/CMakeLists.txt)
set -euo pipefail
backend=$1
. "$(dirname "$0")/lib.sh"
exec </dev/null

msg=$tmp/msg.eml
printf 'From: alice-rsa2048@example.org\r\nTo: bob@example.org\r\nSubject: layers\r\nDate: %s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThe inner words.\r\n' "$(LC_ALL=C date -u -R)" >"$msg"

# The list server's signing certificate (a key on the host: openssl signs with it).
cat >"$tmp/list.ext" <<'EXT'
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = emailProtection
subjectAltName = email:list@example.org
EXT
openssl req -newkey rsa:2048 -nodes -keyout "$tmp/list.key" -subj "/O=p11smime test/CN=List Server" \
	-out "$tmp/list.csr" 2>/dev/null
openssl x509 -req -in "$tmp/list.csr" -CA "$pki/intermediate.pem" \
	-CAkey "$pki/intermediate/intermediate.key" -CAcreateserial -days 2 -extfile "$tmp/list.ext" \
	-out "$tmp/list.pem" 2>/dev/null

# inner: signed on the token; middle: openssl cms -encrypt to the token's RSA key; outer: the
# list server's openssl cms -sign, with the outer header fields of a list post.
expect 0 "inner layer signed on the token" -- \
	p11s sign --key "$(keyuri rsa2048)" --chain "$pki/intermediate.pem" --in "$msg" --out "$tmp/inner.eml"
# The encrypted entity is the signed MIME entity; the outer header fields stay outside
# (RFC 8551 §3.1), as `wrap` does.
# Only the message's header section: part 1 carries protected copies of them (RFC 9788).
awk 'h == 0 && /^\r?$/ { h = 1 } h == 0 && /^(From|To|Subject|Date):/ { next } { print }' \
	"$tmp/inner.eml" >"$tmp/inner.entity"
expect 0 "openssl cms encrypts it to the token's RSA key" -- \
	openssl cms -encrypt -aes-256-cbc -in "$tmp/inner.entity" -out "$tmp/enc.part" "$pki/rsa2048.pem"
expect 0 "openssl cms signs the encrypted part as the list server" -- \
	openssl cms -sign -signer "$tmp/list.pem" -inkey "$tmp/list.key" -certfile "$pki/intermediate.pem" \
	-in "$tmp/enc.part" -out "$tmp/outer.part"
# The list keeps the author's From (RFC 8550 §3: the inner signer's address); the list
# server's own certificate is for list@example.org, so the outer signer is checked via Sender.
{ printf 'From: alice-rsa2048@example.org\r\nSender: list@example.org\r\nTo: bob@example.org\r\nSubject: layers\r\n'; cat "$tmp/outer.part"; } >"$tmp/good.eml"

expect 0 "unwrap of the intact message: three good layers" -- \
	p11s --json unwrap --trust "$pki/root.pem" --in "$tmp/good.eml" --out "$tmp/good.out"
check "  ... signed, enveloped, signed, all valid" python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
assert d["valid"] and d["complete"] and d["content_written"], d
assert [(l["kind"],l["verdict"]) for l in d["layers"]]==[("signed","valid"),("enveloped","valid"),("signed","valid")], d
assert "List Server" in d["layers"][0]["signer"] and "rsa2048" in d["layers"][2]["signer"], d
assert d["layers"][1]["algorithms"]["cipher"]=="aes-256-cbc", d
assert d["embedded"]==[], d
' "$tmp/out"
check "  ... gives back the inner words" grep -q "The inner words." "$tmp/good.out"

# (a) the outer signed content altered: a header field added to the signed part 1, which
# keeps the encrypted part inside intact.
python3 - "$tmp/good.eml" "$tmp/bad-content.eml" <<'PY'
import sys
d = open(sys.argv[1], 'rb').read()
i = d.index(b'Content-Type: application/pkcs7-mime')
open(sys.argv[2], 'wb').write(d[:i] + b'X-List-Footer: added\r\n' + d[i:])
PY
# (b) the outer signature altered: one octet of the RSA signature value (the last octets of
# the SignedData DER: there are no unsigned attributes) flipped, base64 re-encoded.
python3 - "$tmp/good.eml" "$tmp/bad-sig.eml" <<'PY'
import base64, re, sys
d = open(sys.argv[1], 'rb').read()
m = re.search(rb'(Content-Type: application/(?:x-)?pkcs7-signature[^\r\n]*\r?\n(?:[^\r\n]+\r?\n)*\r?\n)([A-Za-z0-9+/=\r\n]+)', d)
der = bytearray(base64.b64decode(m.group(2)))
der[-10] ^= 0x55
b64 = base64.encodebytes(bytes(der)).replace(b'\n', b'\r\n')
open(sys.argv[2], 'wb').write(d[:m.start(2)] + b64 + d[m.end(2):])
PY

for bad in bad-content bad-sig; do
	expect 1 "$bad: unwrap exit 1 (the weakest layer)" -- \
		p11s --json unwrap --trust "$pki/root.pem" --in "$tmp/$bad.eml" --out "$tmp/$bad.out"
	check "  ... outer invalid, still decrypted, inner valid" python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
ls=d["layers"]
assert not d["valid"] and d["exit_status"]==1 and d["complete"] and not d["content_written"], d
assert [(l["type"],l["verdict"]) for l in ls]==[("signed","invalid"),("enveloped","valid"),("signed","valid")], d
assert ls[0]["peeled"] and ls[0]["reason"] in ("content-altered","bad-signature"), ls[0]
assert "List Server" in ls[0]["signer"], ls[0]
assert ls[1]["algorithms"]["cipher"]=="aes-256-cbc" and "rsa2048" in ls[2]["signer"], d
' "$tmp/out"
	check "  ... and no --out file" test ! -e "$tmp/$bad.out"
	expect 1 "$bad: unwrap --output-unverified still exits 1" -- \
		p11s unwrap --output-unverified --trust "$pki/root.pem" --in "$tmp/$bad.eml" --out "$tmp/$bad.out"
	check "  ... the text report names the layers" bash -c "grep -q '^layer 1: signed: INVALID' '$tmp/out' && grep -q '^layer 2: enveloped: VALID' '$tmp/out' && grep -q '^layer 3: signed: VALID' '$tmp/out'"
	check "  ... and writes the innermost content" grep -q "The inner words." "$tmp/$bad.out"
done
expect 1 "the altered content ..." -- \
	p11s --json unwrap --trust "$pki/root.pem" --in "$tmp/bad-content.eml"
check "  ... is reported as content-altered, the altered signature as bad-signature" python3 -c '
import json,sys
assert json.load(open(sys.argv[1]))["layers"][0]["reason"]=="content-altered"
' "$tmp/out"
expect 1 "the altered signature ..." -- \
	p11s --json unwrap --trust "$pki/root.pem" --in "$tmp/bad-sig.eml"
check "  ... is reported as bad-signature" python3 -c '
import json,sys
assert json.load(open(sys.argv[1]))["layers"][0]["reason"]=="bad-signature"
' "$tmp/out"

# An encrypted layer that cannot be opened ends the peeling: reported, nothing written even
# with --output-unverified.
expect 1 "a key that is not the recipient: exit 1" -- \
	p11s --json unwrap --output-unverified --key "$(keyuri ec256)" --trust "$pki/root.pem" \
	--in "$tmp/bad-sig.eml" --out "$tmp/nokey.out"
check "  ... two layers reported, incomplete, nothing written" python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
assert [l["verdict"] for l in d["layers"]]==["invalid","invalid"] and not d["complete"], d
assert d["layers"][1]["reason"]=="decryption-failed", d
' "$tmp/out"
check "  ... no file" test ! -e "$tmp/nokey.out"

# --- envelope vs payload (RFC 9787 §3): a forwarded signed message inside a signed mail.
sed 's/^From: alice-rsa2048@/From: alice-ec256@/' "$msg" >"$tmp/msg-ec.eml"
expect 0 "a message signed by the EC key, to forward" -- \
	p11s sign --key "$(keyuri ec256)" --chain "$pki/intermediate.pem" \
	--in "$tmp/msg-ec.eml" --out "$tmp/fwd.eml"
{
	printf 'From: alice-rsa2048@example.org\r\nTo: bob@example.org\r\nSubject: Fwd: layers\r\n'
	printf 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
	printf -- '--b1\r\nContent-Type: text/plain\r\n\r\nSee the forwarded mail.\r\n'
	printf -- '--b1\r\nContent-Type: message/rfc822\r\n\r\n'
	cat "$tmp/fwd.eml"
	printf -- '\r\n--b1\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\n'
	sed -n '/^\r\?$/,$p' "$tmp/enc.part" | tail -n +2
	printf -- '\r\n--b1--\r\n'
} >"$tmp/mixed.eml"
expect 0 "the forwarding message signed on the token" -- \
	p11s sign --key "$(keyuri rsa2048)" --chain "$pki/intermediate.pem" --in "$tmp/mixed.eml" --out "$tmp/fwd-signed.eml"
expect 0 "unwrap peels one layer only" -- \
	p11s --json unwrap --trust "$pki/root.pem" --in "$tmp/fwd-signed.eml" --out "$tmp/fwd.out"
check "  ... layers: one signed by rsa2048; embedded: the forwarded signature and the encrypted part" python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
assert d["valid"] and len(d["layers"])==1 and "rsa2048" in d["layers"][0]["signer"], d
e=d["embedded"]
assert [(x["path"],x["type"]) for x in e]==[("2","signed"),("3","enveloped")], e
assert "ec256" in e[0]["signer"] and e[0]["valid"] is True and e[0]["covers_message"] is False, e
' "$tmp/out"
expect 0 "the text report says so" -- \
	p11s -v unwrap --trust "$pki/root.pem" --in "$tmp/fwd-signed.eml" --out "$tmp/fwd2.out"
check "  ... 'a signed attachment by' the forwarded signer, not covering this message" \
	grep -q "part 2 (message/rfc822) is a signed attachment by .*ec256.*does not cover this message" "$tmp/out"
# A signed part that is not the whole body is never a layer.
expect 1 "unwrap of the unsigned multipart/mixed is exit 1 (no layer)" -- \
	p11s unwrap --trust "$pki/root.pem" --in "$tmp/mixed.eml" --out "$tmp/mixed.out"
check "  ... and writes nothing" test ! -e "$tmp/mixed.out"

finish
