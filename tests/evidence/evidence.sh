#!/bin/bash
# Evidence suite (docs/evidence.md) on the throwaway SoftHSMv2 token: ESS signed receipts both
# ways with `openssl cms`, security labels, RFC 3161 timestamps from a real TSA on loopback
# (`openssl ts -reply` behind tests/evidence/tsa_server.py), the audit log and its tamper
# detection, --non-repudiation. usage: evidence.sh [BACKEND] [TEST-BINARY]
# (environment from tests/CMakeLists.txt: P11S_BIN, P11S_TEST_*)
set -euo pipefail
backend=${1:-pkcs11}
unit=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
. "$P11S_SOURCE_DIR/tests/integration/lib.sh"

bin=$P11S_BIN
pki=$P11S_TEST_PKI
p11s() { "$bin" --backend "$backend" --module "$P11S_TEST_MODULE" \
	--pin-source "file:$P11S_TEST_PIN_FILE" "$@"; }
keyuri() { printf 'pkcs11:token=%s;object=%s;type=private' "$P11S_TEST_TOKEN" "$1"; }
exec </dev/null

# ---- a TSA on loopback (tests/evidence/tsa.sh, shared with ci/demo.sh) ---------------------
ts=$tmp/tsa
trap 'rc=$?; "$here/tsa.sh" stop "$ts"; rm -rf "$tmp"; exit $rc' EXIT
tsa=$("$here/tsa.sh" start "$ts" "$pki")

msg=$tmp/msg.eml
printf 'From: Alice <alice-rsa2048@example.org>\nTo: bob@example.org\nSubject: evidence\n\nhello evidence\n' >"$msg"
rsa=$(keyuri rsa2048)
ec=$(keyuri ec256)

# ---- RFC 3161 timestamps -------------------------------------------------------------------
expect 0 "sign --tsa (multipart/signed)" -- p11s sign --key "$rsa" --chain "$pki/intermediate.pem" \
	--tsa "$tsa/good" --in "$msg" --out "$tmp/ts.eml"
expect 0 "verify: timestamp valid" -- "$bin" verify --trust "$pki/root.pem" --in "$tmp/ts.eml"
check "verify reports the timestamp next to signingTime" \
	grep -q '^  timestamp: .* by .*p11smime Test TSA.*(verified RFC 3161 token)' "$tmp/out"
expect 0 "verify --json" -- "$bin" --json verify --trust "$pki/root.pem" --in "$tmp/ts.eml"
check "json: timestamp_valid true" grep -q '"timestamp_valid":true' "$tmp/out"
expect 0 "sign --tsa --opaque (EC key)" -- p11s sign --key "$ec" --chain "$pki/intermediate.pem" \
	--tsa "$tsa/good" --opaque --in "$msg" --out "$tmp/tso.eml"
expect 0 "verify opaque with timestamp" -- "$bin" verify --no-sender-check \
	--trust "$pki/root.pem" --in "$tmp/tso.eml"
expect 0 "openssl cms -verify reads the timestamped message" -- openssl cms -verify \
	-in "$tmp/tso.eml" -CAfile "$pki/root.pem" -purpose any -out /dev/null
expect 1 "sign --tsa: a TSA answering another request (wrong imprint/nonce) is refused" -- \
	p11s sign --key "$rsa" --tsa "$tsa/wrong" --in "$msg" --out "$tmp/wrong.eml"
check "no output after a refused timestamp" test ! -e "$tmp/wrong.eml"
expect 0 "sign --tsa with another TSA (signature fine, trust unknown at signing)" -- \
	p11s sign --key "$rsa" --chain "$pki/intermediate.pem" --tsa "$tsa/other" --in "$msg" \
	--out "$tmp/other.eml"
expect 1 "verify: a TSA outside the trust anchors is rejected" -- "$bin" verify \
	--trust "$pki/root.pem" --in "$tmp/other.eml"
check "reason timestamp-untrusted" grep -q 'reason: timestamp-untrusted' "$tmp/out"
expect 2 "sign --tsa: unreachable TSA" -- p11s sign --key "$rsa" --tsa "http://127.0.0.1:1/" \
	--in "$msg" --out "$tmp/unreach.eml"
# The same TSA cert checked with OpenSSL's own ts verifier (cross-check of our token).
openssl ts -query -data "$msg" -sha256 -cert -out "$tmp/q.tsq" 2>/dev/null
curl -s -H 'Content-Type: application/timestamp-query' --data-binary "@$tmp/q.tsq" \
	"$tsa/good" -o "$tmp/r.tsr"
expect 0 "openssl ts -verify accepts the loopback TSA's reply" -- openssl ts -verify \
	-queryfile "$tmp/q.tsq" -in "$tmp/r.tsr" -CAfile "$pki/root.pem" \
	-untrusted "$pki/intermediate.pem"
if [ -n "$unit" ]; then
	# Verify-time checks on a real token: a token over other data (imprint), another anchor.
	openssl ts -reply -config "$ts/ts.cnf" -section tsa_good -queryfile "$tmp/q.tsq" \
		-token_out -out "$tmp/tok.der" 2>/dev/null
	expect 0 "unit: timestamp token checks (imprint, trust, TSA EKU) and ESS binding" -- \
		env P11S_EV_TOKEN="$tmp/tok.der" P11S_EV_DATA="$msg" P11S_EV_TSA_OTHER="$ts/otherca.pem" \
		"$unit"
	[ "$failed" = 0 ] || cat "$tmp/out"
fi

# ---- ESS signed receipts ------------------------------------------------------------------
expect 0 "sign --receipt-request all" -- p11s sign --key "$rsa" --chain "$pki/intermediate.pem" \
	--receipt-request all --in "$msg" --out "$tmp/rr.eml"
expect 0 "verify reports the receipt request" -- "$bin" verify --trust "$pki/root.pem" \
	--in "$tmp/rr.eml"
check "receipt request: from=all; to=From address" \
	grep -q 'receipt request: from=all; to=alice-rsa2048@example.org; id=' "$tmp/out"
expect 0 "receipt (token key)" -- p11s receipt --key "$ec" --chain "$pki/intermediate.pem" \
	--in "$tmp/rr.eml" --out "$tmp/rcpt.eml"
check "smime-type=signed-receipt, To = receiptsTo" sh -c \
	"grep -q 'smime-type=signed-receipt' '$tmp/rcpt.eml' && grep -q '^To: alice-rsa2048@example.org' '$tmp/rcpt.eml'"
expect 0 "verify-receipt (ours)" -- "$bin" verify-receipt --original "$tmp/rr.eml" \
	--trust "$pki/root.pem" --in "$tmp/rcpt.eml"
expect 0 "openssl cms -verify_receipt accepts our receipt" -- openssl cms -verify_receipt \
	"$tmp/rcpt.eml" -in "$tmp/rr.eml" -CAfile "$pki/root.pem" -purpose any
expect 0 "openssl cms -sign_receipt for our request" -- openssl cms -sign_receipt \
	-in "$tmp/rr.eml" -signer "$pki/san-mismatch.pem" -inkey "$pki/san-mismatch.key" \
	-certfile "$pki/intermediate.pem" -out "$tmp/orcpt.eml"
expect 0 "verify-receipt accepts OpenSSL's receipt" -- "$bin" verify-receipt \
	--original "$tmp/rr.eml" --trust "$pki/root.pem" --in "$tmp/orcpt.eml"
expect 0 "openssl cms -sign -receipt_request_first" -- openssl cms -sign -in "$msg" \
	-signer "$pki/san-mismatch.pem" -inkey "$pki/san-mismatch.key" \
	-certfile "$pki/intermediate.pem" -receipt_request_first \
	-receipt_request_to receipts@example.org -out "$tmp/orr.eml"
expect 0 "receipt for OpenSSL's request" -- p11s receipt --key "$rsa" \
	--chain "$pki/intermediate.pem" --in "$tmp/orr.eml" --out "$tmp/rcpt2.eml"
expect 0 "openssl cms -verify_receipt accepts it" -- openssl cms -verify_receipt \
	"$tmp/rcpt2.eml" -in "$tmp/orr.eml" -CAfile "$pki/root.pem" -purpose any
expect 0 "verify-receipt accepts it" -- "$bin" verify-receipt --original "$tmp/orr.eml" \
	--trust "$pki/root.pem" --in "$tmp/rcpt2.eml"
expect 0 "sign without a receipt request" -- p11s sign --key "$rsa" --in "$msg" \
	--out "$tmp/plain.eml"
expect 2 "receipt: exit 2 when no receipt is requested" -- p11s receipt --key "$ec" \
	--in "$tmp/plain.eml" --out "$tmp/none.eml"
expect 2 "receipt: never for a receipt" -- p11s receipt --key "$ec" --in "$tmp/rcpt.eml" \
	--out "$tmp/none.eml"
expect 1 "verify-receipt against another original" -- "$bin" verify-receipt \
	--original "$tmp/orr.eml" --trust "$pki/root.pem" --in "$tmp/rcpt.eml"
check "reason signature-value-mismatch" grep -q 'signature-value-mismatch' "$tmp/out"
expect 1 "verify-receipt without the trust anchor" -- "$bin" verify-receipt \
	--original "$tmp/rr.eml" --in "$tmp/rcpt.eml"
expect 0 "sign --receipt-request first-tier --receipts-to (twice)" -- p11s sign --key "$rsa" \
	--receipt-request first-tier --receipts-to a@example.org --receipts-to b@example.org \
	--in "$msg" --out "$tmp/rr2.eml"
expect 1 "verify (no chain given) still reports the request" -- "$bin" verify \
	--in "$tmp/rr2.eml"
check "first-tier, two addresses" grep -q 'receipt request: from=first-tier; to=a@example.org,b@example.org' "$tmp/out"
expect 2 "--receipts-to without --receipt-request" -- p11s sign --key "$rsa" \
	--receipts-to a@example.org --in "$msg" --out "$tmp/x.eml"

# ---- security labels ------------------------------------------------------------------------
expect 0 "sign --security-label" -- p11s sign --key "$rsa" --chain "$pki/intermediate.pem" \
	--security-label 1.3.6.1.4.1.99999.2:secret --in "$msg" --out "$tmp/label.eml"
expect 0 "verify reports the label" -- "$bin" --json verify --trust "$pki/root.pem" \
	--in "$tmp/label.eml"
check "security_label in JSON" grep -q '"security_label":"1.3.6.1.4.1.99999.2:secret(4)"' "$tmp/out"
expect 0 "openssl cms -verify ignores the label (signed attribute)" -- openssl cms -verify \
	-in "$tmp/label.eml" -CAfile "$pki/root.pem" -purpose any -out /dev/null
expect 0 "numeric classification" -- p11s sign --key "$ec" --security-label 2.5.1.2:200 \
	--in "$msg" --out "$tmp/label2.eml"
expect 2 "bad label classification" -- p11s sign --key "$rsa" --security-label 1.2.3:huge \
	--in "$msg" --out "$tmp/x.eml"
expect 2 "bad label policy" -- p11s sign --key "$rsa" --security-label notanoid:1 \
	--in "$msg" --out "$tmp/x.eml"

# ---- validation at the time-stamp's genTime (CAdES-T, RFC 5126 §5.11.1; issue 19 item 6) ------
# A certificate that expires 8 s after signing: with a verified time-stamp the path is
# validated at its genTime and the signature keeps verifying; without, it has expired. A CRL
# issued afterwards revoking it after the genTime does not fail it; one dated before does.
sc=$here/short_cert.py
ica=$pki/intermediate.pem
ikey=$pki/intermediate/intermediate.key
/usr/bin/python3 "$sc" cert "$pki/rsa2048.csr" "$ica" "$ikey" 8 "$tmp/short.pem"
expect 0 "sign --tsa with a certificate that expires in 8 s" -- p11s sign --key "$rsa" \
	--cert "$tmp/short.pem" --chain "$ica" --tsa "$tsa/good" --in "$msg" --out "$tmp/short-ts.eml"
expect 0 "sign without a time-stamp, same certificate" -- p11s sign --key "$rsa" \
	--cert "$tmp/short.pem" --chain "$ica" --in "$msg" --out "$tmp/short-nots.eml"
expect 0 "before expiry: verify validates at the time-stamp's genTime" -- "$bin" verify \
	--trust "$pki/root.pem" --in "$tmp/short-ts.eml"
check "... and says so" grep -q "path validated at: .*(the time-stamp's genTime)" "$tmp/out"
expect 0 "... and without a time-stamp, at now" -- "$bin" verify --trust "$pki/root.pem" \
	--in "$tmp/short-nots.eml"
check "... and the text report, validated now, has no such line" \
	sh -c '! grep -q "path validated at" "$1"' _ "$tmp/out"
expect 0 "... --json says now" -- "$bin" --json verify --trust "$pki/root.pem" \
	--in "$tmp/short-nots.eml"
check "... validation_time_source now" grep -q '"validation_time_source":"now"' "$tmp/out"
sleep 10
expect 0 "expired now: the time-stamped signature still verifies" -- "$bin" --json verify \
	--trust "$pki/root.pem" --in "$tmp/short-ts.eml"
check "json validation_time_source timestamp" grep -q '"validation_time_source":"timestamp"' \
	"$tmp/out"
expect 1 "expired now: the signature without a time-stamp fails" -- "$bin" verify \
	--trust "$pki/root.pem" --in "$tmp/short-nots.eml"
check "... as expired" grep -q "expired" "$tmp/out" "$tmp/err"
/usr/bin/python3 "$sc" crl "$ica" "$ikey" "$tmp/short.pem" 0 "$tmp/crl-after.pem"
cat "$tmp/crl-after.pem" "$pki/root.crl.pem" >"$tmp/crls-after.pem"
expect 0 "revoked after the genTime (CRL issued after it): still valid at the genTime" -- \
	"$bin" verify --trust "$pki/root.pem" --crl "$tmp/crls-after.pem" --in "$tmp/short-ts.eml"
check "... the report says it was revoked later" grep -q "0: good .*(revoked later, .*: after the validation time)" "$tmp/out"
/usr/bin/python3 "$sc" crl "$ica" "$ikey" "$tmp/short.pem" -3600 "$tmp/crl-before.pem"
cat "$tmp/crl-before.pem" "$pki/root.crl.pem" >"$tmp/crls-before.pem"
expect 1 "revoked before the genTime: fails" -- "$bin" verify --trust "$pki/root.pem" \
	--crl "$tmp/crls-before.pem" --in "$tmp/short-ts.eml"
check "... as revoked" grep -q "revoked" "$tmp/out" "$tmp/err"
expect 1 "a time asked for (--at) wins over the genTime: expired then" -- "$bin" verify \
	--trust "$pki/root.pem" --at "$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)" \
	--in "$tmp/short-ts.eml"

# ---- non-repudiation -------------------------------------------------------------------------
cat >"$tmp/ds.cnf" <<EOT
[ds]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = emailProtection
subjectAltName = email:alice-rsa2048@example.org
EOT
openssl x509 -req -in "$pki/rsa2048.csr" -CA "$pki/intermediate.pem" \
	-CAkey "$pki/intermediate/intermediate.key" -set_serial 4242 -days 30 \
	-extfile "$tmp/ds.cnf" -extensions ds -out "$tmp/ds.pem" 2>/dev/null
expect 2 "--non-repudiation refuses a certificate without nonRepudiation" -- p11s sign \
	--key "$rsa" --cert "$tmp/ds.pem" --non-repudiation --in "$msg" --out "$tmp/nr.eml"
check "no output after the refusal" test ! -e "$tmp/nr.eml"
expect 0 "--non-repudiation with the token certificate (nonRepudiation set)" -- p11s sign \
	--key "$rsa" --non-repudiation --chain "$pki/intermediate.pem" --in "$msg" --out "$tmp/nr.eml"
expect 0 "verify: non_repudiation true" -- "$bin" --json verify --trust "$pki/root.pem" \
	--in "$tmp/nr.eml"
check "json non_repudiation true, signingCertificateV2 bound" sh -c \
	"grep -q '\"non_repudiation\":true' '$tmp/out' && grep -q '\"signing_certificate\":\"v2\"' '$tmp/out'"
expect 0 "sign with the digitalSignature-only certificate" -- p11s sign --key "$rsa" \
	--cert "$tmp/ds.pem" --chain "$pki/intermediate.pem" --in "$msg" --out "$tmp/ds.eml"
expect 0 "verify: non_repudiation false" -- "$bin" --json verify --trust "$pki/root.pem" \
	--in "$tmp/ds.eml"
check "json non_repudiation false" grep -q '"non_repudiation":false' "$tmp/out"

# ---- audit log -------------------------------------------------------------------------------
log=$tmp/audit.log
expect 0 "sign --audit-log (1)" -- p11s sign --key "$rsa" --audit-log "$log" --in "$msg" \
	--out "$tmp/a1.eml"
expect 0 "sign --audit-log (2, opaque, EC)" -- p11s sign --key "$ec" --opaque --audit-log "$log" \
	--in "$msg" --out "$tmp/a2.eml"
expect 0 "sign --audit-log (3, with timestamp)" -- p11s sign --key "$rsa" --tsa "$tsa/good" \
	--audit-log "$log" --in "$msg" --out "$tmp/a3.eml"
expect 2 "failed signing is recorded too" -- p11s sign --key "$rsa" --tsa "http://127.0.0.1:1/" \
	--audit-log "$log" --in "$msg" --out "$tmp/a4.eml"
expect 0 "audit verify: intact" -- "$bin" audit verify "$log"
# Each run ends with its signed checkpoint (format 2): records 1, 3, 5, 7, checkpoints 2, 4, 6, 8.
check "8 records (4 signatures, 4 checkpoints)" grep -q 'audit log OK: 8 records' "$tmp/out"
check "record 7 holds the error" sh -c "sed -n 7p '$log' | grep -q '\"result\":\"error: '"
check "no pin-source in the log" sh -c "! grep -q 'pin-' '$log'"
check "fields: key, cert fingerprint, content digest, signature digest, prev" sh -c \
	"head -1 '$log' | grep -q '\"key\":\"pkcs11:.*\"cert_sha256\":\"[0-9a-f]\{64\}\".*\"content_digest\":\"sha256:[0-9a-f]\{64\}\".*\"signature_sha256\":\"[0-9a-f]\{64\}\".*\"prev\":\"0\{64\}\"'"
head_hash=$(tail -1 "$log" | sed 's/.*"hash":"\([0-9a-f]*\)".*/\1/')
# Every kind of alteration names the first bad record (exit 1).
tamper() { # DESC RECORD-EXPECTED SCRIPT
	local desc=$1 want=$2
	cp "$log" "$tmp/t.log"
	sh -c "$3" sh "$tmp/t.log"
	expect 1 "audit verify: $desc" -- "$bin" audit verify ${4:-} "$tmp/t.log"
	check "names record $want" grep -q "BROKEN at record $want:" "$tmp/out"
}
tamper "altered field" 3 'sed -i "3s/\"operation\":\"sign\"/\"operation\":\"sigN\"/" "$1"'
z64=$(printf '0%.0s' $(seq 64))
e64=$(printf 'e%.0s' $(seq 64))
tamper "altered hash" 3 "sed -i '3s/\"hash\":\"[0-9a-f]*\"/\"hash\":\"$z64\"/' \"\$1\""
tamper "removed record" 2 'sed -i 2d "$1"'
tamper "reordered records" 2 'awk "NR==2{s=\$0;next} NR==3{print;print s;next} {print}" "$1" >"$1.n" && mv "$1.n" "$1"'
tamper "inserted copy" 3 'sed -i "2p" "$1"'
tamper "truncated last record" 8 'truncate -s -10 "$1"'
tamper "rewritten prev" 2 "sed -i '2s/\"prev\":\"[0-9a-f]*\"/\"prev\":\"$e64\"/' \"\$1\""
tamper "trailing records removed (head kept elsewhere)" 8 'sed -i \$d "$1"' "--expect-head $head_hash"
expect 0 "audit verify --expect-head on the intact log" -- "$bin" audit verify \
	--expect-head "$head_hash" "$log"
cp "$log" "$tmp/trunc.log"
truncate -s -3 "$tmp/trunc.log"
expect 1 "no signature is released when the log cannot be extended" -- p11s sign --key "$rsa" \
	--audit-log "$tmp/trunc.log" --in "$msg" --out "$tmp/a5.eml"
check "no output" test ! -e "$tmp/a5.eml"
# Concurrent writers keep the chain intact (flock + fsync). SoftHSM itself may refuse a
# concurrent process (CKR_GENERAL_ERROR from its token files): count the signers that got
# through; every one of them must have its record. (The unit test forks writers without a
# token.)
pids=
for i in 1 2 3 4; do
	p11s sign --key "$(keyuri ec256)" --audit-log "$log" --in "$msg" --out "$tmp/c$i.eml" \
		2>"$tmp/c$i.err" &
	pids="$pids $!"
done
n_ok=0
for p in $pids; do if wait "$p"; then n_ok=$((n_ok + 1)); fi; done
check "at least one concurrent signer succeeds" test "$n_ok" -ge 1
# A signer whose signature got through but whose final checkpoint the token refused warns,
# and its record stays unanchored: then audit verify must say so (exit 1), else pass.
if grep -q "final checkpoint not written" "$tmp"/c?.err; then
	expect 1 "audit verify after concurrent appends (a checkpoint was refused: unanchored)" -- \
		"$bin" audit verify "$log"
	check "  ... names the unanchored records" grep -q "not anchored" "$tmp/out" "$tmp/err"
else
	expect 0 "audit verify after concurrent appends" -- "$bin" audit verify "$log"
fi
[ "$failed" -eq 0 ] || sed 's/^/#   signer: /' "$tmp"/c?.err
check "one record per successful signer" test "$(grep -c '"operation":"sign"' "$log")" = $((4 + n_ok))
expect 2 "audit verify: missing file" -- "$bin" audit verify "$tmp/nope.log"
expect 2 "audit: usage" -- "$bin" audit check "$log"

finish
