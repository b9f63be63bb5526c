#!/bin/bash
# Ed25519 S/MIME (RFC 8419) against an independent implementation, BouncyCastle's CMS (Debian
# libbcpkix-java 1.72, run by tests/interop/bc/BcEd.java), issue 17 item 4:
#   - BouncyCastle verifies p11smime's Ed25519 signatures made on a SoftHSM token (opaque and
#     multipart), and reports SHA-512 and id-Ed25519 with the parameters absent;
#   - p11smime verifies Ed25519 and Ed448 messages BouncyCastle signed; altered ones fail.
# A blank token of its own (keygen -> csr -> CA -> import-cert, as integration.keylife), since
# the shared test token holds no Ed25519 key. Exit 77 (skip) without Java/BC, fail when CI=true.
set -euo pipefail
backend=pkcs11
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/../integration/lib.sh"
mod=${P11S_TEST_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
label=p11s-bc
bc=$(cd "$(dirname "$0")/bc" && pwd)/BcEd.java
cp=/usr/share/java/bcprov.jar:/usr/share/java/bcpkix.jar:/usr/share/java/bcutil.jar
if ! command -v java >/dev/null || [ ! -r /usr/share/java/bcpkix.jar ]; then
	echo "# BouncyCastle or Java not installed (ci/deps.sh)"
	[ "${CI:-}" = true ] && exit 1
	exit 77
fi
bcj() { java -cp "$cp" "$bc" "$@"; }

mkdir -p "$tmp/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
	"$tmp/tokens" >"$tmp/softhsm2.conf"
export SOFTHSM2_CONF=$tmp/softhsm2.conf
pinfile=$tmp/user.pin
(umask 077 && openssl rand -hex 6 >"$pinfile" && openssl rand -hex 8 >"$tmp/so.pin")
# PINs reach pkcs11-tool as env: references, never argv (as in integration.keylife).
P11S_BC_SO=$(head -n1 "$tmp/so.pin") pkcs11-tool --module "$mod" --slot-index 0 --init-token \
	--label "$label" --so-pin env:P11S_BC_SO >/dev/null 2>&1
P11S_BC_SO=$(head -n1 "$tmp/so.pin") P11S_BC_PIN=$(head -n1 "$pinfile") pkcs11-tool \
	--module "$mod" --token-label "$label" --init-pin --login --login-type so \
	--so-pin env:P11S_BC_SO --new-pin env:P11S_BC_PIN >/dev/null 2>&1
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/ca.key" -out "$tmp/ca.pem" -days 30 \
	-subj "/CN=p11smime BC CA" -addext basicConstraints=critical,CA:TRUE \
	-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
issue() { # CSR-or-KEY OUT: a leaf for alice@example.org from the test CA
	openssl x509 -req -in "$1" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial -days 30 \
		-copy_extensions copy -out "$2" 2>/dev/null
}
printf 'From: alice@example.org\r\nTo: bob@example.org\r\nSubject: bc\r\nDate: %s\r\n\r\nhello from p11smime\r\n' \
	"$(date -R)" >"$tmp/msg"

# p11smime signs on the token.
expect 0 "keygen ed25519" -- p11s keygen --token "pkcs11:token=$label" --type ed25519 --label ed
uri=$(cat "$tmp/out")
expect 0 "csr" -- p11s csr --key "$uri" --subject /CN=Alice --email alice@example.org \
	--out "$tmp/ed.csr"
issue "$tmp/ed.csr" "$tmp/ed.pem"
expect 0 "import-cert" -- p11s import-cert --key "$uri" --in "$tmp/ed.pem"
expect 0 "sign --opaque on the token" -- p11s sign --opaque --key "$uri" --in "$tmp/msg" \
	--out "$tmp/opaque.eml"
openssl cms -cmsout -inform SMIME -in "$tmp/opaque.eml" -outform DER -out "$tmp/opaque.der"
check "BouncyCastle verifies the opaque Ed25519 signature" bash -c \
	"java -cp '$cp' '$bc' verify '$tmp/opaque.der' >'$tmp/bc.out'"
check "BouncyCastle sees SHA-512 and id-Ed25519, parameters absent" grep -q \
	'digest 2.16.840.1.101.3.4.2.3 sigalg 1.3.101.112 sigalg-params absent valid true' "$tmp/bc.out"
expect 0 "sign multipart on the token" -- p11s sign --key "$uri" --in "$tmp/msg" \
	--out "$tmp/multi.eml"
openssl cms -cmsout -inform SMIME -in "$tmp/multi.eml" -outform DER -out "$tmp/multi.der"
# The signed entity: part 1 exactly as sent (CRLF already), between the first two boundaries.
bnd=$(grep -o 'boundary="[^"]*"' "$tmp/multi.eml" | head -n1 | sed 's/boundary="//; s/"$//')
awk -v b="--$bnd" 'BEGIN { RS = "\r\n"; ORS = "\r\n" } $0 == b { n++; next }
	n == 1 { print }' "$tmp/multi.eml" | head -c -2 >"$tmp/part1"
check "BouncyCastle verifies the detached Ed25519 signature over part 1" \
	bcj verify "$tmp/multi.der" "$tmp/part1"
printf 'x' >>"$tmp/part1"
check "BouncyCastle refuses it over an altered part 1" bash -c \
	"! java -cp '$cp' '$bc' verify '$tmp/multi.der' '$tmp/part1' >/dev/null 2>&1"

# BouncyCastle signs, p11smime verifies: Ed25519 (SHA-512) and Ed448 (SHAKE256).
printf 'Content-Type: text/plain\r\n\r\nhello from BouncyCastle\r\n' >"$tmp/entity"
for alg in Ed25519 Ed448; do
	a=${alg,,}
	openssl genpkey -algorithm "$a" -out "$tmp/$a.key"
	openssl pkcs8 -topk8 -nocrypt -in "$tmp/$a.key" -outform DER -out "$tmp/$a.pk8"
	openssl req -new -key "$tmp/$a.key" -subj "/CN=Alice $alg" \
		-addext subjectAltName=email:alice@example.org \
		-addext keyUsage=critical,digitalSignature -addext extendedKeyUsage=emailProtection \
		-out "$tmp/$a.csr"
	issue "$tmp/$a.csr" "$tmp/$a.pem"
	check "BouncyCastle signs with $alg" bcj sign "$alg" "$tmp/$a.pk8" "$tmp/$a.pem" \
		"$tmp/entity" "$tmp/$a.der"
	{
		printf 'From: alice@example.org\r\nTo: bob@example.org\r\nSubject: from BC\r\n'
		printf 'Date: %s\r\nMIME-Version: 1.0\r\n' "$(date -R)"
		printf 'Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\r\n'
		printf 'Content-Transfer-Encoding: base64\r\n\r\n'
		base64 -w 76 "$tmp/$a.der" | sed 's/$/\r/'
	} >"$tmp/$a.eml"
	expect 0 "p11smime verifies BouncyCastle's $alg message" -- p11s --json verify \
		--in "$tmp/$a.eml" --trust "$tmp/ca.pem" --out "$tmp/$a.out"
	check "$alg: the content comes back" grep -q 'hello from BouncyCastle' "$tmp/$a.out"
	check "$alg: reported as $alg" grep -q "\"signature_algorithm\":\"${alg^^}\"" "$tmp/out"
	# One byte of the signature value (the DER's last octets) flipped.
	python3 -c 'import sys; d=bytearray(open(sys.argv[1],"rb").read()); d[-5]^=1; open(sys.argv[2],"wb").write(d)' \
		"$tmp/$a.der" "$tmp/$a.bad.der"
	{
		sed '/^\r$/q' "$tmp/$a.eml"
		base64 -w 76 "$tmp/$a.bad.der" | sed 's/$/\r/'
	} >"$tmp/$a.bad.eml"
	expect 1 "p11smime rejects the $alg message with a flipped signature bit" -- p11s verify \
		--in "$tmp/$a.bad.eml" --trust "$tmp/ca.pem" --out /dev/null
done
finish
