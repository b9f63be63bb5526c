#!/bin/bash
# Integration suite of `verify`: messages signed by `openssl cms -sign` with software keys
# certified by the token PKI (tokens/make-token.sh), detached and opaque, RSA and EC, and the
# failure classes of CLI.md / issue 3 each with its own reason.
# usage: verify.sh   (environment from tests/CMakeLists.txt: P11S_BIN, P11S_TEST_PKI)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

exec </dev/null
v() { "$bin" verify "$@"; }

# --- extra software-key certificates from the test intermediate CA -----------------------
# issue NAME SECTION EXTFILE SUBJECT KEYALG...: key, CSR and certificate in $tmp.
issue() {
	local name=$1 section=$2 extfile=$3 subject=$4
	shift 4
	openssl genpkey "$@" -out "$tmp/$name.key" 2>/dev/null
	openssl req -new -key "$tmp/$name.key" -subj "$subject" -out "$tmp/$name.csr"
	openssl x509 -req -in "$tmp/$name.csr" -CA "$pki/intermediate.pem" \
		-CAkey "$pki/intermediate/intermediate.key" -set_serial "0x$(openssl rand -hex 12)" \
		-days 30 -sha256 -extfile "$extfile" -extensions "$section" -out "$tmp/$name.pem" 2>/dev/null
}
cat >"$tmp/ext.cnf" <<'EOF'
[ ee_anyeku ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = anyExtendedKeyUsage
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = email:copy
EOF
issue good ee_rsa "$pki/openssl.cnf" "/O=p11smime test/CN=Good User/emailAddress=good@example.org" \
	-algorithm RSA -pkeyopt rsa_keygen_bits:2048
issue goodec ee_ec "$pki/openssl.cnf" "/O=p11smime test/CN=Good EC/emailAddress=goodec@example.org" \
	-algorithm EC -pkeyopt ec_paramgen_curve:P-256
issue anyeku ee_anyeku "$tmp/ext.cnf" "/O=p11smime test/CN=Any EKU/emailAddress=anyeku@example.org" \
	-algorithm RSA -pkeyopt rsa_keygen_bits:2048
# An unrelated root for the wrong-anchor case.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/other.key" -subj "/CN=Other Root" \
	-days 30 -out "$tmp/other-root.pem" 2>/dev/null

# The signed entity: canonical CRLF, as RFC 8551 §3.1.1 wants it signed.
printf 'Content-Type: text/plain; charset=us-ascii\r\n\r\nHello, this is a signed test message.\r\nSecond line.\r\n' >"$tmp/entity"

# sign OUT FROM CERT KEY [openssl cms options...]: a complete message with From/To/Subject.
sign() {
	local out=$1 from=$2 cert=$3 key=$4
	shift 4
	openssl cms -sign -binary -in "$tmp/entity" -signer "$cert" -inkey "$key" \
		-certfile "$pki/intermediate.pem" -md sha256 "$@" -out "$tmp/body.smime"
	{
		printf 'From: %s\nTo: bob@example.org\nSubject: verify test\nDate: %s\n' "$from" "$(LC_ALL=C date -R)"
		cat "$tmp/body.smime"
	} >"$out"
}

anchor=(--trust "$pki/root.pem")

# --- valid signatures: detached and opaque, RSA and EC ----------------------------------
sign "$tmp/rsa.eml" good@example.org "$tmp/good.pem" "$tmp/good.key"
expect 0 "detached RSA signature verifies" -- v "${anchor[@]}" --in "$tmp/rsa.eml"
check "  ... verdict VALID and multipart/signed" grep -q "^verdict: VALID" "$tmp/out"
check "  ... names the signer and its address" grep -q "good@example.org" "$tmp/out"
check "  ... shows the chain to the anchor" grep -q "p11smime Test Root CA" "$tmp/out"
check "  ... marks signingTime as claimed" grep -q "claimed by the signer" "$tmp/out"
sign "$tmp/ec.eml" goodec@example.org "$tmp/goodec.pem" "$tmp/goodec.key"
expect 0 "detached ECDSA P-256 signature verifies" -- v "${anchor[@]}" --in "$tmp/ec.eml"
sign "$tmp/rsa-opaque.eml" good@example.org "$tmp/good.pem" "$tmp/good.key" -nodetach
expect 0 "opaque RSA signed-data verifies" -- v "${anchor[@]}" --in "$tmp/rsa-opaque.eml"
check "  ... structure opaque" grep -q "^structure: opaque" "$tmp/out"
sign "$tmp/ec-opaque.eml" goodec@example.org "$tmp/goodec.pem" "$tmp/goodec.key" -nodetach
expect 0 "opaque ECDSA signed-data verifies" -- v "${anchor[@]}" --in "$tmp/ec-opaque.eml"
sign "$tmp/pss.eml" good@example.org "$tmp/good.pem" "$tmp/good.key" \
	-keyopt rsa_padding_mode:pss -keyopt rsa_pss_saltlen:digest
expect 0 "RSASSA-PSS signature verifies" -- v "${anchor[@]}" --in "$tmp/pss.eml"
check "  ... reports RSASSA-PSS" grep -q "signature algorithm: RSASSA-PSS" "$tmp/out"
sign "$tmp/sha512.eml" good@example.org "$tmp/good.pem" "$tmp/good.key" -md sha512
expect 0 "SHA-512 signature verifies" -- v "${anchor[@]}" --in "$tmp/sha512.eml"
sign "$tmp/cades.eml" good@example.org "$tmp/good.pem" "$tmp/good.key" -cades
expect 0 "signingCertificateV2 (-cades) matching the signer verifies" -- v "${anchor[@]}" --in "$tmp/cades.eml"
expect 0 "DER trust anchor and --crl with every CRL" -- \
	v --trust "$pki/root.der" --crl "$pki/root.crl.der" --crl "$pki/intermediate.crl.pem" --in "$tmp/rsa.eml"
expect 0 "stdin input (regular file)" -- sh -c "'$bin' verify --trust '$pki/root.pem' <'$tmp/rsa.eml'"
expect 0 "stdin input (pipe, spooled)" -- sh -c "cat '$tmp/rsa.eml' | '$bin' verify --trust '$pki/root.pem'"
expect 0 "--certs supplies an intermediate the message lacks" -- sh -c "
	openssl cms -sign -binary -in '$tmp/entity' -signer '$tmp/good.pem' -inkey '$tmp/good.key' -out '$tmp/nochain.smime' &&
	{ printf 'From: good@example.org\n'; cat '$tmp/nochain.smime'; } >'$tmp/nochain.eml' &&
	'$bin' verify --trust '$pki/root.pem' --certs '$pki/intermediate.pem' --in '$tmp/nochain.eml'"
expect 1 "  ... and without --certs the path is untrusted" -- v "${anchor[@]}" --in "$tmp/nochain.eml"
check "  ... reason untrusted" grep -q "reason: untrusted" "$tmp/out"

# LF-only storage (Unix mbox/maildir): canonicalised back to CRLF before hashing.
tr -d '\r' <"$tmp/rsa.eml" >"$tmp/lf.eml"
expect 0 "LF-only copy of a detached message verifies" -- v "${anchor[@]}" --in "$tmp/lf.eml"

# micalg not matching the signer's digest: reported, not fatal (RFC 8551 tolerance).
sed 's/micalg="sha-256"/micalg="sha-512"/' "$tmp/rsa.eml" >"$tmp/micalg.eml"
expect 0 "micalg mismatch is only a warning" -- v "${anchor[@]}" --in "$tmp/micalg.eml"
check "  ... warning micalg-mismatch" grep -q "warning: micalg-mismatch" "$tmp/out"

# --- failures, each with its own reason ---------------------------------------------------
sed 's/Hello, this is a signed/Jello, this is a signed/' "$tmp/rsa.eml" >"$tmp/altered.eml"
expect 1 "one-byte alteration of the signed content" -- v "${anchor[@]}" --in "$tmp/altered.eml"
check "  ... reason content-altered" grep -q "reason: content-altered" "$tmp/out"
python3 - "$tmp/rsa-opaque.eml" "$tmp/altered-opaque.eml" <<'EOF'
import base64, email, sys
raw = open(sys.argv[1], 'rb').read()
head, _, body = raw.partition(b'\n\n')
der = bytearray(base64.b64decode(body))
i = der.find(b'Hello')
der[i] ^= 0x02
open(sys.argv[2], 'wb').write(head + b'\n\n' + base64.encodebytes(bytes(der)))
EOF
expect 1 "one-byte alteration of opaque content" -- v "${anchor[@]}" --in "$tmp/altered-opaque.eml"
check "  ... reason content-altered" grep -q "reason: content-altered" "$tmp/out"

expect 1 "wrong trust anchor" -- v --trust "$tmp/other-root.pem" --in "$tmp/rsa.eml"
check "  ... reason untrusted" grep -q "reason: untrusted" "$tmp/out"
expect 1 "no trust anchor at all" -- v --in "$tmp/rsa.eml"

sign "$tmp/expired.eml" expired@example.org "$pki/expired.pem" "$pki/expired.key"
expect 1 "expired signer certificate" -- v "${anchor[@]}" --in "$tmp/expired.eml"
check "  ... reason expired" grep -q "reason: expired" "$tmp/out"
expect 0 "  ... but valid --at a time inside its validity" -- \
	v "${anchor[@]}" --at 2020-06-01T12:00:00Z --in "$tmp/expired.eml"
expect 0 "  ... --at with a UTC offset" -- v "${anchor[@]}" --at 2020-06-01T14:00:00+02:00 --in "$tmp/expired.eml"
expect 2 "  ... --at that is not RFC 3339 is a usage error" -- v "${anchor[@]}" --at yesterday --in "$tmp/expired.eml"

sign "$tmp/revoked.eml" revoked@example.org "$pki/revoked.pem" "$pki/revoked.key"
expect 0 "revoked certificate without --crl: no revocation checking" -- v "${anchor[@]}" --in "$tmp/revoked.eml"
expect 1 "revoked certificate with the CRLs" -- v "${anchor[@]}" --crl "$pki/crls.pem" --in "$tmp/revoked.eml"
check "  ... reason revoked" grep -q "reason: revoked" "$tmp/out"
expect 1 "a certificate with no CRL is a failure once --crl is given" -- \
	v "${anchor[@]}" --crl "$pki/intermediate.crl.pem" --in "$tmp/rsa.eml"
check "  ... reason crl-missing" grep -q "reason: crl-missing" "$tmp/out"

sign "$tmp/keyenc.eml" keyenc-only@example.org "$pki/keyenc-only.pem" "$pki/keyenc-only.key"
expect 1 "keyEncipherment-only certificate" -- v "${anchor[@]}" --in "$tmp/keyenc.eml"
check "  ... reason key-usage" grep -q "reason: key-usage" "$tmp/out"
sign "$tmp/serverauth.eml" serverauth@example.org "$pki/serverauth.pem" "$pki/serverauth.key"
expect 1 "serverAuth-only EKU certificate" -- v "${anchor[@]}" --in "$tmp/serverauth.eml"
check "  ... reason ext-key-usage" grep -q "reason: ext-key-usage" "$tmp/out"
sign "$tmp/anyeku.eml" anyeku@example.org "$tmp/anyeku.pem" "$tmp/anyeku.key"
expect 0 "anyExtendedKeyUsage is accepted (RFC 8550 section 4.4.4)" -- v "${anchor[@]}" --in "$tmp/anyeku.eml"

sign "$tmp/from.eml" mallory@example.org "$tmp/good.pem" "$tmp/good.key"
expect 1 "From not an address of the certificate" -- v "${anchor[@]}" --in "$tmp/from.eml"
check "  ... reason address-mismatch" grep -q "reason: address-mismatch" "$tmp/out"
sign "$tmp/from-case.eml" '"Good User" <GOOD@Example.ORG>' "$tmp/good.pem" "$tmp/good.key"
expect 0 "From compared as addr-spec, case-insensitive" -- v "${anchor[@]}" --in "$tmp/from-case.eml"
sign "$tmp/from-display.eml" '"good@example.org" <mallory@example.org>' "$tmp/good.pem" "$tmp/good.key"
expect 1 "an address in the display name does not count" -- v "${anchor[@]}" --in "$tmp/from-display.eml"
sign "$tmp/from-two.eml" 'good@example.org, mallory@example.org' "$tmp/good.pem" "$tmp/good.key"
expect 1 "a From with two mailboxes is a failure" -- v "${anchor[@]}" --in "$tmp/from-two.eml"
sign "$tmp/san.eml" someone-else@example.net "$pki/san-mismatch.pem" "$pki/san-mismatch.key"
expect 0 "SAN-only address matches From" -- v "${anchor[@]}" --in "$tmp/san.eml"

sed '/^From:/d' "$tmp/rsa.eml" >"$tmp/nofrom.eml"
expect 1 "no From while the certificate has an address" -- v "${anchor[@]}" --in "$tmp/nofrom.eml"
check "  ... reason address-mismatch" grep -q "reason: address-mismatch" "$tmp/out"
expect 0 "--no-sender-check (caller checks the sender) accepts it" -- \
	v "${anchor[@]}" --no-sender-check --in "$tmp/nofrom.eml"
check "  ... with warning sender-not-checked" grep -q "warning: sender-not-checked" "$tmp/out"

# Two signers, the second one expired: both reported, the message is invalid.
sign "$tmp/two.eml" good@example.org "$tmp/good.pem" "$tmp/good.key" \
	-signer "$pki/expired.pem" -inkey "$pki/expired.key"
expect 1 "two signers, one bad" -- v "${anchor[@]}" --in "$tmp/two.eml"
check "  ... signer 1 valid" grep -q "^signer 1: VALID" "$tmp/out"
check "  ... signer 2 invalid, expired" sh -c "grep -q '^signer 2: INVALID' '$tmp/out' && grep -q 'reason: expired' '$tmp/out'"
sign "$tmp/two-ok.eml" good@example.org "$tmp/good.pem" "$tmp/good.key" \
	-signer "$tmp/goodec.pem" -inkey "$tmp/goodec.key"
expect 1 "two good signers, the second with another address than From" -- v "${anchor[@]}" --in "$tmp/two-ok.eml"

# Zero signers (Johnny C3): a degenerate SignedData as the p7s.
openssl crl2pkcs7 -nocrl -certfile "$tmp/good.pem" -outform DER -out "$tmp/certsonly.der"
mkmultipart() { # OUT P7S-DER
	{
		printf 'From: good@example.org\nMIME-Version: 1.0\n'
		printf 'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg="sha-256"; boundary="BOUNDARY"\n\n'
		printf -- '--BOUNDARY\n'
		cat "$tmp/entity"
		printf -- '\n--BOUNDARY\nContent-Type: application/pkcs7-signature; name="smime.p7s"\nContent-Transfer-Encoding: base64\n\n'
		base64 "$2"
		printf -- '\n--BOUNDARY--\n'
	} >"$1"
}
mkmultipart "$tmp/zero.eml" "$tmp/certsonly.der"
expect 1 "zero signers" -- v "${anchor[@]}" --in "$tmp/zero.eml"
check "  ... reason no-signers" grep -q "reason: no-signers" "$tmp/out"

# eContent inside the p7s of a multipart/signed (Johnny C1).
openssl cms -sign -binary -nodetach -in "$tmp/entity" -signer "$tmp/good.pem" -inkey "$tmp/good.key" \
	-certfile "$pki/intermediate.pem" -outform DER -out "$tmp/attached.der"
mkmultipart "$tmp/econtent.eml" "$tmp/attached.der"
expect 1 "p7s carrying eContent in multipart/signed" -- v "${anchor[@]}" --in "$tmp/econtent.eml"
check "  ... reason econtent-in-detached" grep -q "reason: econtent-in-detached" "$tmp/out"

# A signed part inside multipart/mixed (M1-M4): never "signed".
{
	printf 'From: good@example.org\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="OUTER"\n\n'
	printf -- '--OUTER\nContent-Type: text/plain\n\nUnsigned text an attacker added.\n'
	printf -- '--OUTER\n'
	sed -n '/^MIME-Version/,$p' "$tmp/body.smime" | sed 1d
	printf -- '\n--OUTER--\n'
} >"$tmp/nested.eml"
sign "$tmp/unused.eml" good@example.org "$tmp/good.pem" "$tmp/good.key"
{
	printf 'From: good@example.org\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="OUTER"\n\n'
	printf -- '--OUTER\nContent-Type: text/plain\n\nUnsigned text an attacker added.\n'
	printf -- '--OUTER\n'
	sed '/^MIME-Version/d' "$tmp/body.smime"
	printf -- '\n--OUTER--\n'
} >"$tmp/nested.eml"
expect 1 "signed part nested in multipart/mixed is not a signed message" -- v "${anchor[@]}" --in "$tmp/nested.eml"
check "  ... reason signed-part-not-root, names part 2" sh -c "grep -q 'reason: signed-part-not-root' '$tmp/out' && grep -q 'only part 2' '$tmp/out'"
printf 'From: good@example.org\nMIME-Version: 1.0\nContent-Type: text/plain\n\nnot signed\n' >"$tmp/plain.eml"
expect 1 "an unsigned message is exit 1" -- v "${anchor[@]}" --in "$tmp/plain.eml"

# --- --out and --json ------------------------------------------------------------------
rm -f "$tmp/content.out"
expect 0 "--out writes the verified entity" -- v "${anchor[@]}" --in "$tmp/lf.eml" --out "$tmp/content.out"
check "  ... byte-exact canonical part 1" cmp -s "$tmp/entity" "$tmp/content.out"
expect 0 "--out of opaque content" -- v "${anchor[@]}" --in "$tmp/rsa-opaque.eml" --out "$tmp/content2.out"
check "  ... is the eContent" cmp -s "$tmp/entity" "$tmp/content2.out"
expect 1 "--out not written when invalid" -- v "${anchor[@]}" --in "$tmp/altered.eml" --out "$tmp/never.out"
check "  ... no file" test ! -e "$tmp/never.out"
echo keep >"$tmp/keep.out"
expect 1 "--out leaves an existing file untouched when invalid" -- v "${anchor[@]}" --in "$tmp/altered.eml" --out "$tmp/keep.out"
check "  ... unchanged" grep -qx keep "$tmp/keep.out"
expect 0 "--out - puts the content on stdout and the report on stderr" -- v "${anchor[@]}" --in "$tmp/rsa.eml" --out -
check "  ... stdout is the content" cmp -s "$tmp/entity" "$tmp/out"
check "  ... stderr has the report" grep -q "^verdict: VALID" "$tmp/err"

expect 1 "--json on a two-signer failure" -- "$bin" --json verify "${anchor[@]}" --in "$tmp/two.eml"
check "  ... valid JSON with both signers and reasons" python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
assert d["valid"] is False and d["structure"]=="multipart/signed" and d["signed_part"]=="whole-message"
s=d["signers"]; assert len(s)==2
assert s[0]["valid"] is True and s[0]["emails"]==["good@example.org"] and s[0]["digest"]=="sha256"
assert s[1]["valid"] is False and any(r["code"]=="expired" and r["message"] for r in s[1]["reasons"])
assert s[0]["chain"][-1].endswith("CN=p11smime Test Root CA,O=p11smime test")
assert s[0]["signing_time"].endswith("Z") and s[0]["serial"] and s[0]["issuer"]
' "$tmp/out"
expect 0 "--json on a valid message" -- "$bin" --json verify "${anchor[@]}" --in "$tmp/ec.eml"
check "  ... valid true, ecdsa" python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
assert d["valid"] is True and d["signers"][0]["signature_algorithm"].startswith("ecdsa"), d
assert d["reasons"]==[] and d["signers"][0]["reasons"]==[]
' "$tmp/out"

# --- malformed input: exit 2, one line on stderr ---------------------------------------------
python3 - "$tmp/rsa.eml" "$tmp/trunc.eml" <<'EOF'
import sys
s = open(sys.argv[1]).read()
i = s.index('Content-Transfer-Encoding: base64')
j = s.index('\n\n', i) + 2
k = s.index('------', j)
body = s[j:k].replace('\n', '')
open(sys.argv[2], 'w').write(s[:j] + body[:len(body) // 2 + 1] + '\n' + s[k:])
EOF
expect 2 "truncated base64 in the p7s" -- v "${anchor[@]}" --in "$tmp/trunc.eml"
check "  ... one line on stderr" test "$(wc -l <"$tmp/err")" -eq 1
b=$(sed -n 's/.*boundary="\([^"]*\)".*/\1/p' "$tmp/rsa.eml")
sed "s/--$b/--XX$b/" "$tmp/rsa.eml" >"$tmp/noboundary.eml"
expect 2 "missing boundary delimiters" -- v "${anchor[@]}" --in "$tmp/noboundary.eml"
check "  ... one line on stderr" test "$(wc -l <"$tmp/err")" -eq 1
head -c 200 /dev/urandom | base64 -w0 >"$tmp/garbage.eml"
expect 2 "not a MIME message" -- v "${anchor[@]}" --in "$tmp/garbage.eml"
check "  ... one line on stderr" test "$(wc -l <"$tmp/err")" -eq 1
expect 2 "unreadable trust file is a usage error" -- v --trust "$tmp/nonexistent.pem" --in "$tmp/rsa.eml"
expect 2 "unknown option" -- v --bogus


# --- evidence report: the revocation status used per certificate (docs/evidence.md) ----------
rev() { python3 -c 'import json,sys
for e in json.load(open(sys.argv[1]))["signers"][0]["revocation"]:
    c = e["crl"] or {}
    print(e["status"], e["checked"], e["problem"], c.get("issuer"), c.get("this_update"),
          c.get("next_update"), c.get("number"), "|", e["subject"])' "$tmp/out"; }
expect 0 "--json with the CRLs" -- "$bin" --json verify "${anchor[@]}" --crl "$pki/crls.pem" \
	--in "$tmp/rsa.eml"
check "  ... revocation: one entry per chain certificate" test "$(rev | wc -l)" -eq \
	"$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["signers"][0]["chain"]))' "$tmp/out")"
rev >"$tmp/rev"
check "  ... signer: good by the intermediate CA's CRL with its dates and number" grep -Eq \
	'^good True None CN=p11smime Test Intermediate CA,O=p11smime test [0-9T:-]+Z [0-9T:-]+Z [0-9A-F]+ [|]' "$tmp/rev"
check "  ... intermediate: good by the root CA's CRL" \
	sh -c "sed -n 2p '$tmp/rev' | grep -q '^good True None CN=p11smime Test Root CA'"
expect 0 "--json without --crl" -- "$bin" --json verify "${anchor[@]}" --in "$tmp/rsa.eml"
check "  ... every certificate not-checked, no CRL" sh -c \
	"python3 -c 'import json,sys
r = json.load(open(sys.argv[1]))[\"signers\"][0][\"revocation\"]
sys.exit(not r or any(e[\"status\"] != \"not-checked\" or e[\"checked\"] or e[\"crl\"] for e in r))' '$tmp/out'"
expect 1 "--json, revoked signer" -- "$bin" --json verify "${anchor[@]}" --crl "$pki/crls.pem" \
	--in "$tmp/revoked.eml"
check "  ... signer revoked, with the CRL that lists it" sh -c \
	"python3 -c 'import json,sys
e = json.load(open(sys.argv[1]))[\"signers\"][0][\"revocation\"][0]
sys.exit(not (e[\"status\"] == \"revoked\" and e[\"crl\"][\"issuer\"].startswith(\"CN=p11smime Test Intermediate CA\")))' '$tmp/out'"
expect 1 "--json, no CRL for the intermediate" -- "$bin" --json verify "${anchor[@]}" \
	--crl "$pki/intermediate.crl.pem" --in "$tmp/rsa.eml"
check "  ... signer good (the intermediate's CRL), intermediate unknown (crl-missing)" sh -c \
	"python3 -c 'import json,sys
r = json.load(open(sys.argv[1]))[\"signers\"][0][\"revocation\"]
sys.exit(not (r[0][\"status\"] == \"good\" and r[1][\"status\"] == \"unknown\" and r[1][\"problem\"] == \"crl-missing\" and r[1][\"crl\"] is None))' '$tmp/out'"
expect 0 "text report lists the revocation status" -- v "${anchor[@]}" --crl "$pki/crls.pem" \
	--in "$tmp/rsa.eml"
check "  ... '0: good (CRL of ...'" grep -q '^    0: good (CRL of CN=p11smime Test Intermediate CA' "$tmp/out"
finish
