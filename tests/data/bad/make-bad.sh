#!/bin/bash
# Regenerate the committed bad-input corpus (tests/data/bad/*.eml) from the fuzz test PKI
# (tests/fuzz/pki). The large cases (deep nesting, a 10 MB header line, many signers and
# recipients, gigantic bodies) are made at test time by tests/integration/bad_input.sh.
# usage: tests/data/bad/make-bad.sh BUILD_DIR   (needs BUILD_DIR/src/cli/p11smime, openssl)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pki=$(cd "$here/../../fuzz/pki" && pwd)
bin=$(cd "$1" && pwd)/src/cli/p11smime
[ -x "$bin" ] || bin=$(cd "$1" && pwd)/main/src/cli/p11smime
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$here"
rm -f ./*.eml

msg=$tmp/msg.eml
printf 'From: alice@example.org\nTo: bob@example.org\nSubject: test\n\nHello Bob.\n' >"$msg"
sign() { openssl cms -sign -in "$msg" -signer "$pki/alice.pem" -inkey "$pki/alice.key" \
	-from alice@example.org "$@"; }
sign >"$tmp/good.eml"
sign -nodetach -outform DER >"$tmp/opaque.der"
b64() { openssl base64 -e; }
opaque_head='From: alice@example.org\nMIME-Version: 1.0\nContent-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\nContent-Transfer-Encoding: base64\n\n'
enc_head='From: alice@example.org\nMIME-Version: 1.0\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\nContent-Transfer-Encoding: base64\n\n'
bnd=$(sed -n 's/.*boundary="\([^"]*\)".*/\1/p' "$tmp/good.eml" | head -1)

# --- transfer encoding and DER ---
# p7s base64 cut in the middle of a group.
python3 - "$tmp/good.eml" <<'PY' >truncated-base64-p7s.eml
import sys, re
s = open(sys.argv[1], newline='').read()
head, sep, rest = s.partition('filename="smime.p7s"')
blank = rest.index('\n\n') + 2
body = rest[blank:]
end = body.index('\n\n------')
# keep 3 lines and 5 characters of the fourth: not a multiple of 4
lines = body[:end].split('\n')
cut = '\n'.join(lines[:3]) + '\n' + lines[3][:5]
print(head + sep + rest[:blank] + cut + body[end:], end='')
PY
# Valid base64, DER cut short.
{ printf "$opaque_head"; head -c 300 "$tmp/opaque.der" | b64; } >truncated-der-opaque.eml
# A byte outside the base64 alphabet.
{ printf "$opaque_head"; b64 <"$tmp/opaque.der" | sed '3s/^./!/'; } >bad-base64-char.eml
# Zero-length DER structures: an empty SEQUENCE; a signedData ContentInfo with an empty [0].
{ printf "$opaque_head"; printf '\x30\x00' | b64; } >zero-length-sequence.eml
{ printf "$opaque_head"; printf '\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02\xa0\x00' | b64; } \
	>zero-length-signeddata.eml
# Gigantic length fields: 2 GiB in four octets, 2^63 in eight, and an indefinite length
# that never ends.
{ printf "$opaque_head"; printf '\x30\x84\x7f\xff\xff\xff\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02\xa0\x84\x7f\xff\xff\x00' | b64; } \
	>huge-length-4.eml
{ printf "$opaque_head"; printf '\x30\x88\x7f\xff\xff\xff\xff\xff\xff\xff\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02' | b64; } \
	>huge-length-8.eml
{ printf "$opaque_head"; printf '\x30\x80\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02\xa0\x80\x30\x80\x02\x01\x01' | b64; } \
	>indefinite-unterminated.eml
{ printf "$enc_head"; printf '\x30\x84\x7f\xff\xff\xff\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x03\xa0\x84\x7f\xff\xff\x00' | b64; } \
	>enveloped-huge-length.eml
{ printf "$enc_head"; printf '\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x03\xa0\x00' | b64; } \
	>enveloped-zero-length.eml
# Empty input, and bytes that are not a message at all.
: >empty.eml
head -c 512 "$tmp/opaque.der" >raw-der-no-header.eml

# --- boundaries ---
sed "s/boundary=\"$bnd\"/boundary=\"not-the-boundary\"/" "$tmp/good.eml" >boundary-mismatch.eml
sed "s/; boundary=\"$bnd\"//" "$tmp/good.eml" >boundary-missing.eml
sed "/^--$bnd--/d" "$tmp/good.eml" >close-delimiter-missing.eml
sed "0,/^--$bnd\$/{//d}" "$tmp/good.eml" >first-delimiter-missing.eml
# Three parts in a multipart/signed.
awk -v b="--$bnd--" '$0==b{print "--'"$bnd"'"; print "Content-Type: text/plain"; print ""; print "extra"} {print}' \
	"$tmp/good.eml" >three-parts.eml
# A boundary longer than RFC 2046 allows (70).
long=$(printf 'b%.0s' $(seq 1 400))
sed "s/$bnd/$long/g" "$tmp/good.eml" >boundary-too-long.eml

# --- micalg (RFC 8551 §3.5.3.2: receivers tolerate a mismatch; see README.md) ---
sed 's/micalg="sha-256"/micalg="md5"/; s/micalg=sha-256/micalg=md5/' "$tmp/good.eml" >micalg-wrong.eml
sed 's/; *micalg="\?sha-256"\?//' "$tmp/good.eml" >micalg-missing.eml

# --- signatures ---
# The signature covers different content (part 1 changed after signing).
sed 's/^Hello Bob\./Hello Eve./' "$tmp/good.eml" >content-altered.eml
# The p7s of another message.
printf 'From: alice@example.org\nSubject: other\n\nOther text.\n' >"$tmp/other.eml"
openssl cms -sign -in "$tmp/other.eml" -signer "$pki/alice.pem" -inkey "$pki/alice.key" \
	-from alice@example.org >"$tmp/other-signed.eml"
python3 - "$tmp/good.eml" "$tmp/other-signed.eml" <<'PY' >signature-of-other-content.eml
import sys
a = open(sys.argv[1], newline='').read(); b = open(sys.argv[2], newline='').read()
def split(s):
    i = s.index('filename="smime.p7s"'); j = s.index('\n\n', i) + 2; k = s.index('\n\n------', j)
    return s[:j], s[j:k], s[k:]
ha, _, ta = split(a); _, sb, _ = split(b)
print(ha + sb + ta, end='')
PY
# Opaque, last octet of the (final) signature value flipped: DER stays valid.
python3 - "$tmp/opaque.der" <<'PY' | { printf "$opaque_head"; b64; } >opaque-bad-signature.eml
import sys
d = bytearray(open(sys.argv[1], 'rb').read()); d[-1] ^= 0x01
sys.stdout.buffer.write(d)
PY
# Two signers, one of them self-signed (untrusted): the valid one vouches only for itself.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$tmp/m.key" \
	-subj "/CN=Mallory" -addext "subjectAltName=email:alice@example.org" -days 7000 \
	-out "$tmp/m.pem" 2>/dev/null
sign -signer "$tmp/m.pem" -inkey "$tmp/m.key" >two-signers-one-untrusted.eml
# 65 signers, one over the limit (docs/security.md): the one SignerInfo, 65 times.
python3 - "$tmp/opaque.der" 65 <<'PY' | { printf "$opaque_head"; b64; } >signers-65.eml
import sys
d = open(sys.argv[1], 'rb').read()
def tlv(b, i):
    t = b[i]; l = b[i+1]; h = 2
    if l & 0x80:
        n = l & 0x7f; l = int.from_bytes(b[i+2:i+2+n], 'big'); h = 2 + n
    return t, h, l
def enc(tag, body):
    n = len(body)
    if n < 0x80: return bytes([tag, n]) + body
    lb = n.to_bytes((n.bit_length() + 7) // 8, 'big')
    return bytes([tag, 0x80 | len(lb)]) + lb + body
# ContentInfo SEQ { oid, [0] { SignedData SEQ { ..., signerInfos SET } } }
t, h, l = tlv(d, 0); ci = d[h:h+l]
t, h1, l1 = tlv(ci, 0); oid = ci[:h1+l1]; rest = ci[h1+l1:]
t, h2, l2 = tlv(rest, 0); sd = rest[h2:h2+l2]
t, h3, l3 = tlv(sd, 0); body = sd[h3:h3+l3]
elems = []; i = 0
while i < len(body):
    t, hh, ll = tlv(body, i); elems.append(body[i:i+hh+ll]); i += hh + ll
elems[-1] = enc(0x31, elems[-1][2 if elems[-1][1] < 0x80 else 2 + (elems[-1][1] & 0x7f):] * int(sys.argv[2]))
sys.stdout.buffer.write(enc(0x30, oid + enc(0xa0, enc(0x30, b''.join(elems)))))
PY
# Zero signers (Johnny C3): a SignedData without SignerInfos, via -noattr -nosigs is not
# possible; strip the SignerInfo of a -nocerts signature with asn1 editing instead.
python3 - "$tmp/opaque.der" <<'PY' | { printf "$opaque_head"; b64; } >zero-signers.eml
import sys
d = open(sys.argv[1], 'rb').read()
def tlv(b, i):
    t = b[i]; l = b[i+1]; h = 2
    if l & 0x80:
        n = l & 0x7f; l = int.from_bytes(b[i+2:i+2+n], 'big'); h = 2 + n
    return t, h, l
def enc(tag, body):
    n = len(body)
    if n < 0x80: return bytes([tag, n]) + body
    lb = n.to_bytes((n.bit_length() + 7) // 8, 'big')
    return bytes([tag, 0x80 | len(lb)]) + lb + body
# ContentInfo SEQ { oid, [0] { SignedData SEQ { ..., signerInfos SET } } }
t, h, l = tlv(d, 0); ci = d[h:h+l]
t, h1, l1 = tlv(ci, 0); oid = ci[:h1+l1]; rest = ci[h1+l1:]
t, h2, l2 = tlv(rest, 0); sd = rest[h2:h2+l2]
t, h3, l3 = tlv(sd, 0); body = sd[h3:h3+l3]
elems = []; i = 0
while i < len(body):
    t, hh, ll = tlv(body, i); elems.append(body[i:i+hh+ll]); i += hh + ll
elems[-1] = b'\x31\x00'   # empty signerInfos
sys.stdout.buffer.write(enc(0x30, oid + enc(0xa0, enc(0x30, b''.join(elems)))))
PY

# --- certificates with huge or malformed extensions ---
openssl req -new -key "$pki/alice.key" -subj "/CN=Alice big" -out "$tmp/a.csr"
{ printf 'keyUsage=critical,digitalSignature\nextendedKeyUsage=emailProtection\nsubjectAltName=email:alice@example.org'
  for i in $(seq 1 1500); do printf ',DNS:host%05d.example.org' "$i"; done; printf '\n'
  # 40 kB in a critical extension nobody knows: RFC 5280 §4.2 says reject.
  printf '1.3.6.1.4.1.99999.2=critical,DER:0482a000%s\n' "$(head -c 40960 /dev/zero | od -An -v -tx1 | tr -d ' \n')"; } >"$tmp/big.ext"
openssl x509 -req -in "$tmp/a.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -set_serial 0x7001 \
	-days 7000 -extfile "$tmp/big.ext" -out "$tmp/big.pem" 2>/dev/null
openssl cms -sign -in "$msg" -signer "$tmp/big.pem" -inkey "$pki/alice.key" \
	-from alice@example.org >cert-huge-extensions.eml
# keyUsage that is not a BIT STRING, and a critical extension nobody knows.
printf 'keyUsage=critical,DER:04020780\nextendedKeyUsage=emailProtection\n1.3.6.1.4.1.99999.1=critical,DER:0500\nsubjectAltName=email:alice@example.org\n' >"$tmp/bad.ext"
openssl x509 -req -in "$tmp/a.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -set_serial 0x7002 \
	-days 7000 -extfile "$tmp/bad.ext" -out "$tmp/badext.pem" 2>/dev/null
openssl cms -sign -in "$msg" -signer "$tmp/badext.pem" -inkey "$pki/alice.key" \
	-from alice@example.org >cert-malformed-extensions.eml

# --- enveloped ---
# Recipient infos that point at no key on the (mock) token.
"$bin" encrypt --to "$pki/bob.pem" --in "$msg" >recipient-no-key.eml
"$bin" encrypt --to "$pki/bob.pem" --cipher aes-128-cbc --in "$msg" >recipient-no-key-cbc.eml
# Enveloped base64 truncated.
head -c 700 recipient-no-key.eml >enveloped-truncated.eml
# smime-type says enveloped, the body is a SignedData.
{ printf "$enc_head"; b64 <"$tmp/opaque.der"; } >enveloped-type-confusion.eml
ls -la "$here"; du -sh "$here"
