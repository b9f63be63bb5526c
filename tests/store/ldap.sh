#!/bin/bash
# Recipients known only to a directory (issue 18 item 4, docs/certificates.md "LDAP"): a real
# OpenLDAP slapd on loopback (its own slapd.conf, mdb backend, unprivileged port) serving
# userCertificate;binary and userSMIMECertificate entries. encrypt --to finds, validates and
# caches them; the cache answers when slapd is gone; an expired directory certificate is
# refused; the filter is escaped (RFC 4515); an unreachable or silent server is reported within
# the timeout.
# usage: ldap.sh   (environment from tests/CMakeLists.txt: P11S_BIN, P11S_TEST_PKI)
set -euo pipefail
backend=pkcs11
. "$(dirname "$0")/../integration/lib.sh"

exec </dev/null
db=$tmp/certs.db
slapd_pid=
cleanup() {
	[ -n "$slapd_pid" ] && kill "$slapd_pid" 2>/dev/null || true
	[ -n "${silent_pid:-}" ] && kill "$silent_pid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

issue() { # issue NAME ADDRESS [openssl x509 options...]
	local name=$1 addr=$2
	shift 2
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/$name.key" 2>/dev/null
	openssl req -new -key "$tmp/$name.key" -subj "/O=p11smime test/CN=$name/emailAddress=$addr" \
		-out "$tmp/$name.csr" 2>/dev/null
	openssl x509 -req -in "$tmp/$name.csr" -CA "$pki/intermediate.pem" \
		-CAkey "$pki/intermediate/intermediate.key" -set_serial "0x$(openssl rand -hex 8)" \
		-extfile "$pki/openssl.cnf" -extensions ee_rsa -out "$tmp/$name.pem" "$@" 2>/dev/null
	openssl x509 -in "$tmp/$name.pem" -outform DER -out "$tmp/$name.der"
}
issue frank frank@example.org -days 30
issue grace grace@example.org -days 30
# The directory also holds an expired certificate (the test PKI's, for expired@example.org).
openssl x509 -in "$pki/expired.pem" -outform DER -out "$tmp/henry.der"
# grace's entry: a PKCS#7 certs-only with her certificate and the intermediate CA.
openssl crl2pkcs7 -nocrl -certfile "$tmp/grace.pem" -certfile "$pki/intermediate.pem" -outform DER \
	-out "$tmp/grace.p7c"

# --- a real slapd on a free loopback port
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$tmp/slapd/db"
cat >"$tmp/slapd/slapd.conf" <<EOF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile $tmp/slapd/slapd.pid
sizelimit 50
database mdb
suffix "dc=example,dc=org"
rootdn "cn=admin,dc=example,dc=org"
directory $tmp/slapd/db
maxsize 10485760
access to * by * read
EOF
b64() { base64 -w0 "$1"; }
cat >"$tmp/slapd/entries.ldif" <<EOF
dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
o: example
dc: example

dn: ou=people,dc=example,dc=org
objectClass: organizationalUnit
ou: people

dn: cn=frank,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
cn: frank
sn: Frank
mail: frank@example.org
userCertificate;binary:: $(b64 "$tmp/frank.der")

dn: cn=grace,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
cn: grace
sn: Grace
mail: grace@example.org
userSMIMECertificate:: $(b64 "$tmp/grace.p7c")

dn: cn=henry,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
cn: henry
sn: Henry
mail: expired@example.org
userCertificate;binary:: $(b64 "$tmp/henry.der")

dn: cn=mismatch,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
cn: mismatch
sn: Mismatch
mail: ivan@example.org
userCertificate;binary:: $(b64 "$tmp/frank.der")
EOF
slapadd -f "$tmp/slapd/slapd.conf" -l "$tmp/slapd/entries.ldif" >"$tmp/slapd/slapadd.log" 2>&1 ||
	{ cat "$tmp/slapd/slapadd.log"; exit 1; }
slapd -f "$tmp/slapd/slapd.conf" -h "ldap://127.0.0.1:$port/" -d 0 >"$tmp/slapd/log" 2>&1 &
slapd_pid=$!
for _ in $(seq 1 50); do
	ldapsearch -x -H "ldap://127.0.0.1:$port" -b dc=example,dc=org -s base '(objectClass=*)' dn \
		>/dev/null 2>&1 && break
	sleep 0.1
done
url="ldap://127.0.0.1:$port/dc=example,dc=org"
check "slapd answers on 127.0.0.1:$port" sh -c "ldapsearch -x -H 'ldap://127.0.0.1:$port' \
	-b dc=example,dc=org '(mail=frank@example.org)' mail | grep -q 'mail: frank@example.org'"

msg=$tmp/msg.txt
printf 'From: alice@example.org\nTo: frank@example.org\nSubject: ldap\nMIME-Version: 1.0\nContent-Type: text/plain\n\ndirectory message\n' >"$msg"
enc() { "$bin" encrypt --store "$db" --trust "$pki/root.pem" "$@" --in "$msg"; }

expect 1 "frank is not in the store and no directory is given" -- enc --to frank@example.org --out "$tmp/x.eml"
expect 0 "encrypt --to frank@example.org --ldap URL (userCertificate;binary) --certs INTERMEDIATE" -- \
	enc --ldap "$url" --certs "$pki/intermediate.pem" --to frank@example.org --out "$tmp/f.eml"
expect 0 "  ... openssl cms -decrypt with frank's key" -- openssl cms -decrypt -in "$tmp/f.eml" \
	-recip "$tmp/frank.pem" -inkey "$tmp/frank.key" -out "$tmp/f.txt"
check "  ... the message" grep -q 'directory message' "$tmp/f.txt"
expect 0 "  ... cached in the store" -- "$bin" certs --store "$db" list --json
check "  ... source ldap with a cache expiry, frank's fingerprint" python3 -c "
import json
v=json.load(open('$tmp/out'))
fr=[e for e in v if 'frank@example.org' in e['addresses']]
assert len(fr)==1 and fr[0]['source']=='ldap' and 'cache_expires' in fr[0], v
assert fr[0]['fingerprint']=='$(sha256sum <"$tmp/frank.der" | cut -d' ' -f1)'"
printf 'store = %s\ntrust = %s\nldap = ldap://127.0.0.1:1/dc=nowhere\nldap = %s\n' "$db" "$pki/root.pem" "$url" >"$tmp/conf"
expect 0 "ldap = in the config (an unreachable one first): grace via userSMIMECertificate" -- \
	"$bin" --config "$tmp/conf" encrypt --to grace@example.org --in "$msg" --out "$tmp/g.eml"
check "  ... the unreachable directory is a warning naming it" grep -q 'warning: LDAP directory ldap://127.0.0.1:1/dc=nowhere' "$tmp/err"
expect 0 "  ... openssl cms -decrypt with grace's key" -- openssl cms -decrypt -in "$tmp/g.eml" \
	-recip "$tmp/grace.pem" -inkey "$tmp/grace.key" -out "$tmp/g.txt"
expect 1 "an expired directory certificate is refused" -- enc --ldap "$url" --to expired@example.org --out "$tmp/h.eml"
check "  ... naming the address and expired, no output" sh -c \
	"grep -q 'expired@example.org: no usable certificate: expired' '$tmp/err' && [ ! -e '$tmp/h.eml' ]"
expect 1 "a directory entry whose certificate has another address is not used" -- \
	enc --ldap "$url" --to ivan@example.org --out "$tmp/i.eml"
check "  ... no certificate found for ivan" grep -q 'ivan@example.org: no certificate found' "$tmp/err"
expect 1 "'*@example.org' is escaped (RFC 4515), matches no entry" -- \
	enc --ldap "$url" --to '*@example.org' --out "$tmp/s.eml"
check "  ... no certificate found" grep -q 'no certificate found' "$tmp/err"
check "  ... nothing more was cached (frank, grace, her CA, the expired one)" test \
	"$(sqlite3 "$db" "SELECT count(*) FROM certs WHERE source = 'ldap'")" = 4

# The cache answers without the directory.
kill "$slapd_pid"
wait "$slapd_pid" 2>/dev/null || true
slapd_pid=
expect 0 "with slapd stopped, frank comes from the cache (and the CA from grace's entry)" -- enc --ldap "$url" --to frank@example.org --out "$tmp/f2.eml"
check "  ... and no directory was needed (no warning)" sh -c "! grep -q warning '$tmp/err'"
# An expired cache entry is not used; the directory (down) is asked.
sqlite3 "$db" "UPDATE certs SET expires = 1 WHERE source = 'ldap'"
expect 1 "an expired cache entry with the directory down: refused" -- enc --ldap "$url" --to frank@example.org --out "$tmp/f3.eml"
check "  ... names the directory and frank" sh -c "grep -q 'LDAP directory' '$tmp/err' && grep -q 'frank@example.org: no certificate found' '$tmp/err'"

# A server that accepts the connection and never answers: the search times out (5 s default).
python3 -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(8); print(s.getsockname()[1], flush=True)
time.sleep(60)' >"$tmp/silent.port" &
silent_pid=$!
for _ in $(seq 1 50); do [ -s "$tmp/silent.port" ] && break; sleep 0.1; done
start=$(date +%s)
expect 1 "a silent directory times out" -- enc --ldap "ldap://127.0.0.1:$(cat "$tmp/silent.port")/dc=example,dc=org" \
	--to nobody@example.org --out "$tmp/t.eml"
elapsed=$(($(date +%s) - start))
check "  ... within the timeout (${elapsed} s < 10 s), reported" sh -c "[ $elapsed -lt 10 ] && grep -q 'LDAP directory' '$tmp/err'"

expect 2 "a bad LDAP URL is exit 2" -- enc --ldap "http://example.org/" --to frank2@example.org --out "$tmp/u.eml"

finish
