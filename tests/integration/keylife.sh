#!/bin/bash
# A key's life on a BLANK SoftHSM token (issue 17, docs/keys.md): keygen of each type -> csr ->
# a test CA issues with `openssl x509 -req` -> import-cert -> sign -> `openssl cms -verify`;
# and the refusals: duplicate label or id, unknown type, a certificate of another key (with
# nothing written). The token is this script's own, in a temporary SOFTHSM2_CONF, so that it
# starts empty; PINs live in files and reach pkcs11-tool as env: references, never argv.
set -euo pipefail
backend=pkcs11
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
mod=${P11S_TEST_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
label=p11s-blank

mkdir -p "$tmp/tokens" "$tmp/pki"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
	"$tmp/tokens" >"$tmp/softhsm2.conf"
export SOFTHSM2_CONF=$tmp/softhsm2.conf
pinfile=$tmp/user.pin
(umask 077 && printf '%s\n' "$(openssl rand -hex 6)" >"$pinfile" &&
	printf '%s\n' "$(openssl rand -hex 8)" >"$tmp/so.pin")
P11S_KL_SO=$(head -n1 "$tmp/so.pin") pkcs11-tool --module "$mod" --slot-index 0 --init-token \
	--label "$label" --so-pin env:P11S_KL_SO >/dev/null 2>&1
P11S_KL_SO=$(head -n1 "$tmp/so.pin") P11S_KL_PIN=$(head -n1 "$pinfile") pkcs11-tool \
	--module "$mod" --token-label "$label" --init-pin --login --login-type so \
	--so-pin env:P11S_KL_SO --new-pin env:P11S_KL_PIN >/dev/null 2>&1
tok="pkcs11:token=$label"

# The test PKI: a CA of our own (tokens/make-token.sh makes the shared one the same way).
ca=$tmp/pki
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$ca/ca.key" -out "$ca/ca.pem" -days 30 \
	-subj "/CN=p11smime keylife CA" -addext basicConstraints=critical,CA:TRUE \
	-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
printf 'From: alice@example.org\r\nTo: bob@example.org\r\nSubject: keylife\r\n\r\nhello\r\n' \
	>"$tmp/msg"

nobjects() { P11S_KL_PIN=$(head -n1 "$pinfile") pkcs11-tool --module "$mod" --token-label \
	"$label" --login --pin env:P11S_KL_PIN -O 2>/dev/null | grep -c 'Object;' || true; }

# Ed25519 too (RFC 8419): its CSR, certificate and S/MIME signatures are made on the token with
# CKM_EDDSA; openssl cms 3.0 cannot verify them ("invalid digest"), p11smime verify does.
# The Ed25519 signatures (RFC 8419 §3): SHA-512 as digestAlgorithm and in micalg, id-Ed25519
# with the parameters absent, verified by p11smime (multipart and opaque); altered bytes fail.
ed25519_checks() {
	local eml=$tmp/$k.eml
	check "ed25519: micalg=sha-512" grep -q 'micalg="\{0,1\}sha-512' "$eml"
	expect 0 "ed25519: p11smime verifies the multipart signature" -- p11s verify \
		--in "$eml" --trust "$ca/ca.pem" --out "$tmp/$k.out"
	check "ed25519: the content comes back" grep -q hello "$tmp/$k.out"
	expect 0 "ed25519: --json names the algorithms" -- p11s --json verify --in "$eml" \
		--trust "$ca/ca.pem" --out /dev/null
	check "ed25519: signature_algorithm ED25519, digest sha512, key Ed25519" bash -c \
		"grep -q '\"signature_algorithm\":\"ED25519\"' '$tmp/out' &&
		 grep -q '\"digest\":\"sha512\"' '$tmp/out' && grep -q '\"key_type\":\"Ed25519\"' '$tmp/out'"
	sed 's/^hello/hellO/' "$eml" >"$tmp/$k.bad"
	expect 1 "ed25519: an altered body fails" -- p11s verify --in "$tmp/$k.bad" \
		--trust "$ca/ca.pem" --out /dev/null
	expect 0 "ed25519: opaque signing" -- p11s sign --opaque --key "$uri" --in "$tmp/msg" \
		--out "$tmp/$k.opaque"
	expect 0 "ed25519: p11smime verifies the opaque signature" -- p11s verify \
		--in "$tmp/$k.opaque" --trust "$ca/ca.pem" --out "$tmp/$k.out"
	check "ed25519: the opaque content comes back" grep -q hello "$tmp/$k.out"
	openssl cms -cmsout -in "$eml" -inform SMIME -outform DER -out "$tmp/$k.p7s" 2>/dev/null ||
		openssl smime -pk7out -in "$eml" -outform DER -out "$tmp/$k.p7s"
	check "ed25519: signatureAlgorithm id-Ed25519, parameters absent" bash -c \
		"openssl asn1parse -inform DER -in '$tmp/$k.p7s' | grep -A1 ':ED25519' | grep -qv NULL &&
		 ! openssl asn1parse -inform DER -in '$tmp/$k.p7s' | grep -A1 ':ED25519' | tail -n1 | grep -q NULL"
	expect 2 "ed25519: --digest sha256 is refused (RFC 8419 section 3: SHA-512)" -- p11s sign \
		--key "$uri" --digest sha256 --in "$tmp/msg" --out "$tmp/$k.x"
	check "ed25519: no output after the refusal" test ! -e "$tmp/$k.x"
}

for t in rsa:2048 rsa:3072 ec:p256 ec:p384 ed25519; do
	k=k-${t/:/}
	expect 0 "keygen $t" -- p11s keygen --token "$tok" --type "$t" --label "$k"
	uri=$(cat "$tmp/out")
	check "keygen $t prints a private-key URI with the label" \
		grep -q "^pkcs11:.*object=$k;type=private\$" "$tmp/out"
	check "keygen $t: private, sensitive, never extractable on the token" bash -c \
		"P11S_KL_PIN=\$(head -n1 '$pinfile') pkcs11-tool --module '$mod' --token-label '$label' \
		--login --pin env:P11S_KL_PIN -O -y privkey -a '$k' 2>/dev/null |
		grep -q 'sensitive, always sensitive, never extractable, local'"
	case $t in
	rsa:*) usage='decrypt, sign' ;;
	ec:*) usage='sign, derive' ;;
	*) usage='sign' ;;
	esac
	check "keygen $t: usages $usage" bash -c \
		"P11S_KL_PIN=\$(head -n1 '$pinfile') pkcs11-tool --module '$mod' --token-label '$label' \
		--login --pin env:P11S_KL_PIN -O -y privkey -a '$k' 2>/dev/null |
		grep -qx '  Usage:      $usage'"
	use=both
	[ "$t" = ed25519 ] && use=sign # RFC 8410 §5: an Ed25519 key only signs
	expect 0 "csr $t" -- p11s csr --key "$uri" --subject "/CN=Alice $t/O=Example" \
		--email alice@example.org --usage "$use" --out "$tmp/$k.csr"
	check "csr $t: openssl req -verify accepts it" \
		openssl req -in "$tmp/$k.csr" -verify -noout
	check "csr $t: SAN rfc822Name and emailProtection" bash -c \
		"openssl req -in '$tmp/$k.csr' -noout -text | grep -q 'email:alice@example.org' &&
		 openssl req -in '$tmp/$k.csr' -noout -text | grep -q 'E-mail Protection'"
	openssl x509 -req -in "$tmp/$k.csr" -CA "$ca/ca.pem" -CAkey "$ca/ca.key" -CAcreateserial \
		-days 30 -copy_extensions copy -out "$tmp/$k.pem" 2>/dev/null
	expect 0 "import-cert $t" -- p11s import-cert --key "$uri" --in "$tmp/$k.pem" \
		--chain "$ca/ca.pem"
	expect 0 "keys shows the certificate of $t" -- p11s --json keys --token "$tok"
	check "keys: $k has its certificate" bash -c "grep -q 'Alice $t' '$tmp/out'"
	expect 0 "sign with $t" -- p11s sign --key "$uri" --in "$tmp/msg" --out "$tmp/$k.eml"
	if [ "$t" = ed25519 ]; then
		ed25519_checks
		continue
	fi
	check "openssl cms -verify accepts the $t signature" openssl cms -verify \
		-in "$tmp/$k.eml" -CAfile "$ca/ca.pem" -purpose smimesign -out /dev/null
done
check "the CA certificate is on the token once" bash -c \
	"P11S_KL_PIN=\$(head -n1 '$pinfile') pkcs11-tool --module '$mod' --token-label '$label' \
	--login --pin env:P11S_KL_PIN -O -y cert 2>/dev/null | grep -c 'label:.*keylife CA' |
	grep -qx 1"

# Refusals.
expect 2 "duplicate label refused" -- p11s keygen --token "$tok" --type ec:p256 --label k-ecp256
id=$(grep -o 'id=[^;]*' <<<"$uri" | head -n1 | sed 's/^id=//; s/%//g')
expect 2 "duplicate id refused" -- p11s keygen --token "$tok" --type ec:p256 --label fresh \
	--id "$id"
expect 2 "unknown type refused" -- p11s keygen --token "$tok" --type ec:p521 --label x
check "unknown type names the types" grep -q 'unknown key type' "$tmp/err"
expect 2 "odd --id refused" -- p11s keygen --token "$tok" --type ec:p256 --label x --id abc
expect 0 "keygen a spare P-256 key" -- p11s keygen --token "$tok" --type ec:p256 --label spare
before=$(nobjects)
expect 2 "a certificate of another key of the same type is refused" -- p11s import-cert \
	--key "pkcs11:token=$label;object=spare;type=private" --in "$tmp/k-ecp256.pem"
check "the refusal says why" grep -q "public key is not that of key 'spare'; nothing written" \
	"$tmp/err"
expect 2 "a certificate of another RSA key is refused" -- p11s import-cert \
	--key "pkcs11:token=$label;object=k-rsa2048;type=private" --in "$tmp/k-rsa3072.pem"
check "nothing written by the refusals" test "$(nobjects)" = "$before"
expect 2 "a second certificate for a key is refused" -- p11s import-cert \
	--key "pkcs11:token=$label;object=k-ecp256;type=private" --in "$tmp/k-ecp256.pem"
expect 2 "csr for encryption with an Ed25519 key is refused" -- p11s csr \
	--key "pkcs11:token=$label;object=k-ed25519;type=private" --subject /CN=x \
	--email x@example.org --usage encrypt --out "$tmp/x.csr"
check "no partial csr output" test ! -e "$tmp/x.csr"
finish
