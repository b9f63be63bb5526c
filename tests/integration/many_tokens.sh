#!/bin/bash
# Integration suite "many tokens" (issue 5 item 7) for one backend: two SoftHSMv2 tokens side by
# side, selection by every RFC 7512 path attribute (token, serial, manufacturer, model, slot-id,
# object, id, type), an ambiguous key URI (exit 2 listing the candidates of both tokens),
# module-path in the URI, and an unknown path attribute (RFC 7512 §2.5: matches nothing, exit 3).
# The shared fixture token is never modified: its token directory is copied and the second token
# is made in the copy, in SoftHSM's spare (uninitialised) slot.
# usage: many_tokens.sh BACKEND   (environment from tests/CMakeLists.txt: P11S_BIN, P11S_TEST_*)
set -euo pipefail
backend=$1
. "$(dirname "$0")/lib.sh"

exec </dev/null

# --- a copy of the fixture's token directory, and a second token in it
hsm=$tmp/hsm
mkdir -p "$hsm"
cp -a "$P11S_TEST_DIR/tokens" "$hsm/tokens"
sed "s|^directories.tokendir *=.*|directories.tokendir = $hsm/tokens|" \
	"$P11S_TEST_DIR/softhsm2.conf" >"$hsm/softhsm2.conf"
export SOFTHSM2_CONF=$hsm/softhsm2.conf
p11s() { "$bin" --backend "$backend" --module "$mod" "$@"; }
p11p() { p11s --pin-source "file:$pinfile" "$@"; }
# json EXPR FILE [ARG]: print a Python expression over the parsed JSON `d` (ARG is `a`).
json() {
	python3 -c 'import json,sys; d=json.load(open(sys.argv[2])); a=sys.argv[3]; print(eval(sys.argv[1]))' \
		"$1" "$2" "${3:-}"
}

expect 0 "tokens --json on the copy" -- p11s --json tokens
spare=$(json '[t["slot_id"] for t in d["tokens"] if t["token_present"] and "label" not in t][0]' "$tmp/out")
pin=$(head -n1 "$pinfile")
(
	# PINs through env: names only (pkcs11-tool's util_get_pin), as tokens/make-token.sh does.
	export P11S_SO=13579135 P11S_PIN=$pin
	pkcs11-tool --module "$mod" --slot "$spare" --init-token --label p11s-second --so-pin env:P11S_SO
	pkcs11-tool --module "$mod" --token-label p11s-second --login --login-type so \
		--so-pin env:P11S_SO --init-pin --new-pin env:P11S_PIN
	# Same label and an id that collide with the fixture's keys (ec256, id 01 = rsa2048 there).
	pkcs11-tool --module "$mod" --token-label p11s-second --login --pin env:P11S_PIN \
		--keypairgen --key-type EC:prime256v1 --id 01 --label ec256 --usage-sign
	pkcs11-tool --module "$mod" --token-label p11s-second --login --pin env:P11S_PIN \
		--keypairgen --key-type EC:prime256v1 --id 05 --label second-only --usage-sign
	# Certificates from the test intermediate CA (as batch.sh does): pkcs11-helper sees only
	# keys that have one (docs/backends.md), and they make the second token's keys usable.
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$hsm/dummy.key" -subj "/O=p11smime test/CN=second" -out "$hsm/req.csr"
	for obj in 01:ec256 05:second-only; do
		id=${obj%%:*} name=${obj#*:}
		pkcs11-tool --module "$mod" --token-label p11s-second --read-object --type pubkey \
			--id "$id" -o "$hsm/$id.pub.der"
		openssl pkey -pubin -inform DER -in "$hsm/$id.pub.der" -out "$hsm/$id.pub.pem"
		openssl x509 -req -in "$hsm/req.csr" -CA "$P11S_TEST_PKI/intermediate.pem" \
			-CAkey "$P11S_TEST_PKI/intermediate/intermediate.key" -set_serial "0x5ec0$id" \
			-days 30 -force_pubkey "$hsm/$id.pub.pem" -out "$hsm/$id.cert.pem" \
			-extfile <(printf 'keyUsage=critical,digitalSignature\nextendedKeyUsage=emailProtection\nsubjectAltName=email:%s@example.org\n' "$name")
		openssl x509 -in "$hsm/$id.cert.pem" -outform DER -out "$hsm/$id.cert.der"
		pkcs11-tool --module "$mod" --token-label p11s-second --login --pin env:P11S_PIN \
			--write-object "$hsm/$id.cert.der" --type cert --id "$id" --label "$name"
	done
) >"$hsm/setup.log" 2>&1 || { cat "$hsm/setup.log"; not_ok "second token setup"; finish; }

# --- tokens: both, with their identities
expect 0 "tokens lists both tokens" -- p11s tokens
check "  ... the fixture token" grep -q "token: *$label\$" "$tmp/out"
check "  ... the second token" grep -q "token: *p11s-second\$" "$tmp/out"
expect 0 "tokens --json" -- p11s --json tokens
cp "$tmp/out" "$tmp/tokens.json"
check "  ... both tokens, distinct serials and slot ids" python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
t={x["label"]:x for x in d["tokens"] if "label" in x}
assert set(t)=={sys.argv[2],"p11s-second"}, t
a,b=t[sys.argv[2]],t["p11s-second"]
assert a["serial"]!=b["serial"] and a["slot_id"]!=b["slot_id"]
assert a["manufacturer"]==b["manufacturer"]=="SoftHSM project" and a["model"]==b["model"]
' "$tmp/tokens.json" "$label"
tok() { json "[t[\"$1\"] for t in d[\"tokens\"] if t.get(\"label\")==a][0]" "$tmp/tokens.json" "$2"; }
serial1=$(tok serial "$label")
serial2=$(tok serial p11s-second)
slot2=$(tok slot_id p11s-second)

# keys_sel DESC URI N [TOKENS]: `keys --token URI` lists exactly N keys, on exactly TOKENS
# (space-separated labels), as JSON.
keys_sel() {
	local desc=$1 uri=$2 n=$3 toks=${4:-}
	expect 0 "$desc" -- p11p --json keys --token "$uri"
	check "  ... $n key(s)${toks:+ on $toks}" python3 -c '
import json,sys
k=json.load(open(sys.argv[1]))["keys"]
assert len(k)==int(sys.argv[2]), [x["uri"] for x in k]
if sys.argv[3]:
    assert sorted(set(x["token"] for x in k))==sorted(sys.argv[3].split()), [x["uri"] for x in k]
' "$tmp/out" "$n" "$toks"
}

# --- keys without a filter: the keys of both tokens (one PIN source, one login per token)
expect 0 "keys without a filter" -- p11p --json keys
check "  ... 4 keys of the fixture and 2 of the second token" python3 -c '
import json,sys
k=json.load(open(sys.argv[1]))["keys"]
c={}
for x in k: c[x["token"]]=c.get(x["token"],0)+1
assert c=={sys.argv[2]:4,"p11s-second":2}, c
' "$tmp/out" "$label"

# --- selection by each path attribute
keys_sel "token=" "pkcs11:token=p11s-second" 2 "p11s-second"
keys_sel "serial= (second)" "pkcs11:serial=$serial2" 2 "p11s-second"
keys_sel "manufacturer+model+serial (fixture)" \
	"pkcs11:manufacturer=SoftHSM%20project;model=SoftHSM%20v2;serial=$serial1" 4 "$label"
keys_sel "manufacturer alone matches both tokens" "pkcs11:manufacturer=SoftHSM%20project" 6 \
	"$label p11s-second"
keys_sel "model alone matches both tokens" "pkcs11:model=SoftHSM%20v2" 6 "$label p11s-second"
keys_sel "slot-id= (from tokens --json)" "pkcs11:slot-id=$slot2" 2 "p11s-second"
keys_sel "object= on both tokens" "pkcs11:object=ec256" 2 "$label p11s-second"
keys_sel "object= on one token" "pkcs11:object=second-only" 1 "p11s-second"
keys_sel "id= on both tokens" "pkcs11:id=%01" 2 "$label p11s-second"
keys_sel "id= on one token" "pkcs11:id=%05" 1 "p11s-second"
keys_sel "token= and object=" "pkcs11:token=p11s-second;object=ec256" 1 "p11s-second"
keys_sel "type=private" "pkcs11:type=private" 6 "$label p11s-second"
keys_sel "type=cert names no private key" "pkcs11:type=cert" 0
expect 3 "serial of one token with the label of the other matches no token: exit 3" -- \
	p11p keys --token "pkcs11:serial=$serial1;token=p11s-second"
check "  ... no token matches" grep -q "no token matches" "$tmp/err"

# --- ambiguous key selection: exit 2, candidates of both tokens named
expect 2 "sign --key object=ec256 (on both tokens) is ambiguous: exit 2" -- \
	p11p sign --key "pkcs11:object=ec256;type=private" --in /dev/null
check "  ... says 2 keys match" grep -q "2 keys match" "$tmp/err"
check "  ... names the fixture's candidate" grep -q "serial=$serial1;token=$label;id=%03;object=ec256" "$tmp/err"
check "  ... names the second token's candidate" grep -q "serial=$serial2;token=p11s-second;id=%01;object=ec256" "$tmp/err"
check "  ... in one line" test "$(wc -l <"$tmp/err")" -eq 1
expect 2 "sign --key manufacturer=...;type=private (six keys): exit 2" -- \
	p11p sign --key "pkcs11:manufacturer=SoftHSM%20project;type=private" --in /dev/null
check "  ... says 6 keys match" grep -q "6 keys match" "$tmp/err"
check "  ... lists keys of both tokens" sh -c "grep -q 'token=$label;' '$tmp/err' && grep -q 'token=p11s-second;' '$tmp/err'"
# The same label, selected by token: the signature is made by the second token's key.
printf 'From: a@example.org\nTo: b@example.org\nSubject: second\n\nhello\n' >"$tmp/msg.eml"
expect 0 "sign --key token=p11s-second;object=ec256 signs with the second token" -- \
	p11p sign --key "pkcs11:token=p11s-second;object=ec256;type=private" \
	--chain "$P11S_TEST_PKI/intermediate.pem" --in "$tmp/msg.eml" --out "$tmp/signed.eml"
check "  ... openssl verifies it" sh -c "openssl cms -verify -in '$tmp/signed.eml' \
	-CAfile '$P11S_TEST_PKI/root.pem' -signer '$tmp/signer.pem' -out /dev/null 2>/dev/null"
check "  ... the signer is the second token's certificate" cmp -s "$tmp/signer.pem" \
	<(openssl x509 -in "$hsm/01.cert.pem")
expect 2 "sign --key type=cert is not a private key: exit 2" -- \
	p11p sign --key "pkcs11:token=p11s-second;type=cert" --in /dev/null

# --- module-path selects the module; an unknown path attribute matches nothing
expect 0 "module-path in the URI selects the module over --module" -- \
	"$bin" --backend "$backend" --module /nonexistent/libnone.so --pin-source "file:$pinfile" \
	--json keys --token "pkcs11:token=p11s-second?module-path=$mod"
check "  ... the second token's 2 keys" test "$(json 'len(d["keys"])' "$tmp/out")" -eq 2
expect 3 "module-path naming a missing module: exit 3" -- \
	p11p keys --token "pkcs11:token=p11s-second?module-path=/nonexistent/libnone.so"
check "  ... names the module" grep -q "/nonexistent/libnone.so" "$tmp/err"
expect 3 "an unknown path attribute matches nothing: exit 3" -- \
	p11p keys --token "pkcs11:token=p11s-second;x-p11smime-unknown=1"
check "  ... no token matches" grep -q "no token matches" "$tmp/err"
expect 3 "sign --key with an unknown path attribute: exit 3" -- \
	p11p sign --key "pkcs11:object=second-only;x-p11smime-unknown=1" --in /dev/null
expect 3 "a token label that exists on neither token: exit 3" -- \
	p11p keys --token "pkcs11:token=p11s-third"

finish
