#!/bin/bash
# X25519 and X448 recipients (RFC 8418; RFC 8551 §2.3 makes X25519 with HKDF-SHA-256 a MUST),
# issue 17 item 5. OpenSSL 3.0's CMS can neither write nor read these recipients, so the
# independent peer is tests/interop/xdh/decrypt.py: asn1crypto reads the CMS and
# python3-cryptography does the key agreement, the KDF, the key unwrap and the content
# decryption. Checked: every cipher with both KDFs (HKDF, --xdh-kdf x963), the encoding
# (id-X25519 originator key, scheme and key wrap per content key size, issuerAndSerialNumber),
# mixed RSA + X25519 + X448 recipients (openssl cms opens the RSA one), a 4 MiB message, and
# refusals. The other way: tests/interop/xdh/encrypt.py, an independent RFC 8418 encryptor, and
# p11smime's decryption (tests/interop/xdh/xdh_open.c): with the software key, every cipher,
# both KDFs, with a ukm (the HKDF salt), rKeyId; and with the mock token's X25519 key (Z by
# CKM_ECDH1_DERIVE through the bridge: SoftHSM 2.6.1 has no Montgomery keys), a token fault.
# Exit 77 (skip) without the Python modules, fail when CI=true.
set -euo pipefail
backend=mock
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/../integration/lib.sh"
py=/usr/bin/python3
dec=$(cd "$(dirname "$0")/xdh" && pwd)/decrypt.py
if ! "$py" -c 'import asn1crypto, cryptography' 2>/dev/null; then
	echo "# python3-asn1crypto or python3-cryptography not installed (ci/deps.sh)"
	[ "${CI:-}" = true ] && exit 1
	exit 77
fi
enc() { "$bin" encrypt "$@"; }
der() { awk 'f { print } /^\r?$/ { f = 1 }' "$1" | tr -d '\r' | base64 -d >"$2"; }

# A CA and recipients: X25519, X448 (keyAgreement, emailProtection), RSA, and an X25519
# certificate whose keyUsage allows only digitalSignature.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/ca.key" -out "$tmp/ca.pem" -days 30 \
	-subj "/CN=p11smime XDH CA" -addext basicConstraints=critical,CA:TRUE \
	-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
leaf() { # NAME TYPE KEYUSAGE
	openssl genpkey -algorithm "$2" -out "$tmp/$1.key"
	openssl pkey -in "$tmp/$1.key" -pubout -out "$tmp/$1.pub"
	printf 'keyUsage=critical,%s\nextendedKeyUsage=emailProtection\nsubjectAltName=email:%s@example.org\nsubjectKeyIdentifier=hash\n' \
		"$3" "$1" >"$tmp/$1.ext"
	openssl x509 -new -force_pubkey "$tmp/$1.pub" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
		-subj "/CN=$1" -days 30 -extfile "$tmp/$1.ext" -out "$tmp/$1.pem" 2>/dev/null
}
leaf x25519 X25519 keyAgreement
leaf x448 X448 keyAgreement
leaf signonly X25519 digitalSignature
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/rsa.key" -out "$tmp/rsa.pem" -days 30 \
	-subj /CN=rsa -addext keyUsage=keyEncipherment 2>/dev/null
printf 'From: alice@example.org\r\nTo: bob@example.org\r\nSubject: xdh\r\nContent-Type: text/plain\r\n\r\nhello over X25519\r\n' \
	>"$tmp/msg"
printf 'Content-Type: text/plain\r\n\r\nhello over X25519\r\n' >"$tmp/inner"
# What p11smime encrypts: the Cryptographic Payload (RFC 9788, on by default), with
# hp="cipher", the protected fields, HP-Outer for the ones outside (the Subject obscured).
printf 'Content-Type: text/plain; hp="cipher"\r\nFrom: alice@example.org\r\nTo: bob@example.org\r\nSubject: xdh\r\nHP-Outer: From: alice@example.org\r\nHP-Outer: To: bob@example.org\r\nHP-Outer: Subject: [...]\r\n\r\nhello over X25519\r\n' >"$tmp/payload"

for kdf in hkdf x963; do
	for c in aes-256-gcm aes-128-gcm aes-128-cbc aes-256-cbc; do
		expect 0 "encrypt $c --xdh-kdf $kdf to X25519" -- enc --cipher "$c" --xdh-kdf "$kdf" \
			--to "$tmp/x25519.pem" --in "$tmp/msg" --out "$tmp/e.eml"
		der "$tmp/e.eml" "$tmp/e.der"
		check "decrypt.py opens $c/$kdf to the inner entity" bash -c \
			"'$py' '$dec' '$tmp/x25519.key' '$tmp/e.der' | cmp -s - '$tmp/payload'"
	done
done

# The encoding (RFC 8418 §2): HKDF-SHA-256 scheme, key wrap of the content key's size.
expect 0 "encrypt aes-128-gcm" -- enc --cipher aes-128-gcm --to "$tmp/x25519.pem" \
	--in "$tmp/msg" --out "$tmp/e.eml"
der "$tmp/e.eml" "$tmp/e.der"
openssl asn1parse -inform DER -in "$tmp/e.der" >"$tmp/asn1"
check "kari version 3 with an id-X25519 originator key" grep -q ':X25519$' "$tmp/asn1"
check "dhSinglePass-stdDH-hkdf-sha256-scheme" grep -q ':1.2.840.113549.1.9.16.3.19$' "$tmp/asn1"
check "aes128-wrap for a 128-bit content key" grep -q ':id-aes128-wrap$' "$tmp/asn1"
check "no placeholder KEKRecipientInfo left" bash -c "! grep -q ':id-aes256-wrap$' '$tmp/asn1'"
check "the recipient named by issuer and serial number" grep -q ':p11smime XDH CA$' "$tmp/asn1"

# Several recipients of several kinds in one message.
expect 0 "encrypt to RSA + X25519 + X448" -- enc --to "$tmp/rsa.pem" --to "$tmp/x25519.pem" \
	--to "$tmp/x448.pem" --in "$tmp/msg" --out "$tmp/m.eml"
der "$tmp/m.eml" "$tmp/m.der"
check "decrypt.py opens it with the X25519 key" bash -c \
	"'$py' '$dec' '$tmp/x25519.key' '$tmp/m.der' | cmp -s - '$tmp/payload'"
check "decrypt.py opens it with the X448 key (HKDF-SHA-512)" bash -c \
	"'$py' '$dec' '$tmp/x448.key' '$tmp/m.der' | cmp -s - '$tmp/payload'"
check "openssl cms opens it with the RSA key" bash -c "openssl cms -decrypt -inform DER \
	-in '$tmp/m.der' -inkey '$tmp/rsa.key' -recip '$tmp/rsa.pem' | cmp -s - '$tmp/payload'"
openssl asn1parse -inform DER -in "$tmp/m.der" >"$tmp/asn1"
check "dhSinglePass-stdDH-hkdf-sha512-scheme for X448" grep -q \
	':1.2.840.113549.1.9.16.3.21$' "$tmp/asn1"

# The test can fail: another X25519 key, and a changed encrypted key, do not open it.
openssl genpkey -algorithm X25519 -out "$tmp/other.key"
check "another X25519 key does not open it" bash -c \
	"! '$py' '$dec' '$tmp/other.key' '$tmp/m.der' >/dev/null 2>&1"

# Streaming: a 4 MiB body passes through the filter after the recipient infos.
{ printf 'Subject: big\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n'
  head -c 3145728 /dev/urandom | base64 | sed 's/$/\r/'; } >"$tmp/big"
expect 0 "encrypt a 4 MiB message to X25519" -- enc --to "$tmp/x25519.pem" --in "$tmp/big" \
	--out "$tmp/big.eml"
der "$tmp/big.eml" "$tmp/big.der"
{ printf 'Content-Type: application/octet-stream; hp="cipher"\r\nContent-Transfer-Encoding: base64\r\nSubject: big\r\nHP-Outer: Subject: [...]\r\n'
  sed '1,3d' "$tmp/big"; } >"$tmp/big.inner"
check "decrypt.py opens the 4 MiB message" bash -c \
	"'$py' '$dec' '$tmp/x25519.key' '$tmp/big.der' | cmp -s - '$tmp/big.inner'"

# Refusals: exit 2, one line, no output file.
expect 2 "an X25519 certificate without keyAgreement is refused" -- enc \
	--to "$tmp/signonly.pem" --in "$tmp/msg" --out "$tmp/no.eml"
check "... naming keyAgreement" grep -q 'keyAgreement' "$tmp/err"
check "... and nothing is written" test ! -e "$tmp/no.eml"
expect 2 "--xdh-kdf other is a usage error" -- enc --xdh-kdf sha1 --to "$tmp/x25519.pem" \
	--in "$tmp/msg" --out "$tmp/no.eml"
check "... and nothing is written" test ! -e "$tmp/no.eml"
# ---- the other way: encrypt.py writes, p11smime decrypts -----------------------------------
encpy=$(cd "$(dirname "$0")/xdh" && pwd)/encrypt.py
# same FILE: the decrypted entity is FILE, in the LF convention of encrypt.py's outer message and
# with the MIME-Version that decrypt adds for a top-level message (RFC 2045 §4).
same() { cmp -s <(tr -d '\r' <"$tmp/out" | grep -v '^MIME-Version: ') <(tr -d '\r' <"$1"); }
opn=${P11S_XDH_OPEN:-}
if [ -z "$opn" ]; then
	echo "# xdh_open not built (P11S_WITH_MOCK off): p11smime's X25519 decryption not checked"
	[ "${CI:-}" = true ] && exit 1
	finish
	exit $?
fi
for k in x25519 x448; do
	for kdf in hkdf x963; do
		for c in aes256-gcm aes128-gcm aes128-cbc aes256-cbc; do
			expect 0 "encrypt.py $c $kdf to $k" -- "$py" "$encpy" --cipher "$c" --kdf "$kdf" \
				"$tmp/$k.pem" "$tmp/inner" "$tmp/p.eml"
			expect 0 "p11smime opens it (software key)" -- "$opn" soft "$tmp/$k.key" \
				"$tmp/$k.pem" "$tmp/p.eml"
			check "... to the same entity" same "$tmp/inner"
		done
		expect 0 "encrypt.py --ukm --rid ski --hash sha384 --wrap 256 ($k, $kdf)" -- "$py" \
			"$encpy" --cipher aes128-gcm --kdf "$kdf" --ukm --rid ski --hash sha384 --wrap 256 \
			"$tmp/$k.pem" "$tmp/inner" "$tmp/p.eml"
		expect 0 "p11smime opens it (ukm as HKDF salt and entityUInfo, rKeyId)" -- "$opn" soft \
			"$tmp/$k.key" "$tmp/$k.pem" "$tmp/p.eml"
		check "... to the same entity" same "$tmp/inner"
	done
done
expect 0 "encrypt.py to X25519 + X448 + RSA" -- "$py" "$encpy" --also "$tmp/x448.pem" \
	--also "$tmp/rsa.pem" "$tmp/x25519.pem" "$tmp/inner" "$tmp/p.eml"
expect 0 "p11smime opens it with the X448 key" -- "$opn" soft "$tmp/x448.key" "$tmp/x448.pem" \
	"$tmp/p.eml"
check "... to the same entity" same "$tmp/inner"
expect 1 "another X25519 key does not open encrypt.py's message" -- "$opn" soft \
	"$tmp/other.key" "$tmp/x25519.pem" "$tmp/p.eml"
for bad in --bad-tag --bad-wrap; do
	for c in aes256-gcm aes128-cbc; do
		expect 0 "encrypt.py $bad $c" -- "$py" "$encpy" "$bad" --cipher "$c" "$tmp/x25519.pem" \
			"$tmp/inner" "$tmp/p.eml"
		expect 1 "p11smime refuses it" -- "$opn" soft "$tmp/x25519.key" "$tmp/x25519.pem" \
			"$tmp/p.eml"
		check "... with the uniform decryption failed, no plaintext" bash -c \
			"grep -q 'decryption failed' '$tmp/err' && test ! -s '$tmp/out'"
	done
done

# The mock token's X25519 key (CKK_EC_MONTGOMERY, CKM_ECDH1_DERIVE through the bridge).
for kdf in hkdf x963; do
	expect 0 "mock token: encrypt.py ($kdf, ukm) then p11smime decrypt with the token key" -- \
		"$opn" mock "$tmp/inner" "$encpy" --kdf "$kdf" --ukm
	check "... to the same entity" same "$tmp/inner"
	check "... one derive on the token, 32-octet peer key" grep -q 'decrypted on the mock token' \
		"$tmp/err"
	expect 0 "mock token: p11smime's own encryption ($kdf) then decrypt" -- "$opn" mock \
		"$tmp/inner" - "$kdf"
	check "... to the same entity" same "$tmp/inner"
done
head -c 2097152 /dev/urandom | base64 >"$tmp/big.b64"
{ printf 'Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n'
  cat "$tmp/big.b64"; } >"$tmp/big2"
expect 0 "mock token: a 2.7 MiB message from encrypt.py (streamed)" -- "$opn" mock "$tmp/big2" \
	"$encpy" --cipher aes128-gcm
check "... to the same entity" same "$tmp/big2"
expect 1 "mock token: CKR_DEVICE_REMOVED during the derive" -- "$opn" mock --fault device-removed \
	"$tmp/inner" "$encpy"
check "... is said as the token's error, not as 'decryption failed'" bash -c \
	"! grep -q 'decryption failed' '$tmp/err' && grep -qi 'remov' '$tmp/err'"
finish
