#!/bin/bash
# Regenerate the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/seed-*).
# Reproducers (crash-*, regress-*) found by fuzzing are kept; only seed-* files are rewritten.
# usage: tests/fuzz/make-seeds.sh BUILD_DIR
#   BUILD_DIR: a build with the tool (src/cli/p11smime) and replay_decrypt (tests/fuzz).
# Needs openssl(1). Signed seeds chain to tests/fuzz/pki/ca.pem (the verify target's anchor);
# enveloped seeds are encrypted to the mock token's certificates (fixed issuer and serial).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd)
bin=$build/src/cli/p11smime
[ -x "$bin" ] || bin=$build/main/src/cli/p11smime
replay=$(find "$build" -name replay_decrypt -type f | head -1)
pki=$here/pki
c=$here/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for t in mime_signed mime_enveloped mime_prepare verify decrypt uri pin_source config detached \
	revocation; do
	mkdir -p "$c/$t"
	rm -f "$c/$t"/seed-*
done

# The mock's certificates (RSA-2048, P-256, P-384, X25519) and PIN.
P11S_FUZZ_MOCK_CERTS=$tmp "$replay" /dev/null >/dev/null
printf '1234\n' >"$tmp/pin"
mock=(--backend mock --module mock --pin-source "file:$tmp/pin")

# --- plain messages (signing input) ---
p=$c/mime_prepare
printf 'From: Alice <alice@example.org>\nTo: bob@example.org\nSubject: hi\nDate: Sat, 28 Nov 2026 12:00:00 +0000\n\nHello Bob.\n' >"$p/seed-plain-lf.eml"
printf 'From: alice@example.org\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n folded\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe, trailing blank \r\nFrom the start\r\n' >"$p/seed-8bit-crlf.eml"
printf 'From: alice@example.org\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b1"\n\npreamble\n--b1\nContent-Type: text/plain\n\npart one\n--b1\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: binary\n\n\x00\x01\x02\xff\xfe\n--b1\nContent-Type: message/rfc822\n\nFrom: x@y\nContent-Type: multipart/alternative; boundary=b2\n\n--b2\nContent-Type: text/html; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\n<p>\xe9t\xe9</p>\n--b2--\n--b1--\nepilogue\n' >"$p/seed-multipart.eml"
printf 'Subject: only a header\n' >"$p/seed-header-only.eml"
printf 'From: a@b\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\nsoft=\nbreak =3D\n' >"$p/seed-qp.eml"

# --- signed messages (verify input) ---
v=$c/verify
msg=$p/seed-plain-lf.eml
sed 's/^From: .*/From: alice@example.org/' "$msg" >"$tmp/alice.eml"
openssl cms -sign -in "$tmp/alice.eml" -signer "$pki/alice.pem" -inkey "$pki/alice.key" \
	-from alice@example.org -to bob@example.org -subject hi >"$v/seed-detached-ec.eml"
openssl cms -sign -nodetach -in "$tmp/alice.eml" -signer "$pki/alice.pem" -inkey "$pki/alice.key" \
	-from alice@example.org >"$v/seed-opaque-ec.eml"
openssl cms -sign -keyid -in "$tmp/alice.eml" -signer "$pki/alice.pem" -inkey "$pki/alice.key" \
	-from alice@example.org >"$v/seed-detached-ski.eml"
openssl cms -sign -in "$tmp/alice.eml" -signer "$pki/bob.pem" -inkey "$pki/bob.key" \
	-keyopt rsa_padding_mode:pss -md sha384 -from bob@example.org >"$v/seed-detached-pss.eml"
openssl cms -sign -in "$tmp/alice.eml" -signer "$pki/alice.pem" -inkey "$pki/alice.key" \
	-signer "$pki/bob.pem" -inkey "$pki/bob.key" -from alice@example.org >"$v/seed-two-signers.eml"
"$bin" "${mock[@]}" sign --key 'pkcs11:token=mock;object=ec256;type=private' \
	--in "$msg" >"$v/seed-p11smime-mock.eml"
"$bin" "${mock[@]}" sign --opaque --key 'pkcs11:token=mock;object=ec384;type=private' \
	--in "$p/seed-multipart.eml" >"$v/seed-p11smime-mock-opaque.eml"
# A signed part inside multipart/mixed (never "signed", STANDARDS §12 M1).
{ printf 'From: alice@example.org\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=outer\n\n--outer\nContent-Type: text/plain\n\nlook:\n--outer\n'
  sed -n '/^MIME-Version/,$p' "$v/seed-detached-ec.eml"; printf '\n--outer--\n'; } >"$v/seed-nested.eml"
# .p7m as application/octet-stream (RFC 8551 §3.9), binary DER body.
{ printf 'From: alice@example.org\nMIME-Version: 1.0\nContent-Type: application/octet-stream; name=smime.p7m\nContent-Transfer-Encoding: binary\n\n'
  openssl cms -sign -nodetach -in "$tmp/alice.eml" -signer "$pki/alice.pem" -inkey "$pki/alice.key" -outform DER; } >"$v/seed-octet-p7m.eml"
# RFC 9788 header protection: hp="clear" read back by verify (verify_protected.c).
"$bin" "${mock[@]}" sign --protect-headers --key 'pkcs11:token=mock;object=ec256;type=private' \
	--in "$msg" >"$v/seed-p11smime-protected.eml"
cp "$v"/seed-* "$c/mime_signed/"

# --- enveloped messages (decrypt input) ---
e=$c/decrypt
"$bin" encrypt --to "$tmp/rsa2048.pem" --in "$msg" >"$e/seed-gcm-rsa.eml"
"$bin" encrypt --to "$tmp/ec256.pem" --cipher aes-128-cbc --in "$msg" >"$e/seed-cbc-ec256.eml"
"$bin" encrypt --to "$tmp/rsa2048.pem" --oaep --cipher aes-128-gcm --in "$msg" >"$e/seed-gcm-oaep.eml"
"$bin" encrypt --to "$tmp/ec384.pem" --to "$tmp/rsa2048.pem" --to "$pki/bob.pem" --in "$msg" \
	>"$e/seed-three-recipients.eml"
openssl cms -encrypt -aes256 -in "$msg" "$tmp/rsa2048.pem" >"$e/seed-openssl-cbc.eml"
openssl cms -encrypt -aes-128-gcm -keyid -in "$msg" "$tmp/ec256.pem" >"$e/seed-openssl-gcm-ski.eml"
# An RFC 8418 X25519 recipient: the mock's CKK_EC_MONTGOMERY key.
"$bin" encrypt --to "$tmp/x25519.pem" --in "$msg" >"$e/seed-x25519.eml"
# RFC 9788: an hp="cipher" payload, rendered by decrypt (enveloped.c write_rendered_head).
"$bin" encrypt --protect-headers --to "$tmp/rsa2048.pem" --in "$msg" >"$e/seed-protected.eml"
# Signed, then encrypted, protected: the payload is part 1 of the multipart/signed inside.
"$bin" "${mock[@]}" wrap --protect-headers --key 'pkcs11:token=mock;object=ec256;type=private' \
	--to "$tmp/rsa2048.pem" --in "$msg" >"$e/seed-wrap-protected.eml"
# Encrypted to nobody on the token.
"$bin" encrypt --to "$pki/bob.pem" --in "$msg" >"$e/seed-other-recipient.eml"
{ printf 'Content-Type: application/x-pkcs7-mime; name=smime.p7m\nContent-Transfer-Encoding: binary\n\n'
  openssl cms -encrypt -aes128 -in "$msg" -outform DER "$tmp/rsa2048.pem"; } >"$e/seed-x-pkcs7-binary.eml"
cp "$e"/seed-* "$c/mime_enveloped/"

# --- revocation answers (fuzz_revocation.c: first octet = which parser) ---
r=$c/revocation
mkdir -p "$r"
seed() { { printf "\\$(printf '%03o' "$1")"; cat "$2"; } >"$r/$3"; }
printf 'V\t20461231000000Z\t\t%s\tunknown\t%s\n' \
	"$(openssl x509 -in "$pki/alice.pem" -noout -serial | cut -d= -f2)" \
	"$(openssl x509 -in "$pki/alice.pem" -noout -subject -nameopt compat | sed 's/^subject=//')" \
	>"$tmp/index.good"
sed 's/^V\t\([^\t]*\)\t\t/R\t\1\t261201000000Z,keyCompromise\t/' "$tmp/index.good" >"$tmp/index.revoked"
openssl ocsp -issuer "$pki/ca.pem" -cert "$pki/alice.pem" -reqout "$tmp/ocsp.req" -no_nonce 2>/dev/null
for st in good revoked; do
	openssl ocsp -index "$tmp/index.$st" -rsigner "$pki/ca.pem" -rkey "$pki/ca.key" \
		-CA "$pki/ca.pem" -reqin "$tmp/ocsp.req" -respout "$tmp/ocsp.$st" -ndays 3650 2>/dev/null
	seed 1 "$tmp/ocsp.$st" "seed-ocsp-$st-cached.der"
	seed 0 "$tmp/ocsp.$st" "seed-ocsp-$st-no-nonce.der"
done
# Signed by a key the CA did not certify for OCSP (alice's): refused (RFC 6960 §4.2.2.2).
openssl ocsp -index "$tmp/index.good" -rsigner "$pki/alice.pem" -rkey "$pki/alice.key" \
	-CA "$pki/ca.pem" -reqin "$tmp/ocsp.req" -respout "$tmp/ocsp.alice" -ndays 30 2>/dev/null
seed 1 "$tmp/ocsp.alice" seed-ocsp-unauthorised.der
printf '0\003\n\001\001' >"$tmp/ocsp.tryLater" # OCSPResponse { responseStatus malformedRequest }
seed 1 "$tmp/ocsp.tryLater" seed-ocsp-status-only.der
# A CRL (DER and PEM) revoking alice, and caIssuers answers.
cat >"$tmp/ca.cnf" <<CNF
[ca]
default_ca = fz
[fz]
database = $tmp/index.revoked
crlnumber = $tmp/crlnumber
default_md = sha256
default_crl_days = 3650
CNF
echo 01 >"$tmp/crlnumber"
openssl ca -config "$tmp/ca.cnf" -gencrl -keyfile "$pki/ca.key" -cert "$pki/ca.pem" \
	-out "$tmp/crl.pem" 2>/dev/null
openssl crl -in "$tmp/crl.pem" -outform DER -out "$tmp/crl.der"
seed 2 "$tmp/crl.der" seed-crl.der
seed 2 "$tmp/crl.pem" seed-crl.pem
openssl x509 -in "$pki/ca.pem" -outform DER -out "$tmp/ca.der"
seed 3 "$tmp/ca.der" seed-caissuers-cert.der
openssl crl2pkcs7 -nocrl -certfile "$pki/ca.pem" -certfile "$pki/alice.pem" -outform DER \
	-out "$tmp/certs.p7c"
seed 3 "$tmp/certs.p7c" seed-caissuers-p7c.der
# A verify seed with alice's response stapled in its SignedData (RFC 5940), and its p7s for
# the stapled-response reader (verify_stapled.c, first octet 5).
/usr/bin/python3 "$here/../revocation/staple.py" "$c/verify/seed-detached-ec.eml" \
	"$tmp/ocsp.good" "$c/verify/seed-stapled-ocsp.eml"
awk 'f && /^------/ { exit } f { print }
	/^Content-Type: *application\/(x-)?pkcs7-signature/ { h = 1 }
	h && /^\r?$/ { f = 1 }' "$c/verify/seed-stapled-ocsp.eml" | tr -d '\r' | base64 -d \
	>"$tmp/stapled.p7s"
seed 5 "$tmp/stapled.p7s" seed-stapled-signeddata.der
for u in 'http://ocsp.example.org/' 'https://x.pki.example:8443/ca.crt' \
	'http://evil.pki.example/crl' 'file:///etc/passwd' 'ldap://ldap.example.org/cn=CA' \
	'HTTP://[::1]:80/a' 'http://user@host/'; do
	printf '%s' "$u" >"$tmp/url"
	seed 4 "$tmp/url" "seed-url-$(printf '%s' "$u" | md5sum | cut -c1-8)"
done

# --- URIs, pin sources, configuration ---
u=$c/uri
i=0
for s in 'pkcs11:token=mock;object=rsa2048;type=private' \
	'pkcs11:model=mock;manufacturer=p11smime;serial=0000000000000001;token=mock;id=%01;object=rsa2048;type=private' \
	'pkcs11:token=My%20Token;id=%01%02%ff;type=cert?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin' \
	'pkcs11:library-manufacturer=OpenSC%20Project;library-version=0.23;slot-id=1?module-name=opensc-pkcs11' \
	'pkcs11:object=a;x-vendor=1?pin-value=1234' 'pkcs11:' 'pkcs11:type=secret-key;object=%E2%82%AC'; do
	printf '%s' "$s" >"$u/seed-$((i++))"
done
i=0
for s in 'env:P11S_PIN' 'file:/run/user/1000/pin' 'file:///etc/p11smime/pin' '/abs/pin' 'fd:3' 'prompt' 'fd:-1' 'fd:99999999999999999999'; do
	printf '%s' "$s" >"$c/pin_source/seed-$((i++))"
done
printf '# p11smime configuration\nmodule = /usr/lib/softhsm/libsofthsm2.so\nbackend=pkcs11\npin-source = file:/run/pin\n; comment\n[gateway]\nlisten = 127.0.0.1:10025\n' >"$c/config/seed-full"
printf 'module=/a\nmodule=/b\n\n[gateway]\r\nlisten=x\r\n' >"$c/config/seed-repeat-crlf"
printf '[unterminated\nkey\n=value\n' >"$c/config/seed-bad"
# detached (p11smime-gpg --verify): signatures over fuzz_detached.c's fixed commit object.
printf 'tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor A <alice@example.org> 1700000000 +0000\ncommitter A <alice@example.org> 1700000000 +0000\n\nfuzz\n' >"$tmp/commit"
openssl cms -sign -binary -md sha256 -in "$tmp/commit" -signer "$pki/alice.pem" -inkey "$pki/alice.key" \
	-outform PEM | sed 's/BEGIN CMS/BEGIN SIGNED MESSAGE/; s/END CMS/END SIGNED MESSAGE/' >"$c/detached/seed-pem"
openssl cms -sign -binary -md sha512 -in "$tmp/commit" -signer "$pki/bob.pem" -inkey "$pki/bob.key" \
	-outform DER -out "$c/detached/seed-der"
openssl cms -sign -binary -nodetach -in "$tmp/commit" -signer "$pki/alice.pem" -inkey "$pki/alice.key" \
	-outform PEM -out "$c/detached/seed-attached-cms"
ls -R "$c" | head -80
du -sh "$c"
