#!/bin/bash
# The recipients' certificate store (issue 18, docs/certificates.md) on the throwaway SoftHSMv2
# token and its PKI: certs import|list|show|export|remove; encrypt --to ADDRESS validated from
# the store, decrypted by `openssl cms -decrypt` with the recipient's key; refusals with the
# reason (none found, expired, revoked, untrusted, not for encryption); harvesting from a
# verified signature (p11smime on the token, openssl as a CBC-only announcer), newer/older
# announcements; several CLI processes writing at once lose no row; the schema.
# usage: store.sh BACKEND   (environment from tests/CMakeLists.txt: P11S_BIN, P11S_TEST_*)
set -euo pipefail
backend=$1
. "$(dirname "$0")/../integration/lib.sh"

exec </dev/null
db=$tmp/certs.db
st() { "$bin" "$@"; }                     # the tool without a token
ps() { "$bin" certs --store "$db" "$@"; }  # certs on the test store
fpr() { openssl x509 -in "$1" -outform DER | sha256sum | cut -d' ' -f1; }

# issue NAME ADDRESS [SECTION]: a software RSA key and a certificate from the test intermediate.
issue() {
	local name=$1 addr=$2 section=${3:-ee_rsa}
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/$name.key" 2>/dev/null
	openssl req -new -key "$tmp/$name.key" -subj "/O=p11smime test/CN=$name/emailAddress=$addr" \
		-out "$tmp/$name.csr" 2>/dev/null
	openssl x509 -req -in "$tmp/$name.csr" -CA "$pki/intermediate.pem" \
		-CAkey "$pki/intermediate/intermediate.key" -set_serial "0x$(openssl rand -hex 8)" \
		-days 30 -extfile "$pki/openssl.cnf" -extensions "$section" -out "$tmp/$name.pem" 2>/dev/null
}
issue bob Bob@Example.ORG
issue carol carol@example.org
issue dave dave@example.org
# An untrusted certificate: self-signed, otherwise fit for encryption.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/mallory.key" -days 30 \
	-subj "/CN=Mallory/emailAddress=mallory@example.org" \
	-addext "keyUsage=critical,keyEncipherment" -addext "subjectAltName=email:mallory@example.org" \
	-out "$tmp/mallory.pem" 2>/dev/null

msg=$tmp/msg.txt
printf 'From: alice@example.org\nTo: bob@example.org\nSubject: store test\nMIME-Version: 1.0\nContent-Type: text/plain\n\nfor your eyes only\n' >"$msg"
smime_type() { grep -o 'smime-type=[a-zA-Z-]*' "$1" | head -1; }

# --- certs import: PEM, DER, PKCS#7 certs-only; list, show, export, remove
openssl x509 -in "$tmp/carol.pem" -outform DER -out "$tmp/carol.der"
openssl crl2pkcs7 -nocrl -certfile "$tmp/dave.pem" -outform DER -out "$tmp/dave.p7c"
expect 0 "certs import PEM" -- ps import "$tmp/bob.pem"
check "  ... says added" grep -q '^added .*CN=bob' "$tmp/out"
expect 0 "certs import the same PEM again" -- ps import "$tmp/bob.pem"
check "  ... says known" grep -q '^known ' "$tmp/out"
expect 0 "certs import DER and PKCS#7 certs-only" -- ps import "$tmp/carol.der" "$tmp/dave.p7c"
check "  ... both added" test "$(grep -c '^added' "$tmp/out")" = 2
expect 2 "certs import of a non-certificate is exit 2" -- ps import "$msg"
check "  ... one line naming the file" sh -c "[ \$(wc -l <'$tmp/err') = 1 ] && grep -q 'msg.txt' '$tmp/err'"
expect 0 "certs list" -- ps list
check "  ... three rows" test "$(wc -l <"$tmp/out")" = 3
check "  ... bob's fingerprint and lower-cased address" grep -q "^$(fpr "$tmp/bob.pem") .* bob@example.org" "$tmp/out"
expect 0 "certs list --json" -- ps list --json
check "  ... JSON with addresses and source" python3 -c "
import json,sys
v=json.load(open('$tmp/out'))
assert len(v)==3, v
assert {a for e in v for a in e['addresses']}=={'bob@example.org','carol@example.org','dave@example.org'}
assert all(e['source']=='imported' for e in v)"
expect 0 "certs show by address, any case" -- ps show BOB@example.org
check "  ... shows bob" grep -q "fingerprint: $(fpr "$tmp/bob.pem")" "$tmp/out"
expect 0 "certs show by fingerprint (upper case)" -- ps show "$(fpr "$tmp/carol.pem" | tr a-f A-F)"
check "  ... shows carol" grep -q "carol" "$tmp/out"
expect 1 "certs show of an unknown address is exit 1" -- ps show nobody@example.org
expect 0 "certs export bob" -- ps export bob@example.org --out "$tmp/bob-export.pem"
check "  ... the same certificate" test "$(fpr "$tmp/bob-export.pem")" = "$(fpr "$tmp/bob.pem")"
expect 0 "certs remove dave" -- ps remove "$(fpr "$tmp/dave.pem")"
expect 1 "  ... then show dave is exit 1" -- ps show dave@example.org
expect 1 "certs remove of an absent fingerprint is exit 1" -- ps remove "$(fpr "$tmp/dave.pem")"
expect 2 "certs remove of a non-fingerprint is exit 2" -- ps remove bob@example.org
expect 2 "certs without a subcommand is exit 2" -- ps

# --- encrypt --to ADDRESS
expect 1 "encrypt --to bob without the intermediate in the store: untrusted" -- \
	st encrypt --store "$db" --trust "$pki/root.pem" --to bob@example.org --in "$msg" --out "$tmp/e.eml"
check "  ... names the address and untrusted, no output" sh -c \
	"grep -q 'bob@example.org: no usable certificate: untrusted' '$tmp/err' && [ ! -e '$tmp/e.eml' ]"
expect 0 "certs import the chain (PEM, two certificates)" -- ps import "$pki/chain.pem"
expect 0 "encrypt --to bob@example.org" -- \
	st encrypt --store "$db" --trust "$pki/root.pem" --to bob@example.org --in "$msg" --out "$tmp/e.eml"
check "  ... CBC: bob announced nothing (RFC 8551 §2.7)" test "$(smime_type "$tmp/e.eml")" = smime-type=enveloped-data
expect 0 "  ... openssl cms -decrypt with bob's key" -- openssl cms -decrypt -in "$tmp/e.eml" \
	-recip "$tmp/bob.pem" -inkey "$tmp/bob.key" -out "$tmp/d.txt"
check "  ... the message body" grep -q 'for your eyes only' "$tmp/d.txt"
expect 0 "encrypt --to BOB@EXAMPLE.ORG --cipher aes-256-gcm (override)" -- \
	st encrypt --store "$db" --trust "$pki/root.pem" --to BOB@EXAMPLE.ORG --cipher aes-256-gcm \
	--in "$msg" --out "$tmp/e2.eml"
check "  ... authEnveloped-data" test "$(smime_type "$tmp/e2.eml")" = smime-type=authEnveloped-data
expect 0 "  ... openssl cms -decrypt" -- openssl cms -decrypt -in "$tmp/e2.eml" \
	-recip "$tmp/bob.pem" -inkey "$tmp/bob.key" -out "$tmp/d2.txt"
# The configuration file's trust and store keys.
printf 'store = %s\ntrust = %s\n' "$db" "$pki/root.pem" >"$tmp/p11smime.conf"
expect 0 "encrypt --to with store and trust from --config" -- \
	st --config "$tmp/p11smime.conf" encrypt --to bob@example.org --to carol@example.org \
	--in "$msg" --out "$tmp/e3.eml"
expect 0 "  ... carol decrypts it too" -- openssl cms -decrypt -in "$tmp/e3.eml" \
	-recip "$tmp/carol.pem" -inkey "$tmp/carol.key" -out "$tmp/d3.txt"
expect 0 "a file argument is still a file" -- \
	st encrypt --store "$db" --to "$tmp/bob.pem" --in "$msg" --out "$tmp/e4.eml"
check "  ... with the default GCM" test "$(smime_type "$tmp/e4.eml")" = smime-type=authEnveloped-data

# --- refusals, each with its reason; nothing written
expect 0 "import expired, revoked, serverAuth-only and self-signed certificates" -- \
	ps import "$pki/expired.pem" "$pki/revoked.pem" "$pki/serverauth.pem" "$tmp/mallory.pem"
refused() { # refused ADDRESS REASON [OPTIONS...]
	local addr=$1 why=$2
	shift 2
	expect 1 "encrypt --to $addr is refused: $why" -- st encrypt --store "$db" \
		--trust "$pki/root.pem" "$@" --to "$addr" --in "$msg" --out "$tmp/r.eml"
	check "  ... names $addr and $why, no output" sh -c \
		"grep -q '$addr: no usable certificate: $why' '$tmp/err' && [ ! -e '$tmp/r.eml' ] &&
		 [ \$(wc -l <'$tmp/err') = 1 ]"
}
refused expired@example.org expired
refused revoked@example.org revoked --crl "$pki/crls.pem"
refused mallory@example.org untrusted
refused serverauth@example.org not-for-encryption
expect 1 "encrypt --to an address the store does not know" -- st encrypt --store "$db" \
	--trust "$pki/root.pem" --to nobody@example.org --in "$msg" --out "$tmp/r.eml"
check "  ... no certificate found, naming it" grep -q 'nobody@example.org: no certificate found' "$tmp/err"
expect 1 "one bad recipient among good ones fails the whole message" -- st encrypt --store "$db" \
	--trust "$pki/root.pem" --to bob@example.org --to expired@example.org --in "$msg" --out "$tmp/r.eml"
check "  ... no output" test ! -e "$tmp/r.eml"

# --- harvesting: p11smime signs on the token (announces aes-256-gcm)
signer=alice-rsa2048@example.org
printf 'From: %s\nTo: bob@example.org\nSubject: signed\nMIME-Version: 1.0\nContent-Type: text/plain\n\nsigned hello\n' \
	"$signer" >"$tmp/plain.eml"
expect 0 "p11smime sign on the token" -- p11s sign --key "$(keyuri rsa2048)" \
	--chain "$pki/intermediate.pem" --in "$tmp/plain.eml" --out "$tmp/signed.eml"
sed 's/signed hello/signed HELLO/' "$tmp/signed.eml" >"$tmp/altered.eml"
check "  ... (altered copy differs)" sh -c "! cmp -s '$tmp/signed.eml' '$tmp/altered.eml'"
expect 1 "verify --store of an altered message fails" -- st verify --store="$db" --trust "$pki/root.pem" \
	--in "$tmp/altered.eml"
expect 1 "  ... and harvested nothing" -- ps show "$signer"
expect 0 "verify --store=DB of the signed message" -- st verify --store="$db" --trust "$pki/root.pem" \
	--in "$tmp/signed.eml"
expect 0 "  ... the signer is in the store" -- ps list --json
check "  ... harvested, with its address" python3 -c "
import json
v=json.load(open('$tmp/out'))
assert any(e['source']=='harvested' and '$signer' in e['addresses'] for e in v), v"
check "  ... capabilities recorded with gcm" test "$(sqlite3 "$db" \
	"SELECT gcm FROM announcements WHERE address='$signer'")" = 1
expect 0 "encrypt --to the harvested signer" -- st encrypt --store "$db" --trust "$pki/root.pem" \
	--to "$signer" --in "$msg" --out "$tmp/h.eml"
check "  ... AES-256-GCM: it announced it" test "$(smime_type "$tmp/h.eml")" = smime-type=authEnveloped-data
expect 0 "  ... decrypts on the token" -- p11s decrypt --in "$tmp/h.eml" --out "$tmp/hd.eml"
check "  ... to the message" grep -q 'for your eyes only' "$tmp/hd.eml"
# An older signature never overwrites a newer announcement; a newer one does (§2.5.2).
sqlite3 "$db" "UPDATE announcements SET gcm = 0, signing_time = 4102444800 WHERE address='$signer'"
expect 0 "verify --store of an older signature" -- st verify --store="$db" --trust "$pki/root.pem" \
	--in "$tmp/signed.eml"
check "  ... leaves the newer (CBC-only) announcement" test "$(sqlite3 "$db" \
	"SELECT gcm || ',' || signing_time FROM announcements WHERE address='$signer'")" = 0,4102444800
expect 0 "  ... encrypt then picks CBC" -- st encrypt --store "$db" --trust "$pki/root.pem" \
	--to "$signer" --in "$msg" --out "$tmp/h2.eml"
check "  ... enveloped-data" test "$(smime_type "$tmp/h2.eml")" = smime-type=enveloped-data
sqlite3 "$db" "UPDATE announcements SET signing_time = 1 WHERE address='$signer'"
printf 'store = %s\ntrust = %s\nharvest = yes\n' "$db" "$pki/root.pem" >"$tmp/harvest.conf"
expect 0 "harvest = yes in the config, a newer signature" -- st --config "$tmp/harvest.conf" verify \
	--in "$tmp/signed.eml"
check "  ... updates the announcement to gcm" test "$(sqlite3 "$db" \
	"SELECT gcm FROM announcements WHERE address='$signer' AND signing_time > 1")" = 1

# SMIMEEncryptionKeyPreference (RFC 8551 §2.5.3) wins over the latest notAfter: alice-ec256
# names a second certificate of hers (a software RSA key, notAfter sooner than the token's).
ec=alice-ec256@example.org
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/ecenc.key" 2>/dev/null
openssl req -new -key "$tmp/ecenc.key" -subj "/O=p11smime test/CN=Alice enc/emailAddress=$ec" \
	-out "$tmp/ecenc.csr" 2>/dev/null
openssl x509 -req -in "$tmp/ecenc.csr" -CA "$pki/intermediate.pem" -CAkey "$pki/intermediate/intermediate.key" \
	-set_serial 0x4e4e -days 2 -extfile "$pki/openssl.cnf" -extensions ee_rsa -out "$tmp/ecenc.pem" 2>/dev/null
printf 'From: %s\nTo: bob@example.org\nSubject: pref\nMIME-Version: 1.0\nContent-Type: text/plain\n\npref\n' "$ec" >"$tmp/pref.eml"
expect 0 "sign with ec256 naming another encryption certificate" -- p11s sign --key "$(keyuri ec256)" \
	--chain "$pki/intermediate.pem" --chain "$tmp/ecenc.pem" --encryption-cert "$tmp/ecenc.pem" \
	--in "$tmp/pref.eml" --out "$tmp/pref-signed.eml"
expect 0 "  ... verify --store harvests both" -- st verify --store="$db" --trust "$pki/root.pem" --in "$tmp/pref-signed.eml"
check "  ... two certificates for $ec" test "$(sqlite3 "$db" "SELECT count(*) FROM addresses WHERE address='$ec'")" = 2
check "  ... the preference recorded" test "$(sqlite3 "$db" "SELECT preferred FROM announcements WHERE address='$ec'")" = "$(fpr "$tmp/ecenc.pem")"
expect 0 "encrypt --to $ec" -- st encrypt --store "$db" --trust "$pki/root.pem" --to "$ec" --in "$msg" --out "$tmp/p.eml"
expect 0 "  ... to the preferred certificate: openssl decrypts with its key" -- openssl cms -decrypt \
	-in "$tmp/p.eml" -recip "$tmp/ecenc.pem" -inkey "$tmp/ecenc.key" -out "$tmp/pd.txt"
sqlite3 "$db" "UPDATE announcements SET preferred = NULL WHERE address='$ec'"
expect 0 "without the preference, encrypt --to $ec" -- st encrypt --store "$db" --trust "$pki/root.pem" --to "$ec" --in "$msg" --out "$tmp/p2.eml"
expect 4 "  ... goes to the latest notAfter (the token's): the other key cannot decrypt" -- openssl cms -decrypt \
	-in "$tmp/p2.eml" -recip "$tmp/ecenc.pem" -inkey "$tmp/ecenc.key" -out "$tmp/pd2.txt"
expect 0 "  ... the token decrypts it" -- p11s decrypt --in "$tmp/p2.eml" --out "$tmp/pd3.eml"

# openssl cms -sign: OpenSSL's default SMIMECapabilities (CBC ciphers, no GCM).
issue erin erin@example.org
printf 'signed by openssl\n' >"$tmp/body.txt"
openssl cms -sign -signer "$tmp/erin.pem" -inkey "$tmp/erin.key" -certfile "$pki/intermediate.pem" \
	-in "$tmp/body.txt" -out "$tmp/erin.smime" 2>/dev/null
{ printf 'From: erin@example.org\nTo: bob@example.org\nSubject: from openssl\n'; cat "$tmp/erin.smime"; } >"$tmp/erin.eml"
expect 0 "verify --store of an openssl signature (CBC-only announcer)" -- st verify --store="$db" \
	--trust "$pki/root.pem" --in "$tmp/erin.eml"
expect 0 "encrypt --to the CBC-only announcer" -- st encrypt --store "$db" --trust "$pki/root.pem" \
	--to erin@example.org --in "$msg" --out "$tmp/c.eml"
check "  ... EnvelopedData" grep -q 'smime-type=enveloped-data' "$tmp/c.eml"
expect 0 "  ... openssl cms -decrypt with erin's key" -- openssl cms -decrypt -in "$tmp/c.eml" \
	-recip "$tmp/erin.pem" -inkey "$tmp/erin.key" -out "$tmp/cd.txt"
check "  ... the content cipher is aes-256-cbc" sh -c "openssl cms -cmsout -print -in '$tmp/c.eml' | grep -q 'aes-256-cbc'"
expect 0 "GCM announcer and CBC-only announcer together" -- st encrypt --store "$db" --trust "$pki/root.pem" \
	--to erin@example.org --to bob@example.org --in "$msg" --out "$tmp/c2.eml"
check "  ... CBC" grep -q 'smime-type=enveloped-data' "$tmp/c2.eml"

# --- wrap --to ADDRESS: sign on the token, encrypt to bob from the store
expect 0 "wrap --to bob@example.org" -- p11s wrap --key "$(keyuri rsa2048)" --store "$db" \
	--trust "$pki/root.pem" --to bob@example.org --in "$tmp/plain.eml" --out "$tmp/w.eml"
expect 0 "  ... openssl cms -decrypt with bob's key" -- openssl cms -decrypt -in "$tmp/w.eml" \
	-recip "$tmp/bob.pem" -inkey "$tmp/bob.key" -out "$tmp/wd.eml"
check "  ... holds the signed message" grep -q 'application/pkcs7-signature\|signed-data' "$tmp/wd.eml"
expect 1 "wrap --to expired@example.org is refused before signing" -- p11s wrap --key "$(keyuri rsa2048)" \
	--store "$db" --trust "$pki/root.pem" --to expired@example.org --in "$tmp/plain.eml" --out "$tmp/w2.eml"
check "  ... names the reason, no output" sh -c "grep -q 'expired@example.org: no usable certificate: expired' '$tmp/err' && [ ! -e '$tmp/w2.eml' ]"

# --- several CLI processes writing at once (WAL, busy timeout): no row lost
for i in $(seq 1 24); do issue "u$i" "user$i@example.org" & [ $((i % 6)) = 0 ] && wait; done
wait
before=$(sqlite3 "$db" 'SELECT count(*) FROM certs')
pids=()
for p in 0 1 2 3 4 5; do
	files=()
	for k in 1 2 3 4; do files+=("$tmp/u$((p * 4 + k)).pem"); done
	( for f in "${files[@]}"; do ps import "$f" >/dev/null || exit 1; done ) &
	pids+=($!)
done
# Readers at the same time.
( for _ in 1 2 3 4 5; do st encrypt --store "$db" --trust "$pki/root.pem" --to bob@example.org \
	--in "$msg" --out "$tmp/conc.eml" || exit 1; done ) &
pids+=($!)
bad=0
for pid in "${pids[@]}"; do wait "$pid" || bad=$((bad + 1)); done
check "six importers and a reader at once all succeed" test "$bad" = 0
check "  ... every one of the 24 rows is there" test "$(sqlite3 "$db" 'SELECT count(*) FROM certs')" = $((before + 24))
check "  ... with its address" test "$(sqlite3 "$db" "SELECT count(*) FROM addresses WHERE address LIKE 'user%'")" = 24

# --- the schema, the default path, bad stores
check "journal_mode is wal" test "$(sqlite3 "$db" 'PRAGMA journal_mode')" = wal
check "user_version is 1" test "$(sqlite3 "$db" 'PRAGMA user_version')" = 1
mkdir -p "$tmp/xdg"
expect 0 "the default store under XDG_DATA_HOME" -- env XDG_DATA_HOME="$tmp/xdg" "$bin" certs import "$tmp/bob.pem"
check "  ... at \$XDG_DATA_HOME/p11smime/certs.db, mode 0600" sh -c \
	"[ \$(stat -c %a '$tmp/xdg/p11smime/certs.db') = 600 ]"
expect 0 "the default store under ~/.local/share" -- env -u XDG_DATA_HOME HOME="$tmp/home" "$bin" certs list
check "  ... created there" test -f "$tmp/home/.local/share/p11smime/certs.db"
printf 'not a database at all, just text that is long enough to fill a header page....\n' >"$tmp/junk.db"
expect 2 "a file that is not a store is exit 2" -- "$bin" certs --store "$tmp/junk.db" list
check "  ... one line" test "$(wc -l <"$tmp/err")" = 1
cp "$db" "$tmp/future.db"
sqlite3 "$tmp/future.db" 'PRAGMA user_version = 99'
expect 2 "a store of a newer schema is exit 2" -- "$bin" certs --store "$tmp/future.db" list
check "  ... says so" grep -q 'schema version 99' "$tmp/err"

finish
