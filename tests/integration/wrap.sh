#!/bin/bash
# Integration suite of `wrap` and `unwrap` on the throwaway SoftHSMv2 token, for one backend:
# sign-then-encrypt and RFC 2634 triple wrapping, every layer peeled and reported; the outer
# and inner signatures of a triple-wrapped message checked with openssl cms too.
# usage: wrap.sh BACKEND   (environment from tests/CMakeLists.txt)
set -euo pipefail
backend=$1
. "$(dirname "$0")/lib.sh"
exec </dev/null

# pkcs11-helper cannot derive ECDH (docs/backends.md): its recipients are RSA only.
ec_to=ec384 triple_to=ec256
if [ "$backend" = pkcs11-helper ]; then ec_to=rsa3072 triple_to=rsa3072; fi

msg=$tmp/msg.eml
printf 'From: alice-ec256@example.org\r\nTo: bob@example.org\r\nSubject: layers\r\nDate: %s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThree layers deep.\r\n' "$(LC_ALL=C date -R)" >"$msg"

# --- sign then encrypt, to an RSA and an EC recipient
expect 0 "wrap: sign with P-256, encrypt to RSA-2048 and $ec_to" -- \
	p11s wrap --key "$(keyuri ec256)" --chain "$pki/intermediate.pem" --to "$pki/rsa2048.pem" \
	--to "$pki/$ec_to.pem" --in "$msg" --out "$tmp/w.eml"
check "  ... the outer layer is authEnveloped-data" grep -q "smime-type=authEnveloped-data" "$tmp/w.eml"
check "  ... outer headers stay outside, the Subject obscured (RFC 9788 §3.2)" sh -c \
	"grep -q '^From: ' '$tmp/w.eml' && grep -q '^Subject: \\[\\.\\.\\.\\]' '$tmp/w.eml'"
expect 0 "unwrap with the RSA key" -- \
	p11s unwrap --key "$(keyuri rsa2048)" --trust "$pki/root.pem" --in "$tmp/w.eml" --out "$tmp/u.eml"
check "  ... reports two layers" grep -q "unwrap: OK (2 layers)" "$tmp/out"
check "  ... gives back the message" bash -c "tail -n +2 '$tmp/u.eml' | grep -q 'Three layers deep.'"
check "  ... with its real Subject" grep -q '^Subject: layers' "$tmp/u.eml"
expect 0 "unwrap without --key finds the recipient key by its identifier" -- \
	p11s unwrap --trust "$pki/root.pem" --in "$tmp/w.eml" --out "$tmp/u2.eml"
expect 1 "unwrap with a key that is not a recipient is exit 1" -- \
	p11s unwrap --key "$(keyuri ec256)" --trust "$pki/root.pem" --in "$tmp/w.eml" --out "$tmp/u3.eml"
check "  ... and writes nothing" test ! -e "$tmp/u3.eml"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/other.key" \
	-subj "/CN=Some Other CA" -days 2 -out "$tmp/other.pem" 2>/dev/null
expect 1 "unwrap with the wrong trust anchor is exit 1" -- \
	p11s unwrap --trust "$tmp/other.pem" --in "$tmp/w.eml" --out "$tmp/u4.eml"
check "  ... and writes nothing" test ! -e "$tmp/u4.eml"

# --- triple wrapping (RFC 2634 §1.1), signed by the RSA key: From is its address
sed 's/^From: alice-ec256@/From: alice-rsa2048@/' "$msg" >"$tmp/msg-rsa.eml"
pss=
if [ "$backend" != libp11 ]; then pss=--pss; fi
expect 0 "wrap --triple with RSA-2048 ${pss:-PKCS#1}" -- \
	p11s wrap --triple $pss --key "$(keyuri rsa2048)" --chain "$pki/intermediate.pem" \
	--to "$pki/$triple_to.pem" --in "$tmp/msg-rsa.eml" --out "$tmp/t.eml"
expect 0 "unwrap --json of the triple wrap" -- \
	p11s --json unwrap --trust "$pki/root.pem" --in "$tmp/t.eml" --out "$tmp/tu.eml"
check "  ... three layers: signed, enveloped, signed, all ok" python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
assert d["valid"] and [(l["type"],l["ok"]) for l in d["layers"]]==[("signed",True),("enveloped",True),("signed",True)], d
assert d["layers"][1]["authenticated"] is True
' "$tmp/out"
check "  ... gives back the message" grep -q "Three layers deep." "$tmp/tu.eml"
# The outer signature with openssl cms, then the middle layer on the token, then the inner.
expect 0 "openssl cms verifies the outer signature" -- \
	openssl cms -verify -CAfile "$pki/root.pem" -in "$tmp/t.eml" -out "$tmp/t-inner.eml"
{ grep -v '^Content-\|^MIME-Version' "$tmp/msg-rsa.eml" | sed '/^\r\?$/,$d'; cat "$tmp/t-inner.eml"; } >"$tmp/t-env.eml"
expect 0 "the middle layer decrypts on the token" -- \
	p11s decrypt --in "$tmp/t-env.eml" --out "$tmp/t-signed.eml"
expect 0 "openssl cms verifies the inner signature" -- \
	openssl cms -verify -CAfile "$pki/root.pem" -in "$tmp/t-signed.eml" -out "$tmp/t-plain.txt"
check "  ... over the original content" grep -q "Three layers deep." "$tmp/t-plain.txt"

# --- tampering and bad input
python3 - "$tmp/t.eml" "$tmp/t-bad.eml" <<'PY'
import sys
d=open(sys.argv[1],'rb').read()
# flip one base64 character inside the enveloped body (the signed part 1)
i=d.index(b'base64')+200
c=d[i:i+1]
d=d[:i]+(b'A' if c!=b'A' else b'B')+d[i+1:]
open(sys.argv[2],'wb').write(d)
PY
expect 1 "a tampered triple wrap fails at the outer signature" -- \
	p11s unwrap --trust "$pki/root.pem" --in "$tmp/t-bad.eml" --out "$tmp/tb.eml"
check "  ... and writes nothing" test ! -e "$tmp/tb.eml"
expect 1 "unwrap of a plain message is exit 1" -- p11s unwrap --in "$msg" --out "$tmp/p.eml"
expect 2 "wrap without --to is a usage error" -- p11s wrap --key "$(keyuri rsa2048)" --in "$msg"
expect 2 "wrap to an unsuitable recipient is refused before signing" -- \
	p11s wrap --key "$(keyuri rsa2048)" --to "$pki/serverauth.pem" --in "$msg" --out "$tmp/x.eml"
check "  ... and writes nothing" test ! -e "$tmp/x.eml"

finish
