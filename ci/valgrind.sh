#!/bin/bash
# valgrind memcheck over the CLI flows: tokens, keys, sign (multipart and opaque), verify,
# encrypt, decrypt, wrap/unwrap, on a throwaway SoftHSM token (both backends), and the bad
# input corpus through verify and decrypt. Any memory error or leak fails (exit 99); the only
# suppressions are for third-party code, each justified in ci/valgrind.supp.
# usage: ci/valgrind.sh [BUILD_DIR]   (default build-valgrind/, built with gcc -O1 -g; CI passes
#        its gcc tree build-ci/)   P11S_VG_BACKENDS="pkcs11 libp11": backends to run (default all)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build-valgrind}
if [ ! -x "$build/src/cli/p11smime" ]; then
	cmake -S "$top" -B "$build" -DCMAKE_C_COMPILER=gcc -DCMAKE_BUILD_TYPE=Debug \
		-DCMAKE_C_FLAGS=-O1 >/dev/null
	cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" --target p11smime-cli
fi
bin=$build/src/cli/p11smime
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$top/tests/integration/setup-token.sh" "$work/tok" p11s-test /usr/lib/softhsm/libsofthsm2.so "$bin" >/dev/null
. "$work/tok/env.sh"
pin=(--pin-source "file:$P11S_TEST_PIN_FILE")
pki=$P11S_TEST_PKI
fpki=$top/tests/fuzz/pki
status=0
runs=0

# vg NAME EXPECTED_STATUS ARGS...: run the tool under memcheck.
vg() {
	local name=$1 want=$2 rc
	shift 2
	runs=$((runs + 1))
	set +e
	valgrind -q --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect,possible \
		--errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99 \
		--suppressions="$top/ci/valgrind.supp" --gen-suppressions=all --num-callers=40 \
		--log-file="$work/vg.$runs.log" "$bin" "$@" >"$work/out" 2>"$work/err"
	rc=$?
	set -e
	if [ "$rc" = 99 ] || [ -s "$work/vg.$runs.log" ]; then
		echo "FAIL valgrind: $name (exit $rc)"
		cat "$work/vg.$runs.log"
		status=1
	elif [ "$rc" != "$want" ]; then
		echo "FAIL status: $name (exit $rc, expected $want)"
		head -3 "$work/err"
		status=1
	else
		echo "ok $name"
	fi
}

printf 'From: alice-rsa2048@example.org\nTo: bob@example.org\nSubject: vg\n\nHello.\n' >"$work/msg"
printf 'From: alice-ec256@example.org\nSubject: vg\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nGr\xc3\xbc\xc3\x9fe\n' >"$work/msg8"
# P11S_VG_BACKENDS: the backends to run the token flows through (space separated); default
# every one built in. CI (ci/test.sh) runs the default backend only (docs/security.md).
if [ -n "${P11S_VG_BACKENDS:-}" ]; then
	read -r -a backends <<<"$P11S_VG_BACKENDS"
else
	backends=(pkcs11)
	if "$bin" --help 2>&1 | grep -q libp11; then
		backends+=(libp11)
	fi
fi
for b in "${backends[@]}"; do
	t=(--backend "$b" --module "$P11S_TEST_MODULE" "${pin[@]}")
	key="pkcs11:token=p11s-test;object=rsa2048;type=private"
	eckey="pkcs11:token=p11s-test;object=ec256;type=private"
	vg "$b tokens" 0 "${t[@]}" tokens
	vg "$b keys" 0 "${t[@]}" keys
	vg "$b keys --json" 0 "${t[@]}" --json keys
	vg "$b sign" 0 "${t[@]}" sign --key "$key" --in "$work/msg" --out "$work/signed.$b"
	vg "$b sign --opaque (8bit, re-encoded)" 0 "${t[@]}" sign --opaque --key "$eckey" \
		--in "$work/msg8" --out "$work/opaque.$b"
	vg "$b sign, wrong key URI" 3 "${t[@]}" sign --key "pkcs11:token=p11s-test;object=nope" \
		--in "$work/msg" --out "$work/x"
	vg "$b encrypt" 0 encrypt --to "$pki/rsa2048.pem" --to "$pki/ec256.pem" --in "$work/msg" \
		--out "$work/enc.$b"
	vg "$b encrypt CBC" 0 encrypt --to "$pki/ec256.pem" --cipher aes-128-cbc --in "$work/msg" \
		--out "$work/cbc.$b"
	vg "$b decrypt (RSA, GCM)" 0 "${t[@]}" decrypt --key "$key" --in "$work/enc.$b" --out "$work/dec"
	vg "$b decrypt (search, ECDH, CBC)" 0 "${t[@]}" decrypt --in "$work/cbc.$b" --out "$work/dec"
	if [ "$b" = pkcs11 ]; then
		vg "$b decrypt, no recipient" 1 "${t[@]}" decrypt --in "$top/tests/data/bad/recipient-no-key.eml" \
			--out "$work/x"
	fi
	if "$bin" wrap --help >/dev/null 2>&1; then
		vg "$b wrap" 0 "${t[@]}" wrap --key "$key" --to "$pki/rsa2048.pem" --in "$work/msg" \
			--out "$work/wrapped.$b"
		vg "$b unwrap" 0 "${t[@]}" unwrap --trust "$pki/root.pem" --certs "$pki/chain.pem" \
			--in "$work/wrapped.$b" --out "$work/dec"
	fi
done
vg "verify multipart" 0 verify --trust "$pki/root.pem" --certs "$pki/chain.pem" --crl "$pki/crls.pem" \
	--in "$work/signed.pkcs11" --out "$work/content"
vg "verify opaque --json" 0 --json verify --trust "$pki/root.pem" --certs "$pki/chain.pem" \
	--in "$work/opaque.pkcs11" --out "$work/content"
# Opaque signed-data in BER (indefinite lengths, constructed eContent: `openssl cms -stream`),
# read by the streaming verifier into its scratch files, and the content written out.
printf 'From: alice@example.org\nSubject: vg\n\nstreamed\n' >"$work/alice"
openssl cms -sign -in "$work/alice" -signer "$fpki/alice.pem" -inkey "$fpki/alice.key" -nodetach \
	-binary -stream -outform SMIME -out "$work/ber.eml"
vg "verify opaque BER (streamed)" 0 verify --trust "$fpki/ca.pem" --no-sender-check \
	--in "$work/ber.eml" --out "$work/content"
# A sample of the bad-input corpus (all of it runs under ASan in ctest): error paths free too.
for n in truncated-base64-p7s truncated-der-opaque huge-length-4 boundary-mismatch \
	content-altered two-signers-one-untrusted zero-signers signers-65 cert-malformed-extensions; do
	f=$top/tests/data/bad/$n.eml
	set +e
	"$bin" verify --trust "$fpki/ca.pem" --at 2030-01-01T00:00:00Z --in "$f" >/dev/null 2>&1
	want=$?
	set -e
	vg "verify bad/$n" "$want" verify --trust "$fpki/ca.pem" --at 2030-01-01T00:00:00Z --in "$f"
done
for f in "$top"/tests/data/bad/{recipient-no-key,enveloped-truncated,huge-length-4,zero-length-signeddata}.eml; do
	vg "decrypt bad/$(basename "$f")" "$( [ "${f##*/}" = recipient-no-key.eml ] && echo 1 || echo 2)" \
		"${pin[@]}" --module "$P11S_TEST_MODULE" decrypt --in "$f" --out "$work/x"
done
echo "ci/valgrind.sh: $runs runs, $([ $status = 0 ] && echo passed || echo FAILED)"
exit "$status"
