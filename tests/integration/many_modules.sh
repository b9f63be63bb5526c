#!/bin/bash
# Integration suite "many modules" (issue 5 item 7) for one backend: several PKCS#11 modules in
# one configuration file (`module` repeated), RFC 7512 module-name and module-path selection,
# and module-name resolved through p11-kit's registry.
#
# The two modules are SoftHSMv2 itself and OpenSC's pkcs11-spy wrapping SoftHSMv2 (one
# SOFTHSM2_CONF per process makes a second, independent SoftHSM awkward): every token is seen
# twice, once through each module, so an unqualified key selection is ambiguous (exit 2, naming
# the candidates of both modules) and module-path or module-name tells them apart. The spy's log
# proves which module signed. Read-only on the shared fixture token.
# usage: many_modules.sh BACKEND   (environment from tests/CMakeLists.txt: P11S_BIN, P11S_TEST_*)
set -euo pipefail
backend=$1
. "$(dirname "$0")/lib.sh"

exec </dev/null

spy=
for f in /usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so /usr/lib/x86_64-linux-gnu/pkcs11-spy.so \
	/usr/lib/pkcs11/pkcs11-spy.so; do
	[ -e "$f" ] && { spy=$f; break; }
done
if [ -z "$spy" ]; then
	[ -n "${CI:-}" ] && { not_ok "pkcs11-spy.so missing (Debian package opensc-pkcs11)"; finish; }
	echo "SKIP: pkcs11-spy.so missing (Debian package opensc-pkcs11)"
	exit 77
fi
# The spy loads the module PKCS11SPY names and logs every call to PKCS11SPY_OUTPUT.
export PKCS11SPY=$mod PKCS11SPY_OUTPUT=$tmp/spy.log
unset P11SMIME_MODULE
printf 'module = %s\nmodule = %s\n' "$mod" "$spy" >"$tmp/two.conf"
printf 'module = %s\n' "$spy" >"$tmp/spy.conf"
: >"$tmp/none.conf"
p11c() { "$bin" --backend "$backend" --config "$1" --pin-source "file:$pinfile" "${@:2}"; }
p11s() { p11c "$tmp/two.conf" "$@"; }
# json EXPR FILE [ARG]: print a Python expression over the parsed JSON `d` (ARG is `a`).
json() {
	python3 -c 'import json,sys; d=json.load(open(sys.argv[2])); a=sys.argv[3]; print(eval(sys.argv[1]))' \
		"$1" "$2" "${3:-}"
}

# --- tokens: every token of both modules, each with its module
expect 0 "tokens --json with two modules configured" -- p11s --json tokens
check "  ... the fixture token once through each module" python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
m=sorted(t["module"] for t in d["tokens"] if t.get("label")==sys.argv[2])
assert m==sorted([sys.argv[3],sys.argv[4]]), m
' "$tmp/out" "$label" "$mod" "$spy"
expect 0 "tokens (text) names the modules" -- p11s tokens
check "  ... module: lines for both" sh -c "grep -q 'module: *$mod\$' '$tmp/out' && grep -q 'module: *$spy\$' '$tmp/out'"

# --- keys: across both modules, URIs naming the module
expect 0 "keys --json across both modules" -- p11s --json keys
check "  ... 4 keys through each module, URIs with module-path" python3 -c '
import json,sys
k=json.load(open(sys.argv[1]))["keys"]
c={}
for x in k:
    c[x["module"]]=c.get(x["module"],0)+1
    assert x["uri"].endswith("?module-path="+x["module"].replace("/","%2F")) or \
        x["uri"].endswith("?module-path="+x["module"]), x["uri"]
assert c=={sys.argv[2]:4,sys.argv[3]:4}, c
' "$tmp/out" "$mod" "$spy"
spy_uri=$(json '[x["uri"] for x in d["keys"] if x["module"]==a and x["label"]=="ec256"][0]' "$tmp/out" "$spy")

# --- an unqualified selection is ambiguous across the modules: exit 2, both candidates
printf 'From: a@example.org\nTo: b@example.org\nSubject: modules\n\nhello\n' >"$tmp/msg.eml"
expect 2 "sign --key token=...;object=ec256 (seen through both modules): exit 2" -- \
	p11s sign --key "pkcs11:token=$label;object=ec256;type=private" --in "$tmp/msg.eml"
check "  ... says 2 keys match" grep -q "2 keys match" "$tmp/err"
check "  ... names the SoftHSM candidate" grep -q "module-path=${mod//\//%2F}\|module-path=$mod" "$tmp/err"
check "  ... names the spy candidate" grep -q "module-path=${spy//\//%2F}\|module-path=$spy" "$tmp/err"
check "  ... in one line" test "$(wc -l <"$tmp/err")" -eq 1

# --- the URI `keys` printed selects one module: the spy signs
: >"$tmp/spy.log"
expect 0 "sign --key with the spy's key URI (module-path) signs" -- \
	p11s sign --key "$spy_uri" --chain "$P11S_TEST_PKI/intermediate.pem" --in "$tmp/msg.eml" \
	--out "$tmp/signed.eml"
check "  ... openssl verifies it" sh -c "openssl cms -verify -in '$tmp/signed.eml' \
	-CAfile '$P11S_TEST_PKI/root.pem' -out /dev/null 2>/dev/null"
check "  ... through the spy (its log has C_Sign)" grep -q "C_Sign" "$tmp/spy.log"

# --- module-name selects among the configured modules
expect 0 "keys --token ...?module-name=softhsm2 (p11-kit's name of SoftHSM)" -- \
	p11s --json keys --token "pkcs11:token=$label?module-name=softhsm2"
check "  ... the 4 keys of SoftHSM only" python3 -c '
import json,sys
k=json.load(open(sys.argv[1]))["keys"]
assert len(k)==4 and all(x["module"]==sys.argv[2] for x in k), [x["uri"] for x in k]
' "$tmp/out" "$mod"
expect 0 "keys --token ...?module-name=pkcs11-spy (RFC 7512 name of the file)" -- \
	p11s --json keys --token "pkcs11:token=$label?module-name=pkcs11-spy"
check "  ... the 4 keys of the spy only" python3 -c '
import json,sys
k=json.load(open(sys.argv[1]))["keys"]
assert len(k)==4 and all(x["module"]==sys.argv[2] for x in k), [x["uri"] for x in k]
' "$tmp/out" "$spy"
: >"$tmp/spy.log"
expect 0 "sign --key ...;object=ec256?module-name=softhsm2 is unique" -- \
	p11s sign --key "pkcs11:token=$label;object=ec256;type=private?module-name=softhsm2" \
	--chain "$P11S_TEST_PKI/intermediate.pem" --in "$tmp/msg.eml" --out "$tmp/signed2.eml"
check "  ... and the spy did not sign" sh -c "! grep -q C_Sign '$tmp/spy.log'"
expect 3 "only the spy configured: module-name=softhsm2 matches no key (exit 3)" -- \
	p11c "$tmp/spy.conf" keys --token "pkcs11:token=$label?module-name=softhsm2"
check "  ... no token matches" grep -q "no token matches" "$tmp/err"

# --- no module configured: module-name loads the module p11-kit registers under that name
expect 0 "no module configured: module-name=softhsm2 loads it from p11-kit's registry" -- \
	p11c "$tmp/none.conf" --json keys --token "pkcs11:token=$label?module-name=softhsm2"
check "  ... the fixture's 4 keys" test "$(json 'len(d["keys"])' "$tmp/out")" -eq 4
check "  ... from the registered file" python3 -c '
import json,os,sys
k=json.load(open(sys.argv[1]))["keys"]
assert all(os.path.realpath(x["module"])==os.path.realpath(sys.argv[2]) for x in k), k
' "$tmp/out" "$mod"
expect 3 "no module configured: an unregistered module-name is exit 3" -- \
	p11c "$tmp/none.conf" keys --token "pkcs11:token=$label?module-name=p11s-no-such-module"
check "  ... says p11-kit has no such module" grep -q "no PKCS#11 module named 'p11s-no-such-module'" "$tmp/err"

# --- --module on the command line still means one module
expect 0 "--module overrides the configured modules" -- \
	p11s --module "$mod" --json keys
check "  ... 4 keys, URIs without module-path" python3 -c '
import json,sys
k=json.load(open(sys.argv[1]))["keys"]
assert len(k)==4 and not any("module-path" in x["uri"] for x in k), [x["uri"] for x in k]
' "$tmp/out"

finish
