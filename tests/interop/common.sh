# Shared part of the interop suites (sourced). Environment from tests/CMakeLists.txt
# (p11s_token_test): P11S_BIN, P11S_TEST_MODULE, P11S_TEST_TOKEN, P11S_TEST_PKI,
# P11S_TEST_PIN_FILE, SOFTHSM2_CONF.
#
# A peer that is not installed skips the suite (exit 77, SKIP_RETURN_CODE) on a developer
# machine and fails it in CI (CI=true): CI must really run every peer.
set -euo pipefail
interop_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$interop_dir/../integration/lib.sh"

bin=$P11S_BIN
mod=$P11S_TEST_MODULE
label=$P11S_TEST_TOKEN
pki=$P11S_TEST_PKI
pinfile=$P11S_TEST_PIN_FILE
p11s() { "$bin" --backend pkcs11 --module "$mod" --pin-source "file:$pinfile" "$@"; }
keyuri() { printf 'pkcs11:token=%s;object=%s;type=private' "$label" "$1"; }
mime() { python3 "$interop_dir/mime.py" "$@"; }
exec </dev/null

# need TOOL...: every peer tool must be on PATH.
need() {
	local t missing=()
	for t in "$@"; do
		command -v "$t" >/dev/null 2>&1 || missing+=("$t")
	done
	[ "${#missing[@]}" -eq 0 ] && return 0
	if [ "${CI:-}" = true ]; then
		echo "not ok - interop peer missing in CI: ${missing[*]} (ci/deps.sh installs libnss3-tools, gpgsm, gpg-agent)"
		echo "0 passed, 1 failed"
		exit 1
	fi
	echo "# SKIP: interop peer not installed: ${missing[*]}"
	exit 77
}

# note TEXT: a result line that is neither a pass nor a failure (a peer limitation that the
# suite proved is the peer's, see docs/interop.md).
note() { echo "# $*"; }

# The signing matrix of item 1: key, signature scheme option, digest. RSA-3072 signs with
# RSASSA-PSS; P-384 also with SHA-384 (gpgsm wants a hash as long as the curve order).
sign_matrix=(
	"rsa2048 - sha256" "rsa2048 - sha512"
	"rsa3072 --pss sha256" "rsa3072 --pss sha512"
	"ec256 - sha256" "ec256 - sha512"
	"ec384 - sha256" "ec384 - sha384" "ec384 - sha512"
)

# spec_name KEY PSSOPT DIGEST FORM: "rsa3072 pss sha256 detached".
spec_name() {
	if [ "$2" = - ]; then echo "$1 $3 $4"; else echo "$1 ${2#--} $3 $4"; fi
}

# A 7-bit message with LF line ends and its canonical signed entity (CRLF). Date: now, as a
# mail client sets it when it signs (verify compares it with signingTime, docs/verify.md).
msg=$tmp/msg.eml
msgdate=$(LC_ALL=C date -R)
printf 'From: Alice <alice@example.org>\nTo: bob@example.org\nSubject: interop test\nDate: %s\nMessage-ID: <interop@example.org>\nContent-Type: text/plain; charset=us-ascii\n\nHello Bob,\n\nthis is signed on a token.\n-- \nAlice\n' "$msgdate" >"$msg"
# RFC 9788 header protection is on by default (CLI.md): the signed entity carries hp="clear"
# and copies of the message's fields; with --no-protect-headers it is $canon_plain.
canon=$tmp/canon
printf 'Content-Type: text/plain; charset=us-ascii; hp="clear"\r\nFrom: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: interop test\r\nDate: %s\r\nMessage-ID: <interop@example.org>\r\n\r\nHello Bob,\r\n\r\nthis is signed on a token.\r\n-- \r\nAlice\r\n' "$msgdate" >"$canon"
canon_plain=$tmp/canon-plain
printf 'Content-Type: text/plain; charset=us-ascii\r\n\r\nHello Bob,\r\n\r\nthis is signed on a token.\r\n-- \r\nAlice\r\n' >"$canon_plain"

# token_sign KEY PSSOPT DIGEST FORM OUT: sign $msg with a token key (FORM detached|opaque).
token_sign() {
	local key=$1 pss=$2 digest=$3 form=$4 out=$5 opts=()
	[ "$pss" = - ] || opts+=("$pss")
	[ "$form" = opaque ] && opts+=(--opaque)
	p11s sign --key "$(keyuri "$key")" "${opts[@]}" --digest "$digest" \
		--chain "$pki/intermediate.pem" --in "$msg" --out "$out"
}

# soft_cert NAME rsa|ec: a software-key S/MIME certificate issued by the test intermediate CA
# with the profile of the token certificates (ee_rsa / ee_ec of pki/openssl.cnf), 30 days.
# Writes $tmp/NAME.key (PKCS#8 PEM), $tmp/NAME.pem; address NAME@example.org.
soft_cert() {
	local name=$1 type=$2 profile
	case $type in
	rsa)
		openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/$name.key" 2>/dev/null
		profile=ee_rsa ;;
	ec)
		openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/$name.key" 2>/dev/null
		profile=ee_ec ;;
	esac
	openssl req -new -key "$tmp/$name.key" \
		-subj "/O=p11smime test/CN=Soft $name/emailAddress=$name@example.org" \
		-out "$tmp/$name.csr" 2>/dev/null
	openssl x509 -req -in "$tmp/$name.csr" -CA "$pki/intermediate.pem" \
		-CAkey "$pki/intermediate/intermediate.key" -set_serial "0x$(openssl rand -hex 8)" \
		-days 30 -extfile "$pki/openssl.cnf" -extensions "$profile" -out "$tmp/$name.pem" 2>/dev/null
}

# p12 NAME PASSFILE [openssl pkcs12 options]: $tmp/NAME.p12 with the key, certificate and
# intermediate; PASSFILE holds the password (first line).
p12() {
	local name=$1 pass=$2
	shift 2
	openssl pkcs12 -export -inkey "$tmp/$name.key" -in "$tmp/$name.pem" \
		-certfile "$pki/intermediate.pem" -name "$name" -passout "file:$pass" "$@" \
		-out "$tmp/$name.p12"
}

# A password for the PKCS#12 files (a test secret of software keys, not the token PIN). No
# newline: pk12util -w and gpgsm --passphrase-fd take the whole file, openssl its first line.
p12pass=$tmp/p12.pass
printf 'interop-p12' >"$p12pass"
