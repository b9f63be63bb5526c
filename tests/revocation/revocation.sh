#!/bin/bash
# Live revocation (issue 19, docs/verify.md "Revocation") against real servers on loopback:
# `openssl ocsp -port 0` responders (the kernel picks free ports: tests run in parallel) and a
# Python HTTP server for CRLs and caIssuers. The test PKI's certificates point at them: root ->
# intermediate (CDP root.crl) -> leaves (AIA OCSP + caIssuers, CDP int.crl).
#
# usage: revocation.sh P11SMIME_BINARY
set -uo pipefail
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT
# No user configuration leaks in.
export XDG_CONFIG_HOME=$tmp/config HOME=$tmp/home
mkdir -p "$XDG_CONFIG_HOME" "$HOME"

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $*"; }
die() { echo "revocation.sh: $*" >&2; exit 1; }

www=$tmp/www
mkdir -p "$www"
: >"$www/requests.log"

# ---- servers first: the certificates name their ports ----
python3 "$here/http_server.py" "$www" "$tmp/http.port" 2>"$tmp/http.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/http.port" ] && break; sleep 0.1; done
[ -s "$tmp/http.port" ] || die "HTTP server did not start: $(cat "$tmp/http.log")"
export HTTP_PORT
HTTP_PORT=$(cat "$tmp/http.port")

# A port nobody listens on (the responder-down case): bound, then closed.
closed=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

cat >"$tmp/ca.cnf" <<'EOT'
[ca]
default_ca = CA_default
[CA_default]
dir = $ENV::CADIR
database = $dir/index.txt
new_certs_dir = $dir/new
serial = $dir/serial
crlnumber = $dir/crlnumber
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
default_days = 30
default_crl_days = 2
policy = policy_any
unique_subject = no
email_in_dn = no
[policy_any]
commonName = supplied
emailAddress = optional
[req]
distinguished_name = dn
[dn]
[root_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[int_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
crlDistributionPoints = URI:http://127.0.0.1:$ENV::HTTP_PORT/root.crl
[leaf_ext]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = emailProtection
subjectAltName = email:$ENV::EMAIL
authorityKeyIdentifier = keyid
authorityInfoAccess = OCSP;URI:http://127.0.0.1:$ENV::OCSP_PORT/, caIssuers;URI:http://127.0.0.1:$ENV::HTTP_PORT/int.der
crlDistributionPoints = URI:http://127.0.0.1:$ENV::HTTP_PORT/int.crl
[leaf_p7_ext]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = emailProtection
subjectAltName = email:$ENV::EMAIL
authorityInfoAccess = OCSP;URI:http://127.0.0.1:$ENV::OCSP_PORT/, caIssuers;URI:http://127.0.0.1:$ENV::HTTP_PORT/int.p7c
crlDistributionPoints = URI:http://127.0.0.1:$ENV::HTTP_PORT/int.crl
[leaf_file_ext]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = emailProtection
subjectAltName = email:$ENV::EMAIL
authorityInfoAccess = OCSP;URI:file://$ENV::SENTINEL, caIssuers;URI:file://$ENV::SENTINEL
crlDistributionPoints = URI:file://$ENV::SENTINEL
[resp_ext]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = critical, OCSPSigning
[noeku_ext]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
EOT
export CADIR EMAIL=x@example.org OCSP_PORT=1 SENTINEL=$tmp/sentinel-never-opened
echo "this file must never be opened" >"$SENTINEL"
newca() { mkdir -p "$1/new"; : >"$1/index.txt"; echo 1000 >"$1/serial"; echo 01 >"$1/crlnumber"; }
root=$tmp/root int=$tmp/int
newca "$root"
newca "$int"
{
	CADIR=$root
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$root/ca.key" -subj "/CN=Revocation Test Root" \
		-days 60 -config "$tmp/ca.cnf" -extensions root_ext -out "$root/ca.pem"
	openssl req -new -newkey rsa:2048 -nodes -keyout "$int/ca.key" -subj "/CN=Revocation Test Intermediate" \
		-config "$tmp/ca.cnf" -out "$int/ca.csr"
	openssl ca -batch -config "$tmp/ca.cnf" -extensions int_ext -in "$int/ca.csr" -out "$int/ca.pem" -notext
	openssl ca -batch -config "$tmp/ca.cnf" -gencrl -out "$www/root.crl.pem"
	openssl crl -in "$www/root.crl.pem" -outform DER -out "$www/root.crl"
	openssl x509 -in "$int/ca.pem" -outform DER -out "$www/int.der"
	openssl crl2pkcs7 -nocrl -certfile "$int/ca.pem" -outform DER -out "$www/int.p7c"
	CADIR=$int
	# Responder certificates: delegated (id-kp-OCSPSigning, RFC 6960 §4.2.2.2), one without
	# the EKU, and a rogue one the intermediate never certified.
	openssl req -new -newkey rsa:2048 -nodes -keyout "$int/resp.key" -subj "/CN=Test OCSP Responder" \
		-config "$tmp/ca.cnf" -out "$int/resp.csr"
	openssl ca -batch -config "$tmp/ca.cnf" -extensions resp_ext -in "$int/resp.csr" -out "$int/resp.pem" -notext
	openssl req -new -newkey rsa:2048 -nodes -keyout "$int/noeku.key" -subj "/CN=Responder Without EKU" \
		-config "$tmp/ca.cnf" -out "$int/noeku.csr"
	openssl ca -batch -config "$tmp/ca.cnf" -extensions noeku_ext -in "$int/noeku.csr" -out "$int/noeku.pem" -notext
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$int/rogue.key" -subj "/CN=Rogue Responder" \
		-days 30 -config "$tmp/ca.cnf" -extensions resp_ext -out "$int/rogue.pem"
} >"$tmp/pki.log" 2>&1 || die "test PKI: $(tail -5 "$tmp/pki.log")"

# responder NAME SIGNER KEY [ARGS...]: a real `openssl ocsp` on a kernel-chosen port.
responder() {
	local name=$1 signer=$2 key=$3 port=""
	shift 3
	openssl ocsp -port 0 -index "$int/index.txt" -CA "$int/ca.pem" -rsigner "$signer" -rkey "$key" \
		"$@" >"$tmp/ocsp-$name.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do
		port=$(sed -n 's/^ACCEPT .*:\([0-9]*\) PID=.*/\1/p' "$tmp/ocsp-$name.log")
		[ -n "$port" ] && break
		sleep 0.1
	done
	[ -n "$port" ] || die "openssl ocsp $name did not start: $(cat "$tmp/ocsp-$name.log")"
	echo "$port"
}
OCSP_PORT=$(responder main "$int/resp.pem" "$int/resp.key" -ndays 1)

# leaf NAME EXT: a certificate from the intermediate (in its index: OCSP knows it).
leaf() {
	EMAIL=$1@example.org CADIR=$int
	export EMAIL CADIR
	openssl req -new -newkey rsa:2048 -nodes -keyout "$tmp/$1.key" -subj "/CN=$1" \
		-config "$tmp/ca.cnf" -out "$tmp/$1.csr" &&
		openssl ca -batch -config "$tmp/ca.cnf" -extensions "$2" -in "$tmp/$1.csr" \
			-out "$tmp/$1.pem" -notext
}
# sign NAME: a multipart/signed message from NAME (openssl cms: only the signer certificate).
sign() {
	printf 'hello from %s\n' "$1" >"$tmp/$1.txt"
	openssl cms -sign -md sha256 -text -in "$tmp/$1.txt" -signer "$tmp/$1.pem" -inkey "$tmp/$1.key" \
		-from "$1@example.org" -to "r@example.org" -subject "test" -out "$tmp/$1.eml"
}
{
	leaf alice leaf_ext && leaf bob leaf_ext && leaf frank leaf_p7_ext && leaf dave leaf_file_ext &&
		CADIR=$int openssl ca -batch -config "$tmp/ca.cnf" -revoke "$tmp/bob.pem" -crl_reason keyCompromise &&
		CADIR=$int openssl ca -batch -config "$tmp/ca.cnf" -gencrl -out "$www/int.crl.pem" &&
		openssl crl -in "$www/int.crl.pem" -outform DER -out "$www/int.crl"
	# carol: issued by the intermediate outside its database, so the responder says "unknown".
	EMAIL=carol@example.org
	openssl req -new -newkey rsa:2048 -nodes -keyout "$tmp/carol.key" -subj "/CN=carol" \
		-config "$tmp/ca.cnf" -out "$tmp/carol.csr" &&
		openssl x509 -req -in "$tmp/carol.csr" -CA "$int/ca.pem" -CAkey "$int/ca.key" \
			-set_serial 0x7777 -days 30 -extfile "$tmp/ca.cnf" -extensions leaf_ext -out "$tmp/carol.pem"
	for n in alice bob carol dave frank; do sign $n || exit 1; done
	# An OCSP response for another request (its own nonce), replayed for every request.
	openssl ocsp -issuer "$int/ca.pem" -cert "$tmp/alice.pem" -url "http://127.0.0.1:$OCSP_PORT/" \
		-respout "$www/alice-other.der" -noverify
} >>"$tmp/pki.log" 2>&1 || die "test PKI leaves: $(tail -5 "$tmp/pki.log")"
# The other responders start once every leaf is in the index: `openssl ocsp` notices a changed
# index only by its mtime (whole seconds), so one started mid-issuance may miss the last leaves.
direct=$(responder direct "$int/ca.pem" "$int/ca.key" -ndays 1)
rogue=$(responder rogue "$int/rogue.pem" "$int/rogue.key" -ndays 1)
noeku=$(responder noeku "$int/noeku.pem" "$int/noeku.key" -ndays 1)

# verify NAME ARGS...: p11smime --json verify of NAME's message, anchor = the root only (the
# intermediate is not given: it comes from caIssuers unless --certs says otherwise).
verify() {
	local n=$1
	shift
	"$bin" --json verify --trust "$root/ca.pem" --in "$tmp/$n.eml" "$@" >"$tmp/out" 2>"$tmp/err"
}
# check DESC WANT_STATUS JQ_FILTER ARGS...: verify, then the exit status and a jq condition.
check() {
	local desc=$1 want=$2 filter=$3 got
	shift 3
	verify "$@"
	got=$?
	if [ "$got" != "$want" ]; then
		not_ok "$desc: exit $got, want $want: $(head -c 600 "$tmp/out") $(head -c 300 "$tmp/err")"
	elif [ -n "$filter" ] && ! jq -e "$filter" "$tmp/out" >/dev/null 2>&1; then
		not_ok "$desc: report fails [$filter]: $(head -c 900 "$tmp/out")"
	else
		ok "$desc"
	fi
}
fetched() { grep -c "^$1 $2\$" "$www/requests.log"; }
codes='[.signers[0].reasons[].code]'
rev0='.signers[0].revocation[0]'

# ---- the contract of CLI.md: --crl files alone, unchanged ----
check "--crl files only (no policy): good from the file CRL" 0 \
	"$rev0.status == \"good\" and $rev0.source == \"file-crl\"" \
	alice --certs "$int/ca.pem" --crl "$www/int.crl.pem" --crl "$www/root.crl.pem"
check "--crl files only: a revoked signer" 1 "$codes | index(\"revoked\") != null" \
	bob --certs "$int/ca.pem" --crl "$www/int.crl.pem" --crl "$www/root.crl.pem"
before=$(wc -l <"$www/requests.log")
check "no revocation option: nothing fetched, intermediate missing is untrusted" 1 \
	"$codes | index(\"untrusted\") != null" alice
[ "$(wc -l <"$www/requests.log")" = "$before" ] && ok "no policy: no HTTP request" ||
	not_ok "no policy: HTTP requests were made"

# ---- OCSP (delegated responder from the AIA) ----
: >"$www/requests.log"
check "OCSP: good signer, intermediate fetched from caIssuers (DER)" 0 \
	"$rev0.status == \"good\" and $rev0.source == \"ocsp\" and ($rev0.ocsp.responder | test(\"127.0.0.1\")) and $rev0.ocsp.this_update != null" \
	alice --revocation ocsp
[ "$(fetched GET /int.der)" -ge 1 ] && ok "caIssuers GET /int.der happened" || not_ok "caIssuers not fetched"
check "OCSP: revoked signer caught with no CRL given" 1 \
	"($codes | index(\"revoked\") != null) and $rev0.status == \"revoked\" and $rev0.source == \"ocsp\" and $rev0.ocsp.revocation_time != null" \
	bob --revocation ocsp
check "OCSP: responder says unknown -> revocation status unknown (hard fail)" 1 \
	"($codes | index(\"revocation-unknown\") != null) and $rev0.status == \"unknown\" and ([.signers[0].reasons[].message] | any(test(\"revocation status unknown\")))" \
	carol --revocation ocsp
check "OCSP unknown, CRL fallback (ocsp,crl): good from the fetched CRL" 0 \
	"$rev0.status == \"good\" and $rev0.source == \"fetched-crl\"" carol --revocation ocsp,crl
check "OCSP: certs-only PKCS#7 caIssuers" 0 "$rev0.source == \"ocsp\"" frank --revocation ocsp
check "OCSP: response signed by the issuing CA itself" 0 "$rev0.source == \"ocsp\"" \
	alice --revocation ocsp --ocsp-url "http://127.0.0.1:$direct/"
check "OCSP: response signed by an unauthorised key is refused" 1 \
	"[.signers[0].reasons[].message] | any(test(\"did not certify\"))" \
	alice --revocation ocsp --ocsp-url "http://127.0.0.1:$rogue/"
check "OCSP: delegated responder without id-kp-OCSPSigning is refused" 1 \
	"[.signers[0].reasons[].message] | any(test(\"OCSPSigning\"))" \
	alice --revocation ocsp --ocsp-url "http://127.0.0.1:$noeku/"
check "OCSP: nonce mismatch (a response to another request) is refused" 1 \
	"[.signers[0].reasons[].message] | any(test(\"nonce\"))" \
	alice --revocation ocsp --ocsp-url "http://127.0.0.1:$HTTP_PORT/replay/alice-other.der"
check "OCSP: stale response (nextUpdate before the validation time)" 1 \
	"[.signers[0].reasons[].message] | any(test(\"stale\"))" \
	alice --revocation ocsp --at "$(date -u -d '+3 days' +%Y-%m-%dT%H:%M:%SZ)"

# ---- outage ----
check "responder down: hard fail by default" 1 \
	"($codes | index(\"revocation-unknown\") != null)" \
	alice --revocation ocsp --ocsp-url "http://127.0.0.1:$closed/"
check "responder down, --soft-fail: accepted with a warning" 0 \
	"([.warnings[].code] | index(\"revocation-unknown\") != null) and $rev0.soft_failed == true" \
	alice --revocation ocsp --ocsp-url "http://127.0.0.1:$closed/" --soft-fail
check "responder down, ocsp,crl: the fetched CRL decides" 0 "$rev0.source == \"fetched-crl\"" \
	alice --revocation ocsp,crl --ocsp-url "http://127.0.0.1:$closed/"
check "--no-fetch: OCSP cannot be asked, unknown" 1 "$codes | index(\"revocation-unknown\") != null" \
	alice --revocation ocsp --no-fetch --certs "$int/ca.pem"

# ---- OCSP stapled in the message (RFC 5940), used first: no responder needed ----
for n in alice bob; do
	openssl ocsp -issuer "$int/ca.pem" -cert "$tmp/$n.pem" -url "http://127.0.0.1:$OCSP_PORT/" \
		-no_nonce -noverify -respout "$tmp/$n-ocsp.der" >>"$tmp/pki.log" 2>&1 &&
		/usr/bin/python3 "$here/staple.py" "$tmp/$n.eml" "$tmp/$n-ocsp.der" "$tmp/$n-stapled.eml" ||
		die "stapling $n: $(tail -3 "$tmp/pki.log")"
done
/usr/bin/python3 "$here/staple.py" "$tmp/carol.eml" "$tmp/alice-ocsp.der" "$tmp/carol-stapled.eml" ||
	die "stapling carol"
openssl cms -verify -noverify -in "$tmp/alice-stapled.eml" -out /dev/null 2>/dev/null &&
	ok "openssl cms -verify accepts the stapled message (revocation info is not signed)" ||
	not_ok "openssl cms -verify refuses the stapled message"
check "stapled OCSP: good, decided with --no-fetch" 0 \
	"$rev0.status == \"good\" and $rev0.source == \"stapled-ocsp\" and $rev0.ocsp.this_update != null" \
	alice-stapled --revocation ocsp --no-fetch --certs "$int/ca.pem"
check "stapled OCSP: a revoked signer caught with nothing fetched" 1 \
	"($codes | index(\"revoked\") != null) and $rev0.status == \"revoked\" and $rev0.source == \"stapled-ocsp\"" \
	bob-stapled --revocation ocsp --no-fetch --certs "$int/ca.pem"
check "stapled OCSP for another certificate decides nothing: unknown" 1 \
	"$codes | index(\"revocation-unknown\") != null" \
	carol-stapled --revocation ocsp --no-fetch --certs "$int/ca.pem"
check "stapled OCSP is not used without an OCSP policy (--crl files decide)" 0 \
	"$rev0.source == \"file-crl\"" \
	alice-stapled --certs "$int/ca.pem" --crl "$www/int.crl.pem" --crl "$www/root.crl.pem"

# ---- sign --staple: p11smime signs on a token and staples the signer's fresh response ----
# A throwaway SoftHSM token holding alice's and bob's keys (the test PKI's, imported).
export SOFTHSM2_CONF=$tmp/softhsm2.conf
mkdir -p "$tmp/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\n' "$tmp/tokens" >"$SOFTHSM2_CONF"
echo 1234 >"$tmp/pin"
mod=/usr/lib/softhsm/libsofthsm2.so
# No PIN on any command line (STYLE.md "Secrets"): OpenSC's pkcs11-tool reads env:NAME, as
# tokens/make-token.sh does.
export REV_SO_PIN=5678 REV_PIN=1234
{
	pkcs11-tool --module "$mod" --slot-index 0 --init-token --label rev --so-pin env:REV_SO_PIN &&
		pkcs11-tool --module "$mod" --token-label rev --init-pin --login --login-type so \
			--so-pin env:REV_SO_PIN --new-pin env:REV_PIN &&
		pkcs11-tool --module "$mod" --token-label rev --login --pin env:REV_PIN \
			--write-object "$tmp/alice.key" --type privkey --id 01 --label alice &&
		pkcs11-tool --module "$mod" --token-label rev --login --pin env:REV_PIN \
			--write-object "$tmp/bob.key" --type privkey --id 02 --label bob
} >>"$tmp/pki.log" 2>&1 || die "test token: $(tail -3 "$tmp/pki.log")"
unset REV_SO_PIN REV_PIN
printf 'From: alice@example.org\nTo: r@example.org\nSubject: stapled\n\nsigned with a staple\n' \
	>"$tmp/plain.eml"
# tsign NAME ARGS...: p11smime sign with NAME's token key and certificate.
tsign() {
	local n=$1
	shift
	"$bin" --module "$mod" --pin-source "file:$tmp/pin" sign \
		--key "pkcs11:token=rev;object=$n;type=private" --cert "$tmp/$n.pem" --in "$tmp/plain.eml" \
		"$@" >"$tmp/out" 2>"$tmp/err"
}
: >"$www/requests.log"
tsign alice --chain "$int/ca.pem" --staple --out "$tmp/t-alice.eml"
got=$?
[ "$got" = 0 ] && ok "sign --staple on the token (exit 0)" ||
	not_ok "sign --staple: exit $got: $(cat "$tmp/err")"
openssl cms -verify -noverify -in "$tmp/t-alice.eml" -out /dev/null 2>/dev/null &&
	ok "  ... openssl cms -verify accepts it" || not_ok "  ... openssl cms -verify refuses it"
openssl cms -cmsout -in "$tmp/t-alice.eml" -outform DER -out "$tmp/t-alice.p7" 2>/dev/null
openssl asn1parse -inform DER -in "$tmp/t-alice.p7" 2>/dev/null >"$tmp/t-alice.asn1"
grep -q ':1.3.6.1.5.5.7.16.2$\|id-ri-ocsp-response' "$tmp/t-alice.asn1" &&
	ok "  ... the SignedData carries id-ri-ocsp-response (RFC 5940)" ||
	not_ok "  ... no id-ri-ocsp-response in the SignedData"
sed -n 4,5p "$tmp/t-alice.asn1" | grep -q 'INTEGER *:05' &&
	ok "  ... SignedData version 5 (RFC 5652 §5.1: other revocation info)" ||
	not_ok "  ... SignedData version: $(sed -n 4,5p "$tmp/t-alice.asn1")"
cp "$tmp/t-alice.eml" "$tmp/t-alice-stapled.eml"
check "  ... p11smime verify decides it from the staple, nothing fetched" 0 \
	"$rev0.status == \"good\" and $rev0.source == \"stapled-ocsp\"" \
	t-alice-stapled --revocation ocsp --no-fetch --certs "$int/ca.pem"
tsign alice --chain "$int/ca.pem" --staple --opaque --out "$tmp/t-alice-opaque.eml"
got=$?
[ "$got" = 0 ] && ok "sign --staple --opaque (exit 0)" || not_ok "sign --staple --opaque: exit $got: $(cat "$tmp/err")"
check "  ... verified from the staple" 0 "$rev0.source == \"stapled-ocsp\" and .structure == \"opaque\"" \
	t-alice-opaque --revocation ocsp --no-fetch --certs "$int/ca.pem"
mkdir -p "$tmp/batch"
cp "$tmp/plain.eml" "$tmp/b1.eml"
cp "$tmp/plain.eml" "$tmp/b2.eml"
"$bin" --module "$mod" --pin-source "file:$tmp/pin" sign --key "pkcs11:token=rev;object=alice;type=private" \
	--cert "$tmp/alice.pem" --chain "$int/ca.pem" --staple --batch --out-dir "$tmp/batch" \
	"$tmp/b1.eml" "$tmp/b2.eml" >"$tmp/out" 2>"$tmp/err"
got=$?
cp "$tmp/batch/b2.eml" "$tmp/t-batch2.eml" 2>/dev/null
[ "$got" = 0 ] && ok "sign --staple --batch (exit 0)" || not_ok "sign --staple --batch: exit $got: $(cat "$tmp/err")"
check "  ... the second message carries the staple too" 0 "$rev0.source == \"stapled-ocsp\"" \
	t-batch2 --revocation ocsp --no-fetch --certs "$int/ca.pem"
# A revoked signer signs nothing: exit 1, one line, no output file.
tsign bob --chain "$int/ca.pem" --staple --out "$tmp/t-bob.eml"
got=$?
[ "$got" = 1 ] && [ ! -e "$tmp/t-bob.eml" ] && [ "$(wc -l <"$tmp/err")" = 1 ] &&
	grep -q revoked "$tmp/err" && ok "sign --staple, revoked signer: exit 1, one line, no output" ||
	not_ok "sign --staple, revoked signer: exit $got, $(ls "$tmp"/t-bob.eml 2>/dev/null) $(cat "$tmp/err")"
tsign alice --chain "$int/ca.pem" --staple --ocsp-url "http://127.0.0.1:$closed/" \
	--out "$tmp/t-down.eml"
got=$?
[ "$got" = 1 ] && [ ! -e "$tmp/t-down.eml" ] && [ "$(wc -l <"$tmp/err")" = 1 ] &&
	ok "sign --staple, responder down: exit 1, one line, no output" ||
	not_ok "sign --staple, responder down: exit $got: $(cat "$tmp/err")"
tsign alice --chain "$int/ca.pem" --staple --ocsp-url "http://127.0.0.1:$rogue/" \
	--out "$tmp/t-rogue.eml"
got=$?
[ "$got" = 1 ] && [ ! -e "$tmp/t-rogue.eml" ] &&
	ok "sign --staple, a response signed by an unauthorised responder is not stapled (exit 1)" ||
	not_ok "sign --staple, rogue responder: exit $got: $(cat "$tmp/err")"
tsign alice --staple --out "$tmp/t-noissuer.eml"
got=$?
[ "$got" = 2 ] && [ ! -e "$tmp/t-noissuer.eml" ] &&
	ok "sign --staple without the issuer's certificate: exit 2 (usage)" ||
	not_ok "sign --staple without the issuer: exit $got: $(cat "$tmp/err")"
tsign alice --chain "$int/ca.pem" --staple --fetch-deny 127.0.0.1 --out "$tmp/t-deny.eml"
got=$?
[ "$got" = 1 ] && [ ! -e "$tmp/t-deny.eml" ] &&
	ok "sign --staple, responder host denied: exit 1, not asked" ||
	not_ok "sign --staple --fetch-deny: exit $got: $(cat "$tmp/err")"
# The configuration's repeated fetch-deny: every value counts, not only the first.
mkdir -p "$XDG_CONFIG_HOME/p11smime"
printf 'fetch-deny = ca.example.org\nfetch-deny = 127.0.0.1\n' >"$XDG_CONFIG_HOME/p11smime/config"
tsign alice --chain "$int/ca.pem" --staple --out "$tmp/t-cfgdeny.eml"
got=$?
rm -f "$XDG_CONFIG_HOME/p11smime/config"
[ "$got" = 1 ] && [ ! -e "$tmp/t-cfgdeny.eml" ] &&
	ok "sign --staple, the second fetch-deny of the configuration: not asked (exit 1)" ||
	not_ok "sign --staple, config fetch-deny (second value): exit $got: $(cat "$tmp/err")"
tsign alice --ocsp-url "http://127.0.0.1:$OCSP_PORT/" --out "$tmp/t-usage.eml"
got=$?
[ "$got" = 2 ] && ok "sign --ocsp-url without --staple: exit 2" || not_ok "sign --ocsp-url alone: exit $got"

# ---- CRLs from crlDistributionPoints ----
: >"$www/requests.log"
check "CRL fetched: good, intermediate checked by the root's fetched CRL" 0 \
	"$rev0.source == \"fetched-crl\" and .signers[0].revocation[1].source == \"fetched-crl\"" \
	alice --revocation crl
[ "$(fetched GET /int.crl)" -ge 1 ] && [ "$(fetched GET /root.crl)" -ge 1 ] &&
	ok "CDP GETs /int.crl and /root.crl happened" || not_ok "CDP CRLs not fetched"
check "CRL fetched: revoked signer" 1 \
	"($codes | index(\"revoked\") != null) and $rev0.status == \"revoked\" and $rev0.source == \"fetched-crl\"" \
	bob --revocation crl
check "--ocsp-scope path, ocsp,crl: intermediate (no responder) by CRL" 0 \
	"$rev0.source == \"ocsp\" and .signers[0].revocation[1].source == \"fetched-crl\"" \
	alice --revocation ocsp,crl --ocsp-scope path
check "--revocation none: nothing checked" 0 "$rev0.status == \"not-checked\"" \
	alice --revocation none --certs "$int/ca.pem"

# ---- safe fetching ----
: >"$www/requests.log"
strace -f -qq -e trace=open,openat,openat2,stat,newfstatat,access,connect -o "$tmp/strace.log" \
	"$bin" --json verify --trust "$root/ca.pem" --in "$tmp/dave.eml" --revocation ocsp,crl \
	>"$tmp/out" 2>"$tmp/err"
got=$?
if grep -q "sentinel-never-opened" "$tmp/strace.log"; then
	not_ok "file: URLs: the sentinel file was touched: $(grep sentinel "$tmp/strace.log" | head -3)"
elif [ "$got" != 1 ]; then
	not_ok "file: URLs: exit $got, want 1"
elif [ -s "$www/requests.log" ]; then
	not_ok "file: URLs: HTTP requests were made"
else
	ok "file: URLs in AIA (OCSP, caIssuers) and CDP are never opened (strace), verify fails"
fi
grep -q 'connect(' "$tmp/strace.log" && grep -c "sentinel" "$tmp/strace.log" >/dev/null
check "file: URLs with the intermediate given: revocation status unknown" 1 \
	"$codes | index(\"revocation-unknown\") != null" dave --revocation ocsp,crl --certs "$int/ca.pem"
check "--fetch-deny 127.0.0.1: not contacted, unknown" 1 "$codes | index(\"revocation-unknown\") != null" \
	alice --revocation ocsp --certs "$int/ca.pem" --fetch-deny 127.0.0.1
check "--fetch-allow example.org: 127.0.0.1 not contacted" 1 "$codes | index(\"revocation-unknown\") != null" \
	alice --revocation ocsp --certs "$int/ca.pem" --fetch-allow .example.org
check "--fetch-allow 127.0.0.1: contacted" 0 "$rev0.source == \"ocsp\"" \
	alice --revocation ocsp --certs "$int/ca.pem" --fetch-allow 127.0.0.1
check "--ocsp-url with ldap: scheme is refused" 1 \
	"[.signers[0].reasons[].message] | any(test(\"only http and https\"))" \
	alice --revocation ocsp --certs "$int/ca.pem" --ocsp-url "ldap://127.0.0.1:$HTTP_PORT/x"

# ---- configuration keys ----
mkdir -p "$XDG_CONFIG_HOME/p11smime"
printf 'revocation = ocsp\nsoft-fail = no\nfetch = yes\n' >"$XDG_CONFIG_HOME/p11smime/config"
check "config revocation = ocsp: revoked signer caught" 1 "$rev0.source == \"ocsp\"" bob
printf 'revocation = ocsp\nfetch = no\n' >"$XDG_CONFIG_HOME/p11smime/config"
check "config fetch = no, --fetch on the command line wins" 0 "$rev0.source == \"ocsp\"" alice --fetch
rm -f "$XDG_CONFIG_HOME/p11smime/config"

# ---- usage ----
for bad in "--revocation bogus" "--ocsp-scope all --revocation ocsp"; do
	# shellcheck disable=SC2086
	verify alice $bad
	got=$?
	[ "$got" = 2 ] && [ "$(wc -l <"$tmp/err")" = 1 ] && ok "usage: $bad -> exit 2, one line" ||
		not_ok "usage: $bad -> exit $got: $(cat "$tmp/err")"
done

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
