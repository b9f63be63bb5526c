#!/bin/bash
# The main job as a demo: build p11smime, make a throwaway SoftHSMv2 token with keys generated
# on it and a test PKI, and use the token. Everything is removed at the end.
# usage: ci/demo.sh
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/ci/deps.sh"

build=$top/build-demo
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DP11S_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" >/dev/null
bin=$build/src/cli/p11smime
module=/usr/lib/softhsm/libsofthsm2.so

work=$(mktemp -d /tmp/p11smime-demo.XXXXXX)
cleanup() {
	"$top/tests/evidence/tsa.sh" stop "$work/tsa" >/dev/null 2>&1 || true
	"$top/tokens/remove-token.sh" "$work" >/dev/null 2>&1 || rm -rf "$work"
}
trap cleanup EXIT
umask 077
# A random PIN in a file: the PIN never appears on a command line or in the environment.
od -An -N4 -tu4 /dev/urandom | tr -d ' ' >"$work/user.pin"
od -An -N4 -tu4 /dev/urandom | tr -d ' ' >"$work/so.pin"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "1. a throwaway SoftHSMv2 token: RSA-2048, RSA-3072, P-256, P-384 keys generated on it (p11smime keygen)"
"$top/tokens/make-token.sh" --dir "$work" --label demo --pin-file "$work/user.pin" \
	--so-pin-file "$work/so.pin" --module "$module" --p11smime "$bin" >/dev/null
export SOFTHSM2_CONF=$work/softhsm2.conf
# (make-token.sh made those four keys with p11smime keygen, csr and import-cert; step 2 shows
# the same life of one more key.)
p11s() {
	printf '$ p11smime --pin-source file:user.pin %s\n' "$*"
	"$bin" --module "$module" --pin-source "file:$work/user.pin" "$@"
}

step "2. a key's life on the token: keygen -> csr -> the test CA issues -> import-cert -> sign"
printf '$ p11smime --pin-source file:user.pin %s\n' "keygen --token pkcs11:token=demo --type ec:p256 --label mail"
"$bin" --module "$module" --pin-source "file:$work/user.pin" keygen --token pkcs11:token=demo \
	--type ec:p256 --label mail
# keygen printed the full URI; the label is enough to select the key.
newkey='pkcs11:token=demo;object=mail;type=private'
p11s csr --key "$newkey" --subject "/O=p11smime demo/CN=Dana/emailAddress=dana@example.org" --email dana@example.org \
	--usage both --out "$work/dana.csr"
openssl req -in "$work/dana.csr" -noout -verify 2>&1 | sed 's/^/  csr: /'
printf '$ %s\n' "openssl ca -name ca_intermediate -extensions ee_ec -in dana.csr -out dana.pem"
openssl ca -config "$work/pki/openssl.cnf" -name ca_intermediate -batch -notext -extensions ee_ec \
	-in "$work/dana.csr" -out "$work/dana.pem" 2>/dev/null
openssl x509 -in "$work/dana.pem" -noout -subject -ext subjectAltName,keyUsage | sed 's/^/  /'
p11s import-cert --key "$newkey" --in "$work/dana.pem"
printf 'From: dana@example.org\r\nTo: bob@example.org\r\nSubject: a new key\r\n\r\nSigned by a key made a moment ago.\r\n' \
	>"$work/dana.eml"
p11s sign --key "$newkey" --chain "$work/pki/intermediate.pem" --in "$work/dana.eml" \
	--out "$work/dana-signed.eml"
printf '$ %s\n' "openssl cms -verify -in dana-signed.eml -CAfile root.pem -purpose smimesign"
openssl cms -verify -in "$work/dana-signed.eml" -CAfile "$work/pki/root.pem" -purpose smimesign \
	-out /dev/null 2>&1 | sed 's/^/  /'

step "3. the slots and tokens the module offers"
show "$bin" --module "$module" tokens

step "4. the private keys on the token, with their certificates (PIN read from a file)"
show "$bin" --module "$module" --pin-source "file:$work/user.pin" keys

step "5. the same as JSON: each key's pkcs11: URI is what sign/decrypt take"
"$bin" --module "$module" --pin-source "file:$work/user.pin" --json keys |
	python3 -c 'import json,sys
for k in json.load(sys.stdin)["keys"]:
    print("  %-3s %4d  %-22s %s" % (k["type"], k["bits"], k["certificate"]["emails"][0], k["uri"]))'

step "6. sign a message on the token (P-256 key) and verify it"
key=$("$bin" --module "$module" --pin-source "file:$work/user.pin" --json keys |
	python3 -c 'import json,sys; print([k["uri"] for k in json.load(sys.stdin)["keys"] if k["label"]=="ec256"][0])')
printf 'From: alice-ec256@example.org\r\nTo: bob@example.org\r\nSubject: hello from the token\r\nDate: %s\r\n\r\nThis message was signed by a key that never left the token.\r\n' \
	"$(date -R)" >"$work/msg.eml"
show "$bin" --module "$module" --pin-source "file:$work/user.pin" sign --key "$key" \
	--chain "$work/pki/intermediate.pem" --in "$work/msg.eml" --out "$work/signed.eml"
sed -n '1,8p' "$work/signed.eml"
echo "  ..."
show "$bin" verify --trust "$work/pki/root.pem" --crl "$work/pki/crls.pem" --in "$work/signed.eml"

step "7. one altered byte: the signature no longer verifies (exit status 1)"
sed 's/never left/NEVER left/' "$work/signed.eml" >"$work/altered.eml"
set +e
"$bin" verify --trust "$work/pki/root.pem" --in "$work/altered.eml" | grep -E "verdict|reason"
echo "exit status: ${PIPESTATUS[0]}"
set -e

step "8. encrypt to the token's RSA certificate (AES-256-GCM), decrypt on the token"
show "$bin" encrypt --to "$work/pki/rsa2048.pem" --in "$work/msg.eml" --out "$work/enc.eml"
sed -n '1,8p' "$work/enc.eml"
echo "  ..."
show "$bin" --module "$module" --pin-source "file:$work/user.pin" decrypt --in "$work/enc.eml" \
	--out "$work/dec.eml"
cmp <(tr -d '\r' <"$work/msg.eml") <(tr -d '\r' <"$work/dec.eml" | grep -v '^MIME-Version') &&
	echo "decrypted message = original"

step "9. triple wrap (sign, encrypt to P-384, sign) and unwrap every layer on the token"
show "$bin" --module "$module" --pin-source "file:$work/user.pin" wrap --triple --key "$key" \
	--chain "$work/pki/intermediate.pem" --to "$work/pki/ec384.pem" --in "$work/msg.eml" \
	--out "$work/triple.eml"
"$bin" --module "$module" --pin-source "file:$work/user.pin" --json unwrap \
	--trust "$work/pki/root.pem" --in "$work/triple.eml" --out "$work/unwrapped.eml" |
	python3 -c 'import json,sys
d=json.load(sys.stdin)
for l in d["layers"]: print("  layer %d: %-9s %s" % (l["layer"], l["type"], "ok" if l["ok"] else "FAILED"))
print("  unwrap:", "valid" if d["valid"] else "INVALID")'

step "10. evidence: RFC 3161 timestamp from a TSA on loopback, receipt request, audit log"
# The same real TSA as tests/evidence: `openssl ts -reply` behind tests/evidence/tsa_server.py,
# its certificate issued by the demo PKI's intermediate CA (timeStamping EKU).
tsa=$("$top/tests/evidence/tsa.sh" start "$work/tsa" "$work/pki")
echo "TSA listening at $tsa/good"
show "$bin" --module "$module" --pin-source "file:$work/user.pin" sign --key "$key" \
	--chain "$work/pki/intermediate.pem" --tsa "$tsa/good" --receipt-request all \
	--audit-log "$work/audit.log" --in "$work/msg.eml" --out "$work/evidence.eml"
printf '$ %s\n' "$bin verify --trust $work/pki/root.pem --crl $work/pki/crls.pem --in $work/evidence.eml"
"$bin" verify --trust "$work/pki/root.pem" --crl "$work/pki/crls.pem" --in "$work/evidence.eml" |
	grep -E 'verdict|signing time|timestamp|binding|receipt request'
echo "-- the recipient (here: the token's RSA-2048 key) returns a signed receipt"
rkey=$("$bin" --module "$module" --pin-source "file:$work/user.pin" --json keys |
	python3 -c 'import json,sys; print([k["uri"] for k in json.load(sys.stdin)["keys"] if k["label"]=="rsa2048"][0])')
show "$bin" --module "$module" --pin-source "file:$work/user.pin" receipt --key "$rkey" \
	--chain "$work/pki/intermediate.pem" --in "$work/evidence.eml" --out "$work/receipt.eml"
grep -m1 -i '^Content-Type' "$work/receipt.eml"
printf '$ %s\n' "$bin verify-receipt --original $work/evidence.eml --trust $work/pki/root.pem --in $work/receipt.eml"
"$bin" verify-receipt --original "$work/evidence.eml" --trust "$work/pki/root.pem" \
	--in "$work/receipt.eml" | grep -E 'verdict|receipt signer|content identifier'
echo "-- the audit log: one hash-chained record per signature (no PIN in it)"
python3 -c 'import json,sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["operation"] == "checkpoint":  # signed checkpoint records (docs/evidence.md)
        print("  #%d %s checkpoint: prev %s..." % (r["seq"], r["time"], r["prev"][:12]))
        continue
    print("  #%d %s %s %s: cert %s... content %s... prev %s..." % (r["seq"], r["time"],
          r["operation"], r["result"], r["cert_sha256"][:12], r["content_digest"][:19],
          r["prev"][:12]))' "$work/audit.log"
show "$bin" audit verify "$work/audit.log"
"$top/tests/evidence/tsa.sh" stop "$work/tsa"

step "11. a wrong PIN is refused with exit status 3, and the token's PIN state is reported"
echo 000000 >"$work/wrong.pin"
set +e
"$bin" --module "$module" --pin-source "file:$work/wrong.pin" keys
echo "exit status: $?"
set -e

step "done: the token and its directory are removed"
