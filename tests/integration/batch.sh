#!/bin/bash
# Integration suite of `sign --batch --out-dir DIR FILE...` (CLI.md "More commands") on the
# throwaway SoftHSMv2 token, for one backend: several files in one run, one bad file in the
# middle (reported, the others signed, exit status the worst of all), outputs checked by
# `openssl cms -verify`, usage errors before the token is touched, no repeated PIN tries, and
# a CKA_ALWAYS_AUTHENTICATE key that gets its context-specific login for every signature.
# usage: batch.sh BACKEND   (environment from tests/CMakeLists.txt: P11S_BIN, P11S_TEST_*)
set -euo pipefail
backend=$1
. "$(dirname "$0")/lib.sh"

exec </dev/null

in=$tmp/in
mkdir -p "$in"
for i in 1 2 3 4; do
	printf 'From: Alice <alice@example.org>\nTo: bob@example.org\nSubject: batch %s\n\nmessage %s\n' \
		"$i" "$i" >"$in/m$i.eml"
	# RFC 9788 (on by default): hp="clear" and copies of the header fields in the entity.
	printf 'Content-Type: text/plain; charset=us-ascii; hp="clear"\r\nFrom: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: batch %s\r\n\r\nmessage %s\r\n' \
		"$i" "$i" >"$tmp/canon$i"
done
printf 'From: a@example.org\n\0 NUL in the header\n\nx\n' >"$in/bad.eml"

# verified FILE CANON: openssl verifies FILE against the test root and the content is CANON.
verified() {
	openssl cms -verify -in "$1" -CAfile "$pki/root.pem" -out "$tmp/inner" 2>/dev/null &&
		cmp -s "$tmp/inner" "$2"
}

for key in rsa2048 ec256; do
	for form in detached opaque; do
		opaque=
		[ "$form" = opaque ] && opaque=--opaque
		out=$tmp/out-$key-$form
		mkdir -p "$out"
		echo old >"$out/bad.eml" # an existing output of the failing file must survive
		expect 2 "$key $form: batch with a malformed file in the middle exits 2" -- \
			p11s sign --key "$(keyuri "$key")" $opaque --chain "$pki/intermediate.pem" \
			--batch --out-dir "$out" "$in/m1.eml" "$in/m2.eml" "$in/bad.eml" "$in/m3.eml" "$in/m4.eml"
		check "  ... the bad file is named on stderr" grep -q "bad.eml: not an RFC 5322 message" "$tmp/err"
		check "  ... 4 of 5 signed reported" grep -q "4 of 5 file(s) signed" "$tmp/err"
		check "  ... its old output is untouched" sh -c "[ \"\$(cat '$out/bad.eml')\" = old ]"
		for i in 1 2 3 4; do
			check "  ... m$i.eml (before and after the bad one) verifies with openssl cms" \
				verified "$out/m$i.eml" "$tmp/canon$i"
		done
		check "  ... no temporary files left" sh -c "[ \$(ls '$out' | wc -l) -eq 5 ]"
	done
done

out=$tmp/ok
mkdir -p "$out"
expect 0 "all good files: exit 0" -- p11s sign --key "$(keyuri ec256)" --digest sha384 \
	--chain "$pki/intermediate.pem" --batch --out-dir "$out" "$in/m1.eml" "$in/m2.eml"
check "  ... nothing on stdout" test ! -s "$tmp/out"
check "  ... micalg=sha-384" grep -q "micalg=sha-384" "$out/m1.eml"
check "  ... verifies" verified "$out/m2.eml" "$tmp/canon2"
expect 2 "a missing file among good ones: exit 2" -- p11s sign --key "$(keyuri ec256)" \
	--batch --out-dir "$out" "$in/m1.eml" "$in/nonexistent.eml" "$in/m2.eml"
check "  ... named on stderr" grep -q "nonexistent.eml" "$tmp/err"
mkdir -p "$tmp/other"
cp "$in/m3.eml" "$tmp/other/m1.eml"
rm -f "$out"/*
expect 2 "two inputs with the same basename: the second is refused" -- p11s sign \
	--key "$(keyuri ec256)" --chain "$pki/intermediate.pem" --batch --out-dir "$out" \
	"$in/m1.eml" "$tmp/other/m1.eml"
check "  ... the first one's output stays" verified "$out/m1.eml" "$tmp/canon1"

# --jobs N (issue 21): the same outputs and the same stderr, line for line, whatever N; the
# failures in the middle are reported in input order.
jin=$tmp/jobs-in
mkdir -p "$jin"
for i in $(seq 1 40); do
	printf 'From: a@example.org\nSubject: job %s\n\nmessage %s of the --jobs batch\n' "$i" "$i" \
		>"$jin/j$i.eml"
done
cp "$in/bad.eml" "$jin/j7.eml"
cp "$in/bad.eml" "$jin/j23.eml"
jfiles=()
for i in $(seq 1 40); do jfiles+=("$jin/j$i.eml"); done
jfiles+=("$jin/missing.eml")
for n in 1 2 4; do
	mkdir -p "$tmp/jobs$n"
	expect 2 "--jobs $n: 40 files, two malformed and one missing: exit 2" -- p11s sign \
		--key "$(keyuri ec256)" --chain "$pki/intermediate.pem" --batch --jobs "$n" \
		--out-dir "$tmp/jobs$n" "${jfiles[@]}"
	cp "$tmp/err" "$tmp/jobs$n.err"
done
check "  ... the stderr of --jobs 2 is that of --jobs 1, in order" cmp -s "$tmp/jobs1.err" "$tmp/jobs2.err"
check "  ... and that of --jobs 4" cmp -s "$tmp/jobs1.err" "$tmp/jobs4.err"
check "  ... which names j7, j23, then missing.eml, then 38 of 41" sh -c \
	"grep -n 'j7.eml\|j23.eml\|missing.eml\|38 of 41' '$tmp/jobs4.err' | cut -d: -f1 | tr '\n' ' ' | grep -q '^1 2 3 4 \$'"
check "  ... 38 outputs, no temporary file left" sh -c "[ \$(ls '$tmp/jobs4' | wc -l) -eq 38 ]"
jok=1
for i in 1 2 3 4 5 6 8 16 22 24 39 40; do
	openssl cms -verify -in "$tmp/jobs4/j$i.eml" -CAfile "$pki/root.pem" -out "$tmp/jinner" 2>/dev/null &&
		grep -q "message $i of the --jobs batch" "$tmp/jinner" || jok=0
done
check "  ... --jobs 4 outputs verify with openssl cms, each with its own content" test "$jok" = 1
expect 2 "--jobs 0 is a usage error" -- p11s sign --key "$(keyuri ec256)" --batch --jobs 0 \
	--out-dir "$out" "$in/m1.eml"
expect 2 "--jobs without --batch is a usage error" -- p11s sign --key "$(keyuri ec256)" --jobs 2 \
	--in "$in/m1.eml"

# Usage errors: exit 2 before the token is touched.
expect 2 "--batch without --out-dir" -- p11s sign --key "$(keyuri ec256)" --batch "$in/m1.eml"
expect 2 "--batch without FILE" -- p11s sign --key "$(keyuri ec256)" --batch --out-dir "$out"
expect 2 "--out-dir that is not a directory" -- p11s sign --key "$(keyuri ec256)" --batch \
	--out-dir "$in/m1.eml" "$in/m2.eml"
expect 2 "--batch with --out" -- p11s sign --key "$(keyuri ec256)" --batch --out-dir "$out" \
	--out "$tmp/x" "$in/m1.eml"
expect 2 "--out-dir without --batch" -- p11s sign --key "$(keyuri ec256)" --out-dir "$out" \
	--in "$in/m1.eml"
expect 2 "FILE without --batch" -- p11s sign --key "$(keyuri ec256)" "$in/m1.eml"

# A wrong PIN is tried once, not once per file (each try counts against the token's retry
# counter); the batch stops with exit 3. The good PIN afterwards resets the counter.
printf '999999\n' >"$tmp/wrong.pin"
rm -f "$out"/*
expect 3 "wrong PIN: exit 3" -- "$bin" --backend "$backend" --module "$mod" \
	--pin-source "file:$tmp/wrong.pin" sign --key "$(keyuri ec256)" --batch --out-dir "$out" \
	"$in/m1.eml" "$in/m2.eml" "$in/m3.eml"
check "  ... one PIN error, not three" sh -c "[ \$(grep -ci 'pin' '$tmp/err') -eq 1 ]"
check "  ... nothing written" sh -c "[ -z \"\$(ls '$out')\" ]"
expect 0 "the right PIN works again" -- p11s sign --key "$(keyuri ec256)" --batch \
	--out-dir "$out" "$in/m1.eml"

# CKA_ALWAYS_AUTHENTICATE: a key of our own on a second throwaway token (the shared test
# token stays as it is). SoftHSM refuses C_Sign on such a key without a context-specific
# login after C_SignInit, so every signed file proves one; the PIN source fd:3 carries
# exactly N PINs, which shows the count: one C_Login(CKU_USER) plus one per signature.
if [ "$backend" = pkcs11 ]; then
	aa=$tmp/aa
	mkdir -p "$aa/tokens"
	printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n' \
		"$aa" >"$aa/softhsm2.conf"
	pin=$(head -n1 "$P11S_TEST_PIN_FILE")
	(
		export SOFTHSM2_CONF=$aa/softhsm2.conf
		P11S_AA_SO=13579135 pkcs11-tool --module "$mod" --slot-index 0 --init-token \
			--label p11s-aa --so-pin env:P11S_AA_SO
		P11S_AA_SO=13579135 P11S_AA_PIN=$pin pkcs11-tool --module "$mod" --token-label p11s-aa \
			--login --login-type so --so-pin env:P11S_AA_SO --init-pin --new-pin env:P11S_AA_PIN
		P11S_AA_PIN=$pin pkcs11-tool --module "$mod" --token-label p11s-aa --login \
			--pin env:P11S_AA_PIN --keypairgen --key-type EC:prime256v1 --id 99 --label aa256 \
			--always-auth --usage-sign
		pkcs11-tool --module "$mod" --token-label p11s-aa --read-object --type pubkey --id 99 \
			-o "$aa/pub.der"
		openssl pkey -pubin -inform DER -in "$aa/pub.der" -out "$aa/pub.pem"
		openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-keyout "$aa/dummy.key" -subj "/O=p11smime test/CN=always-auth" -out "$aa/req.csr"
		openssl x509 -req -in "$aa/req.csr" -CA "$pki/intermediate.pem" \
			-CAkey "$pki/intermediate/intermediate.key" -set_serial 0x99aa -days 30 \
			-force_pubkey "$aa/pub.pem" -out "$aa/cert.pem" \
			-extfile <(printf 'keyUsage=critical,digitalSignature\nextendedKeyUsage=emailProtection\n')
		openssl x509 -in "$aa/cert.pem" -outform DER -out "$aa/cert.der"
		P11S_AA_PIN=$pin pkcs11-tool --module "$mod" --token-label p11s-aa --login \
			--pin env:P11S_AA_PIN --write-object "$aa/cert.der" --type cert --id 99 --label aa256
	) >"$aa/setup.log" 2>&1 || { cat "$aa/setup.log"; not_ok "always-authenticate token setup"; }
	aauri='pkcs11:token=p11s-aa;object=aa256;type=private'
	pins() { for _ in $(seq "$1"); do printf '%s\n' "$pin"; done; }
	p11aa() { SOFTHSM2_CONF=$aa/softhsm2.conf "$bin" --backend "$backend" --module "$mod" "$@"; }
	out=$tmp/aa-out
	mkdir -p "$out"
	expect 0 "always-authenticate key: 3 files with 4 PINs (login + one per signature)" -- \
		p11aa --pin-source fd:3 sign --key "$aauri" --chain "$pki/intermediate.pem" --batch \
		--out-dir "$out" "$in/m1.eml" "$in/m2.eml" "$in/m3.eml" 3< <(pins 4)
	for i in 1 2 3; do
		check "  ... m$i.eml verifies" verified "$out/m$i.eml" "$tmp/canon$i"
	done
	rm -f "$out"/*
	expect 2 "always-authenticate key: 3 files with only 3 PINs: the last signature has none" -- \
		p11aa --pin-source fd:3 sign --key "$aauri" --chain "$pki/intermediate.pem" --batch \
		--out-dir "$out" "$in/m1.eml" "$in/m2.eml" "$in/m3.eml" 3< <(pins 3)
	check "  ... m1 and m2 signed" sh -c "[ -s '$out/m1.eml' ] && [ -s '$out/m2.eml' ]"
	check "  ... m3 not written" test ! -e "$out/m3.eml"
	check "  ... m3 named on stderr" grep -q "m3.eml: signing: no PIN" "$tmp/err"
fi

finish
