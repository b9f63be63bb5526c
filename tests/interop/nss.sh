#!/bin/bash
# Interop with NSS `cmsutil` (libnss3-tools), on the throwaway SoftHSMv2 token:
# 1. what `p11smime sign` makes (every token key, detached and opaque, SHA-256/384/512)
#    verifies with `cmsutil -D` against an NSS database that trusts the test root and
#    intermediate (certUsageEmailSigner); a one-byte alteration fails.
#    cmsutil's exit status alone is checked without -h; with `-h 1` it prints the signer
#    status (and exits 0 even for a bad signature), so that line is read too.
# 2. what `cmsutil -S` makes with software keys imported as PKCS#12 (RSA-2048, P-256;
#    SHA-256 and SHA-512; detached -T and opaque) passes `p11smime verify` with CRLs.
# 3. what `cmsutil -E` makes to the token's RSA certificates decrypts with `p11smime decrypt`
#    on the token. (`p11smime encrypt` -> `cmsutil -D` is in tests/integration/envelope.sh.)
. "$(dirname "$0")/common.sh"
need cmsutil certutil pk12util openssl python3

nss=$tmp/nssdb
mkdir -p "$nss"
certutil -N -d "sql:$nss" --empty-password
certutil -A -d "sql:$nss" -n "p11smime test root" -t C,C,C -i "$pki/root.pem"
certutil -A -d "sql:$nss" -n "p11smime test intermediate" -t C,C,C -i "$pki/intermediate.pem"
db=(-d "sql:$nss")

# nss_verify DESC P7S [CONTENT]: cmsutil -D exits 0 and reports GoodSignature.
nss_verify() {
	local desc=$1 p7s=$2 content=${3:-}
	local c=()
	[ -n "$content" ] && c=(-c "$content")
	expect 0 "$desc: cmsutil -D exit status" -- cmsutil -D "${db[@]}" -i "$p7s" "${c[@]}" -o "$tmp/nss.out"
	cmsutil -D "${db[@]}" -i "$p7s" "${c[@]}" -n -h 1 >"$tmp/nss.h" 2>&1 || true
	check "  ... cmsutil reports signer0.status=GoodSignature" grep -q 'signer0.status=GoodSignature;' "$tmp/nss.h"
}

# nss_reject DESC P7S [CONTENT]: cmsutil -D fails and does not report GoodSignature.
nss_reject() {
	local desc=$1 p7s=$2 content=${3:-} got
	local c=()
	[ -n "$content" ] && c=(-c "$content")
	set +e
	cmsutil -D "${db[@]}" -i "$p7s" "${c[@]}" -n >"$tmp/out" 2>"$tmp/err"
	got=$?
	set -e
	if [ "$got" -ne 0 ]; then ok "$desc: cmsutil -D fails (exit $got)"; else not_ok "$desc: cmsutil -D exit 0"; fi
	cmsutil -D "${db[@]}" -i "$p7s" "${c[@]}" -n -h 1 >"$tmp/nss.h" 2>&1 || true
	check "  ... cmsutil reports DigestMismatch" grep -q 'signer0.status=DigestMismatch;' "$tmp/nss.h"
}

# --- 1. p11smime sign -> cmsutil -D
for spec in "${sign_matrix[@]}"; do
	read -r key pss digest <<<"$spec"
	for form in detached opaque; do
		name=$(spec_name "$key" "$pss" "$digest" "$form")
		out=$tmp/s.eml
		expect 0 "$name: p11smime sign" -- token_sign "$key" "$pss" "$digest" "$form" "$out"
		if [ "$form" = detached ]; then
			mime split "$out" "$tmp/part1" "$tmp/sig.p7s"
			nss_verify "  ... NSS" "$tmp/sig.p7s" "$tmp/part1"
			sed 's/Hello Bob/Hello Cob/' "$tmp/part1" >"$tmp/part1.bad"
			nss_reject "  ... one byte altered" "$tmp/sig.p7s" "$tmp/part1.bad"
		else
			mime body "$out" "$tmp/sig.p7m"
			nss_verify "  ... NSS" "$tmp/sig.p7m"
			check "  ... cmsutil returns the canonical entity" cmp -s "$tmp/nss.out" "$canon"
			mime flipder "$out" "$tmp/bad.p7m" 'Hello Bob'
			nss_reject "  ... one byte altered" "$tmp/bad.p7m"
		fi
	done
done

# RFC 9788 header protection is backward compatible: NSS verifies a protected signature.
p11s sign --protect-headers --key "$(keyuri rsa2048)" --chain "$pki/intermediate.pem" \
	--in "$msg" --out "$tmp/hp.eml"
mime split "$tmp/hp.eml" "$tmp/part1" "$tmp/sig.p7s"
check "rsa2048 --protect-headers: the signed part says hp=\"clear\"" grep -q 'hp="clear"' "$tmp/part1"
nss_verify "  ... NSS" "$tmp/sig.p7s" "$tmp/part1"

# The NSS database must really be what vouches: an empty one does not trust the signer.
mkdir -p "$tmp/emptydb"
certutil -N -d "sql:$tmp/emptydb" --empty-password
token_sign ec256 - sha256 detached "$tmp/s.eml"
mime split "$tmp/s.eml" "$tmp/part1" "$tmp/sig.p7s"
expect 1 "ec256: cmsutil -D without the trusted root fails" -- \
	cmsutil -D -d "sql:$tmp/emptydb" -i "$tmp/sig.p7s" -c "$tmp/part1" -n
check "  ... SEC_ERROR_UNKNOWN_ISSUER" grep -q 'SEC_ERROR_UNKNOWN_ISSUER' "$tmp/err"

# --- 2. cmsutil -S (software keys from PKCS#12) -> p11smime verify
printf 'Content-Type: text/plain; charset=us-ascii\r\n\r\nHello from NSS cmsutil.\r\n' >"$tmp/content"
for s in "nssrsa rsa" "nssec ec"; do
	read -r signer type <<<"$s"
	soft_cert "$signer" "$type"
	p12 "$signer" "$p12pass"
	expect 0 "$signer ($type): pk12util -i" -- pk12util "${db[@]}" -i "$tmp/$signer.p12" -w "$p12pass"
	for hash in SHA256 SHA512; do
		micalg=sha-${hash#SHA}
		# -G signingTime, -P SMIMECapabilities, -T detached (no eContent).
		expect 0 "cmsutil -S $signer $hash detached" -- \
			cmsutil -S "${db[@]}" -N "$signer" -H "$hash" -G -P -T -i "$tmp/content" -o "$tmp/n.p7s"
		mime signed "$signer@example.org" "$tmp/content" "$tmp/n.p7s" "$micalg" "$tmp/n.eml"
		rm -f "$tmp/v.out"
		expect 0 "  ... p11smime verify (CRLs checked)" -- "$bin" verify --trust "$pki/root.pem" \
			--crl "$pki/crls.pem" --in "$tmp/n.eml" --out "$tmp/v.out"
		check "  ... verify --out = the signed content" cmp -s "$tmp/v.out" "$tmp/content"
		check "  ... digest ${hash,,} reported" grep -q "digest: ${hash,,}" "$tmp/out"
		mime flip "$tmp/n.eml" "$tmp/nbad.eml" 'Hello from'
		expect 1 "  ... one byte altered: exit 1" -- "$bin" verify --trust "$pki/root.pem" --in "$tmp/nbad.eml"
		check "  ... reason content-altered" grep -q 'content-altered' "$tmp/out"

		expect 0 "cmsutil -S $signer $hash opaque" -- \
			cmsutil -S "${db[@]}" -N "$signer" -H "$hash" -G -P -i "$tmp/content" -o "$tmp/n.p7m"
		mime pkcs7 "$signer@example.org" signed-data "$tmp/n.p7m" "$tmp/n.eml"
		rm -f "$tmp/v.out"
		expect 0 "  ... p11smime verify (CRLs checked)" -- "$bin" verify --trust "$pki/root.pem" \
			--crl "$pki/crls.pem" --in "$tmp/n.eml" --out "$tmp/v.out"
		check "  ... verify --out = the signed content" cmp -s "$tmp/v.out" "$tmp/content"
		mime flip "$tmp/n.eml" "$tmp/nbad.eml" 'Hello from'
		expect 1 "  ... one byte altered: exit 1" -- "$bin" verify --trust "$pki/root.pem" --in "$tmp/nbad.eml"
		check "  ... reason content-altered" grep -q 'content-altered' "$tmp/out"
	done
done

# --- 3. cmsutil -E to the token certificates -> p11smime decrypt on the token
printf 'Content-Type: text/plain; charset=us-ascii\r\n\r\nFor the token only.\r\n' >"$tmp/secret"
for key in rsa2048 rsa3072 ec256 ec384; do
	certutil -A "${db[@]}" -n "token $key" -t ,, -i "$pki/$key.pem"
	rm -f "$tmp/e.p7m"
	if ! cmsutil -E "${db[@]}" -r "token $key" -i "$tmp/secret" -o "$tmp/e.p7m" 2>"$tmp/err"; then
		case $key in
		ec*)
			# NSS 3.87 has no KeyAgreeRecipientInfo (ECDH) on the sending side either.
			note "NSS cmsutil -E cannot encrypt to EC $key: $(tail -1 "$tmp/err") (NSS limitation, see docs/interop.md)"
			continue ;;
		esac
		not_ok "cmsutil -E to token $key: $(tail -1 "$tmp/err")"
		continue
	fi
	ok "cmsutil -E to token $key"
	mime pkcs7 "bob@example.org" enveloped-data "$tmp/e.p7m" "$tmp/e.eml"
	rm -f "$tmp/d.eml"
	expect 0 "  ... p11smime decrypt on the token" -- p11s decrypt --in "$tmp/e.eml" --out "$tmp/d.eml"
	check "  ... the decrypted entity is the original" \
		sh -c "tail -c $(wc -c <"$tmp/secret") '$tmp/d.eml' | cmp -s - '$tmp/secret'"
	check "  ... the outer header fields are kept" grep -q '^From: bob@example.org' "$tmp/d.eml"
done

echo "# NSS $(nss-config --version 2>/dev/null || dpkg-query -W -f='${Version}' libnss3 2>/dev/null || echo '(version unknown)')"
finish
