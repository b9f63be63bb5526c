#!/bin/bash
# Integration suite of `tokens` and `keys` on the throwaway SoftHSMv2 token, for one backend.
# usage: cli.sh BACKEND   (environment from tests/CMakeLists.txt: P11S_BIN, P11S_TEST_*)
set -euo pipefail
backend=$1
. "$(dirname "$0")/lib.sh"

pin=$(head -n1 "$pinfile")
p11s() { "$bin" --backend "$backend" --module "$mod" "$@"; }
# Nothing on stdin: no prompting.
exec </dev/null

# --- tokens
expect 0 "tokens lists the slots" -- p11s tokens
check "tokens shows the test token" grep -q "token: *$label\$" "$tmp/out"
check "tokens shows login-required" grep -q "login-required" "$tmp/out"
expect 0 "tokens --json" -- p11s --json tokens
check "tokens --json is valid JSON naming the token" python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
t=[t for t in d["tokens"] if t.get("label")==sys.argv[2]]
assert len(t)==1 and t[0]["token_present"] and "login-required" in t[0]["flags"]
assert t[0]["uri"].startswith("pkcs11:") and "token="+sys.argv[2] in t[0]["uri"]
assert t[0]["manufacturer"]=="SoftHSM project" and t[0]["serial"]
' "$tmp/out" "$label"
# Global options also after the command (CLI.md).
expect 0 "global options after the command" -- "$bin" tokens --json --backend "$backend" --module "$mod"

# --- keys, every PIN source
expect 0 "keys with --pin-source file:" -- p11s --pin-source "file:$pinfile" keys
check "keys prints four type=private URIs" test "$(grep -c '^pkcs11:.*type=private' "$tmp/out")" -eq 4
check "keys shows the e-mail address" grep -q "alice-rsa2048@example.org" "$tmp/out"
check "keys shows key usage" grep -q "key usage: digitalSignature" "$tmp/out"
check "keys shows the EKU" grep -q "extended key usage: emailProtection" "$tmp/out"

P11S_PIN_VAR=$pin expect 0 "keys --json with --pin-source env:" -- \
	env P11S_PIN_VAR="$pin" "$bin" --backend "$backend" --module "$mod" --pin-source env:P11S_PIN_VAR --json keys
cp "$tmp/out" "$tmp/keys.json"
check "keys --json lists RSA-2048, RSA-3072, P-256, P-384 with certificates" python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
got=sorted((k["type"],k["bits"],k["curve"]) for k in d["keys"])
assert got==[("EC",256,"P-256"),("EC",384,"P-384"),("RSA",2048,None),("RSA",3072,None)], got
for k in d["keys"]:
    assert k["uri"].startswith("pkcs11:") and "type=private" in k["uri"], k
    assert "token="+sys.argv[2] in k["uri"] and "id=%" in k["uri"]
    c=k["certificate"]
    assert c and c["emails"] and "emailProtection" in c["extended_key_usage"], k
    assert "digitalSignature" in c["key_usage"]
    assert (("keyEncipherment" in c["key_usage"]) if k["type"]=="RSA" else ("keyAgreement" in c["key_usage"]))
' "$tmp/keys.json" "$label"

exec 3<"$pinfile"
expect 0 "keys with --pin-source fd:3" -- p11s --pin-source fd:3 keys
exec 3<&-

tokuri=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["keys"][0]["uri"].split(";object=")[0])' "$tmp/keys.json")
expect 0 "keys --token with pin-source in the URI" -- p11s keys --token "pkcs11:token=$label?pin-source=file:$pinfile"
check "  ... lists four keys" test "$(grep -c '^pkcs11:' "$tmp/out")" -eq 4
expect 0 "keys --token with pin-value in the URI" -- p11s keys --token "pkcs11:token=$label?pin-value=$pin"
expect 0 "a key URI from keys --json selects exactly its key" -- \
	p11s --pin-source "file:$pinfile" keys --token "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["keys"][1]["uri"])' "$tmp/keys.json")"
check "  ... one key" test "$(grep -c '^pkcs11:' "$tmp/out")" -eq 1
expect 0 "module-path in the URI wins over --module" -- \
	"$bin" --backend "$backend" --module /nonexistent/module.so --pin-source "file:$pinfile" keys --token "pkcs11:token=$label?module-path=$mod"

# --- failures: one line, the documented status
badpin=$tmp/bad.pin
echo 000000 >"$badpin"
expect 3 "wrong PIN is exit 3" -- p11s --pin-source "file:$badpin" keys
check "  ... says the PIN was wrong, with the token's try state" grep -q "wrong PIN for token '$label' (" "$tmp/err"
check "  ... in one line" test "$(wc -l <"$tmp/err")" -eq 1
expect 3 "no PIN source and no terminal is exit 3" -- p11s keys
check "  ... asks for --pin-source" grep -q "pin-source" "$tmp/err"
expect 3 "missing module is exit 3" -- "$bin" --backend "$backend" --module /nonexistent/libnone.so tokens
check "  ... names the module" grep -q "/nonexistent/libnone.so" "$tmp/err"
expect 3 "absent token is exit 3" -- p11s --pin-source "file:$pinfile" keys --token "pkcs11:token=no-such-token"
check "  ... says no token matches" grep -q "no token matches" "$tmp/err"
expect 2 "malformed URI is exit 2" -- p11s keys --token "pkcs11:token=%zz"
expect 2 "pin-source with pin-value is exit 2" -- p11s keys --token "pkcs11:token=$label?pin-value=1&pin-source=file:/x"
expect 2 "a PIN on the command line is refused" -- p11s --pin "$pin" keys
expect 2 "unknown command is exit 2" -- p11s frobnicate
expect 2 "unknown option is exit 2" -- p11s keys --frobnicate
expect 2 "bad pin source is exit 2" -- p11s --pin-source "$pin" keys
expect 0 "--help" -- p11s --help
check "  ... lists keys and tokens" grep -q "keys" "$tmp/out"
expect 0 "keys --help" -- p11s keys --help

# --- PIN hygiene: the PIN appears in no output of the runs above
expect 0 "verbose keys run" -- p11s -vv --pin-source "file:$pinfile" keys
check "PIN not in verbose stdout/stderr" bash -c "! grep -q -- '$pin' '$tmp/out' '$tmp/err'"

finish
