#!/bin/bash
# Interop with OpenSSL's `openssl cms` (issue 3 item 6), on the throwaway SoftHSMv2 token:
# - what `p11smime sign` makes with every token key (RSA-2048, RSA-3072 with RSASSA-PSS,
#   P-256, P-384), detached and opaque, SHA-256/384/512, verifies with `openssl cms -verify`
#   in its default text mode, with CRL checking of the whole path, and yields the canonical
#   entity (with RFC 9788 header protection, the default, and without it); a one-byte alteration of the signed content fails;
# - one smoke case of the other direction (`openssl cms -sign` -> `p11smime verify`; the
#   full matrix of that direction is tests/integration/verify.sh).
# (OpenSSL 3.0's -binary splitter bug on multipart/signed is documented in docs/sign.md;
# tests/integration/sign.sh covers the -binary path over the extracted part 1.)
. "$(dirname "$0")/common.sh"
need openssl python3

# `openssl cms` has no -CRLfile: the CRLs go into the -CAfile with the root.
cat "$pki/root.pem" "$pki/crls.pem" >"$tmp/root+crls.pem"
trust=(-CAfile "$tmp/root+crls.pem" -crl_check_all)

for spec in "${sign_matrix[@]}"; do
	read -r key pss digest <<<"$spec"
	for form in detached opaque; do
		name=$(spec_name "$key" "$pss" "$digest" "$form")
		out=$tmp/$key-$digest-$form.eml
		expect 0 "$name: p11smime sign" -- token_sign "$key" "$pss" "$digest" "$form" "$out"
		rm -f "$tmp/inner"
		expect 0 "  ... openssl cms -verify (text mode, CRLs checked)" -- \
			openssl cms -verify -in "$out" "${trust[@]}" -out "$tmp/inner"
		check "  ... openssl returns the canonical entity" cmp -s "$tmp/inner" "$canon"
		mime flip "$out" "$tmp/bad.eml" 'Hello Bob'
		expect 4 "  ... one byte altered: openssl cms -verify fails" -- \
			openssl cms -verify -in "$tmp/bad.eml" "${trust[@]}" -out /dev/null
		check "  ... openssl says why (digest failure)" \
			grep -qi 'digest failure\|verification failure' "$tmp/err"
	done
done

# Without header protection (--no-protect-headers): the RFC 8551 entity alone.
for form in detached opaque; do
	opts=()
	[ "$form" = opaque ] && opts+=(--opaque)
	expect 0 "rsa2048 $form --no-protect-headers: p11smime sign" -- p11s sign --no-protect-headers \
		--key "$(keyuri rsa2048)" "${opts[@]}" --chain "$pki/intermediate.pem" --in "$msg" \
		--out "$tmp/plain-$form.eml"
	expect 0 "  ... openssl cms -verify" -- \
		openssl cms -verify -in "$tmp/plain-$form.eml" "${trust[@]}" -out "$tmp/inner"
	check "  ... openssl returns the Content-* fields and the body" cmp -s "$tmp/inner" "$canon_plain"
done

# A wrong trust anchor: openssl must not verify the token signature against another root.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/other.key" -subj "/CN=Other Root" \
	-days 30 -out "$tmp/other-root.pem" 2>/dev/null
token_sign rsa2048 - sha256 detached "$tmp/s.eml"
expect 4 "rsa2048: a foreign trust anchor fails in openssl" -- \
	openssl cms -verify -in "$tmp/s.eml" -CAfile "$tmp/other-root.pem" -out /dev/null

# --- openssl cms -sign -> p11smime verify (smoke; verify.sh has the matrix)
soft_cert osslsigner rsa
printf 'Content-Type: text/plain\n\nSigned by OpenSSL.\n' >"$tmp/o.txt"
openssl cms -sign -signer "$tmp/osslsigner.pem" -inkey "$tmp/osslsigner.key" \
	-certfile "$pki/intermediate.pem" -in "$tmp/o.txt" -out "$tmp/o.eml" 2>/dev/null
# openssl writes only the S/MIME entity: the From field goes on top for the sender check.
{ printf 'From: osslsigner@example.org\nTo: bob@example.org\nSubject: from openssl\n'; cat "$tmp/o.eml"; } >"$tmp/o2.eml"
expect 0 "openssl cms -sign (RSA, detached) -> p11smime verify" -- \
	"$bin" verify --trust "$pki/root.pem" --crl "$pki/crls.pem" --in "$tmp/o2.eml"
mime flip "$tmp/o2.eml" "$tmp/o3.eml" 'Signed by'
expect 1 "  ... one byte altered: p11smime verify exit 1" -- \
	"$bin" verify --trust "$pki/root.pem" --in "$tmp/o3.eml"
check "  ... reason content-altered" grep -q 'content-altered' "$tmp/out"

echo "# $(openssl version)"
finish
