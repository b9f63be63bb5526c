#!/bin/bash
# Triple wrapping (RFC 2634 §1.1; issue 4 item 5) checked by OpenSSL, on the throwaway
# SoftHSMv2 token: `p11smime wrap --triple` signs, encrypts to a token certificate, signs
# again. `openssl cms -verify` must verify the outer signature and yield the enveloped
# middle layer; `p11smime decrypt` opens that on the token (the key never leaves it, so
# openssl cannot); `openssl cms -verify` must verify the inner signature and yield the
# canonical original entity. An altered outer layer must fail in openssl.
. "$(dirname "$0")/common.sh"
need openssl python3

if ! "$bin" wrap --help >/dev/null 2>&1; then
	if [ "${CI:-}" = true ]; then
		echo "not ok - p11smime has no wrap command"
		echo "0 passed, 1 failed"
		exit 1
	fi
	echo "# SKIP: p11smime has no wrap command yet"
	exit 77
fi

cat "$pki/root.pem" "$pki/crls.pem" >"$tmp/root+crls.pem"
trust=(-CAfile "$tmp/root+crls.pem" -crl_check_all)

# signer key, recipient (token certificate), extra wrap options
# The inner signed entity of a wrap is the Cryptographic Payload (RFC 9788, on by default):
# hp="cipher", the protected fields, and HP-Outer for each field left outside (§2.2).
canon_cipher=$tmp/canon-cipher
{
	printf 'Content-Type: text/plain; charset=us-ascii; hp="cipher"\r\n'
	head -5 "$msg" | sed 's/$/\r/'
	head -5 "$msg" | sed 's/^Subject: .*/Subject: [...]/; s/^/HP-Outer: /; s/$/\r/'
	printf '\r\n'
	tail -n +8 "$msg" | sed 's/$/\r/'
} >"$canon_cipher"

for spec in "rsa2048 rsa2048 -" "ec256 rsa3072 --opaque" "ec384 ec256 -" "rsa3072 ec384 --pss" \
	"rsa2048 ec256 --cipher=aes-256-cbc"; do
	read -r signer recip extra <<<"$spec"
	opts=()
	[ "$extra" = - ] || opts=("${extra%%=*}")
	case $extra in *=*) opts+=("${extra#*=}") ;; esac
	name="wrap --triple by $signer to $recip${opts[*]:+ ${opts[*]}}"
	rm -f "$tmp/tw.eml"
	expect 0 "$name" -- p11s wrap --triple --key "$(keyuri "$signer")" --to "$pki/$recip.pem" \
		--chain "$pki/intermediate.pem" "${opts[@]}" --in "$msg" --out "$tmp/tw.eml"
	check "  ... outer header fields kept, the Subject obscured (RFC 9788 §3.2)" sh -c \
		"grep -q '^From: Alice' '$tmp/tw.eml' && grep -q '^Subject: \\[\\.\\.\\.\\]' '$tmp/tw.eml'"
	rm -f "$tmp/mid.eml" "$tmp/inner.eml" "$tmp/content"
	expect 0 "  ... outer signature: openssl cms -verify" -- \
		openssl cms -verify -in "$tmp/tw.eml" "${trust[@]}" -out "$tmp/mid.eml"
	check "  ... the middle layer is application/pkcs7-mime enveloped" \
		grep -Eqi '^Content-Type: application/pkcs7-mime; smime-type=(authEnveloped|enveloped)-data' "$tmp/mid.eml"
	expect 0 "  ... middle layer: p11smime decrypt on the token ($recip)" -- \
		p11s decrypt --in "$tmp/mid.eml" --out "$tmp/inner.eml"
	expect 0 "  ... inner signature: openssl cms -verify" -- \
		openssl cms -verify -in "$tmp/inner.eml" "${trust[@]}" -out "$tmp/content"
	check "  ... the inner content is the canonical Cryptographic Payload" cmp -s "$tmp/content" "$canon_cipher"
	mime flip "$tmp/tw.eml" "$tmp/bad.eml" 'smime.p7m'
	expect 4 "  ... outer layer altered: openssl cms -verify fails" -- \
		openssl cms -verify -in "$tmp/bad.eml" "${trust[@]}" -out /dev/null
done

echo "# $(openssl version)"
finish
