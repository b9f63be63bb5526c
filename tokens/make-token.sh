#!/bin/bash
# make-token.sh - create a throwaway SoftHSMv2 token and a test PKI for p11smime.
#
# Usage:
#   tokens/make-token.sh --dir DIR --label LABEL --pin-file FILE --so-pin-file FILE
#                        [--module PATH] [--p11smime PATH] [--force]
#
# The token gets four key pairs generated ON the token with `p11smime keygen` (private
# keys CKA_PRIVATE, CKA_SENSITIVE, never extractable) and, for each, an S/MIME certificate
# issued by a test intermediate CA from a CSR that the token key itself signed
# (`p11smime csr`), written next to the key with `p11smime import-cert`.  DIR/pki gets the
# CA chain, CRLs and a few software-key certificates that must fail verification.
# See tokens/README.md for the full layout.
#
# On success stdout carries only `export NAME=VALUE` lines (also saved in DIR/env.sh):
#   eval "$(tokens/make-token.sh --dir ... )"
# Progress goes to stderr; the output of the tools goes to DIR/make-token.log.
#
# p11smime: --p11smime PATH, else $P11SMIME, else $P11S_BIN (the CTest environment's
# binary under test), else the build tree's build/src/cli/p11smime
# when this script runs from a source tree that has one, else `p11smime` on PATH.  The
# CTest fixture (tests/integration/setup-token.sh) passes the binary under test.
#
# PINs: read from the files given by the caller (first line, trailing CR/LF removed) and
# never placed on a command line.  p11smime gets `--pin-source fd:3`, a pipe fed by a shell
# builtin (printf), so the PIN is neither on argv nor in any environment; pkcs11-tool (token
# initialisation and the final listing only) gets `--pin env:NAME` (OpenSC's util_get_pin
# reads the named variable, set for that one child).  softhsm2-util --init-token would need
# --pin/--so-pin on argv; pkcs11-tool's --init-token and --init-pin do the same job with
# env: PINs, so softhsm2-util is not used at all (p11smime has no token initialisation).

set -Eeuo pipefail

readonly DEFAULT_MODULE=/usr/lib/softhsm/libsofthsm2.so
readonly MARKER='# created by p11smime tokens/make-token.sh'

prog=${0##*/}

usage() {
	cat <<EOF
usage: $prog --dir DIR --label LABEL --pin-file FILE --so-pin-file FILE [--module PATH]
                      [--p11smime PATH] [--force]

  --dir DIR            directory for softhsm2.conf, tokens/ and pki/ (created if missing)
  --label LABEL        token label (1..32 bytes)
  --pin-file FILE      file whose first line is the user PIN (4..255 bytes)
  --so-pin-file FILE   file whose first line is the SO PIN (4..255 bytes)
  --module PATH        SoftHSMv2 PKCS#11 module (default $DEFAULT_MODULE)
  --p11smime PATH      p11smime binary that generates the keys, CSRs and certificate objects
                       (default \$P11SMIME, else \$P11S_BIN, else the source tree's build/src/cli/p11smime,
                       else p11smime on PATH)
  --force              replace a token and PKI that a previous run left in DIR
EOF
}

die() {
	printf '%s: error: %s\n' "$prog" "$*" >&2
	exit 1
}

say() {
	printf '%s: %s\n' "$prog" "$*" >&2
}

dir=
label=
pin_file=
so_pin_file=
module=$DEFAULT_MODULE
p11smime=${P11SMIME:-${P11S_BIN:-}}
force=0

need_arg() {
	[ "$2" -ge 2 ] || die "option $1 needs an argument"
}

while [ $# -gt 0 ]; do
	case $1 in
	--dir) need_arg "$1" $#; dir=$2; shift 2 ;;
	--label) need_arg "$1" $#; label=$2; shift 2 ;;
	--pin-file) need_arg "$1" $#; pin_file=$2; shift 2 ;;
	--so-pin-file) need_arg "$1" $#; so_pin_file=$2; shift 2 ;;
	--module) need_arg "$1" $#; module=$2; shift 2 ;;
	--p11smime) need_arg "$1" $#; p11smime=$2; shift 2 ;;
	--force) force=1; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done

[ -n "$dir" ] || { usage >&2; die "--dir is required"; }
[ -n "$label" ] || { usage >&2; die "--label is required"; }
[ -n "$pin_file" ] || { usage >&2; die "--pin-file is required"; }
[ -n "$so_pin_file" ] || { usage >&2; die "--so-pin-file is required"; }

# A token label is a 32-byte blank-padded field (PKCS#11 v2.40 CK_TOKEN_INFO.label).
[ "$(printf '%s' "$label" | wc -c)" -le 32 ] || die "token label longer than 32 bytes"
case $label in
*[[:cntrl:]]*) die "token label contains control characters" ;;
esac

for tool in pkcs11-tool p11tool openssl cmp; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found (packages: opensc, gnutls-bin, openssl, diffutils)"
done
[ -f "$module" ] || die "PKCS#11 module not found: $module"
case $module in
/*) ;;
*) module=$(cd "$(dirname -- "$module")" && pwd -P)/$(basename -- "$module") ;;
esac
if [ -z "$p11smime" ]; then
	# Run from a source tree: its default build directory (README.md) if it has a binary.
	src_top=$(cd "$(dirname -- "$0")/.." && pwd -P)
	if [ -f "$src_top/CMakeLists.txt" ] && [ -x "$src_top/build/src/cli/p11smime" ]; then
		p11smime=$src_top/build/src/cli/p11smime
	else
		p11smime=$(command -v p11smime 2>/dev/null) ||
			die "p11smime not found: give --p11smime PATH or set P11SMIME (or build it, or install the package p11smime)"
	fi
fi
case $p11smime in
*/*) ;;
*) found=$(command -v -- "$p11smime" 2>/dev/null) || die "p11smime binary not found on PATH: $p11smime"
	p11smime=$found ;;
esac
if [ ! -f "$p11smime" ] || [ ! -x "$p11smime" ]; then
	die "p11smime binary not executable: $p11smime"
fi
case $p11smime in
/*) ;;
*) p11smime=$(cd "$(dirname -- "$p11smime")" && pwd -P)/$(basename -- "$p11smime") ;;
esac
"$p11smime" keygen --help >/dev/null 2>&1 || die "$p11smime has no keygen command (too old?)"

# read_pin FILE: print the first line of FILE without CR/LF.  printf is a builtin, so the
# PIN never shows up in a process argument list.
read_pin() {
	local f=$1 p=''
	if [ ! -f "$f" ] || [ ! -r "$f" ]; then
		die "cannot read PIN file $f"
	fi
	IFS= read -r p <"$f" || [ -n "$p" ] || die "PIN file $f is empty"
	p=${p%$'\r'}
	# SoftHSM 2.6 accepts PINs of 4..255 bytes (ulMinPinLen/ulMaxPinLen).
	if [ "${#p}" -lt 4 ] || [ "${#p}" -gt 255 ]; then
		die "PIN in $f must be 4..255 characters"
	fi
	printf '%s' "$p"
}

pin=$(read_pin "$pin_file")
so_pin=$(read_pin "$so_pin_file")
pin_file=$(cd "$(dirname -- "$pin_file")" && pwd -P)/$(basename -- "$pin_file")

umask 077
mkdir -p -- "$dir"
dir=$(cd -- "$dir" && pwd -P)
[ "$dir" != / ] || die "refusing to use / as the token directory"
case $dir in
*[[:cntrl:]\$\\\"]*) die "directory name contains characters that the configuration files cannot carry: $dir" ;;
esac

conf=$dir/softhsm2.conf
tokendir=$dir/tokens
pki=$dir/pki
log=$dir/make-token.log

if [ -e "$conf" ] || [ -e "$tokendir" ] || [ -e "$pki" ]; then
	[ "$force" = 1 ] || die "$dir already holds a token or PKI (use --force to replace it, or tokens/remove-token.sh)"
	if [ -e "$conf" ] && ! grep -qxF "$MARKER" "$conf"; then
		die "$conf was not written by $prog; not replacing it"
	fi
	rm -rf -- "$tokendir" "$pki"
	rm -f -- "$conf" "$dir/env.sh" "$log"
fi

mkdir -p -- "$tokendir" "$pki"
: >"$log"

cat >"$conf" <<EOF
$MARKER
# SoftHSMv2 configuration of a throwaway test token: export SOFTHSM2_CONF=$conf
directories.tokendir = $tokendir
objectstore.backend = file
log.level = ERROR
slots.removable = false
EOF
export SOFTHSM2_CONF=$conf

# Every tool's chatter goes to the log; on failure show its tail.
on_error() {
	local rc=$?
	say "failed (exit $rc); last lines of $log:"
	tail -n 20 -- "$log" >&2 || true
	exit "$rc"
}
trap on_error ERR

run() {
	printf '+ %s\n' "$*" >>"$log"
	"$@" >>"$log" 2>&1
}

# p11s ARGS...: p11smime on our module; the PIN reaches it on fd 3, a pipe written by the
# printf builtin (`--pin-source fd:3`: one line per PIN), never argv or the environment.
# stdout is the caller's (keygen prints the new key's URI), stderr goes to the log.
p11s() {
	printf '+ p11smime --module %s --pin-source fd:3 %s\n' "$module" "$*" >>"$log"
	"$p11smime" --module "$module" --pin-source fd:3 "$@" 2>>"$log" 3< <(printf '%s\n' "$pin")
}

# pct STRING: percent-encode for a pkcs11: URI path value (RFC 7512 §2.3, RFC 3986 unreserved).
pct() {
	local s=$1 out='' c i
	local LC_ALL=C
	for ((i = 0; i < ${#s}; i++)); do
		c=${s:i:1}
		case $c in
		[A-Za-z0-9._~-]) out+=$c ;;
		*) out+=$(printf '%%%02X' "'$c") ;;
		esac
	done
	printf '%s' "$out"
}

t0=$SECONDS

# ---------------------------------------------------------------- token ---------------
say "initialising token '$label' in $tokendir (keys made by $p11smime)"
# A fresh token directory shows exactly one slot, the free one, at index 0.  SoftHSM then
# moves the token to a new random slot id: address it by label from then on.
{
	printf '+ pkcs11-tool --slot-index 0 --init-token --label %s --so-pin env:P11S_MT_SO_PIN\n' "$label"
	P11S_MT_SO_PIN=$so_pin pkcs11-tool --module "$module" --slot-index 0 --init-token \
		--label "$label" --so-pin env:P11S_MT_SO_PIN
	printf '+ pkcs11-tool --token-label %s --init-pin --login --login-type so\n' "$label"
	P11S_MT_SO_PIN=$so_pin P11S_MT_PIN=$pin pkcs11-tool --module "$module" --token-label "$label" \
		--init-pin --login --login-type so --so-pin env:P11S_MT_SO_PIN --new-pin env:P11S_MT_PIN
} >>"$log" 2>&1

# id label key-type; the key pairs are generated inside the token by `p11smime keygen`
# (docs/keys.md): the private key is CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, CKA_EXTRACTABLE
# false, CKA_UNWRAP false; usages RSA sign+decrypt, EC sign+derive, every other usage set
# false explicitly (SoftHSM 2.6 would otherwise default CKA_DECRYPT to true).
keys=(
	"01 rsa2048 rsa:2048"
	"02 rsa3072 rsa:3072"
	"03 ec256 ec:p256"
	"04 ec384 ec:p384"
)
label_enc=$(pct "$label")
declare -A key_uri=()
for k in "${keys[@]}"; do
	read -r id klabel ktype <<<"$k"
	say "generating $ktype key pair '$klabel' (id $id) on the token"
	key_uri[$klabel]=$(p11s keygen --token "pkcs11:token=$label_enc" --type "$ktype" \
		--label "$klabel" --id "$id")
	printf '  %s\n' "${key_uri[$klabel]}" >>"$log"
	case ${key_uri[$klabel]} in
	pkcs11:*";id=%$id;"*"type=private") ;;
	*) die "keygen of $klabel printed an unexpected URI: ${key_uri[$klabel]}" ;;
	esac
done

# ---------------------------------------------------------------- PKI -----------------
say "building the test PKI in $pki"
mkdir -p -- "$pki/root/newcerts" "$pki/intermediate/newcerts"
for ca in root intermediate; do
	: >"$pki/$ca/index.txt"
	# A random positive start serial (16 bytes, even hex length for a2i_ASN1_INTEGER)
	# keeps serials of different runs apart.
	serial=$(openssl rand -hex 16)
	printf '1%s\n' "${serial:1}" >"$pki/$ca/serial"
	printf '1000\n' >"$pki/$ca/crlnumber"
	printf 'unique_subject = no\n' >"$pki/$ca/index.txt.attr"
done

cnf=$pki/openssl.cnf
cat >"$cnf" <<EOF
# OpenSSL configuration of the p11smime test PKI (written by tokens/make-token.sh).
[ req ]
distinguished_name = req_dn
prompt = no
utf8 = yes
string_mask = utf8only

[ req_dn ]
CN = unused

[ ca ]
default_ca = ca_intermediate

[ ca_root ]
dir = $pki/root
database = \$dir/index.txt
new_certs_dir = \$dir/newcerts
serial = \$dir/serial
crlnumber = \$dir/crlnumber
certificate = $pki/root.pem
private_key = \$dir/root.key
default_md = sha256
policy = policy_any
email_in_dn = yes
copy_extensions = none
preserve = no
unique_subject = no
default_days = 7300
default_crl_days = 30
crl_extensions = crl_ext

[ ca_intermediate ]
dir = $pki/intermediate
database = \$dir/index.txt
new_certs_dir = \$dir/newcerts
serial = \$dir/serial
crlnumber = \$dir/crlnumber
certificate = $pki/intermediate.pem
private_key = \$dir/intermediate.key
default_md = sha256
policy = policy_any
email_in_dn = yes
copy_extensions = none
preserve = no
unique_subject = no
default_days = 730
default_crl_days = 30
crl_extensions = crl_ext

[ policy_any ]
countryName = optional
organizationName = optional
organizationalUnitName = optional
commonName = supplied
emailAddress = optional

[ crl_ext ]
authorityKeyIdentifier = keyid:always

# RFC 5280 §4.2.1.9 / §4.2.1.3: a CA certificate has basicConstraints cA=TRUE (critical)
# and keyCertSign (+ cRLSign to sign CRLs).
[ v3_root ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ v3_intermediate ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

# RFC 8550 §4.4.2: digitalSignature/nonRepudiation to sign; keyEncipherment (RSA key
# transport) or keyAgreement (ECDH) to decrypt.  §4.4.4: EKU emailProtection.
[ ee_rsa ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation, keyEncipherment
extendedKeyUsage = emailProtection
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = email:copy

[ ee_ec ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation, keyAgreement
extendedKeyUsage = emailProtection
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = email:copy

# Negative cases for verification tests.
[ ee_keyenc_only ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, keyEncipherment
extendedKeyUsage = emailProtection
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = email:copy

[ ee_serverauth ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = email:copy

[ ee_san_mismatch ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation, keyEncipherment
extendedKeyUsage = emailProtection
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = email:someone-else@example.net
EOF

ossl() {
	run openssl "$@"
}

# Backdate the CAs so that `verify --at` in 2020 (the expired certificate's lifetime)
# still finds a valid chain.
ca_start=20190101000000Z

# Root CA: software key, self-signed through `openssl ca -selfsign` so it is in the root's
# database like every other certificate.
ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/root/root.key"
ossl req -config "$cnf" -new -key "$pki/root/root.key" \
	-subj "/O=p11smime test/CN=p11smime Test Root CA" -out "$pki/root/root.csr"
ossl ca -config "$cnf" -name ca_root -batch -notext -selfsign -startdate "$ca_start" -days 7300 \
	-extensions v3_root -in "$pki/root/root.csr" -out "$pki/root.pem"

# Intermediate CA, signed by the root, pathlen 0.
ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/intermediate/intermediate.key"
ossl req -config "$cnf" -new -key "$pki/intermediate/intermediate.key" \
	-subj "/O=p11smime test/CN=p11smime Test Intermediate CA" -out "$pki/intermediate/intermediate.csr"
ossl ca -config "$cnf" -name ca_root -batch -notext -startdate "$ca_start" -days 3650 \
	-extensions v3_intermediate -in "$pki/intermediate/intermediate.csr" -out "$pki/intermediate.pem"
cat "$pki/intermediate.pem" "$pki/root.pem" >"$pki/chain.pem"
ossl x509 -in "$pki/root.pem" -outform DER -out "$pki/root.der"
ossl x509 -in "$pki/intermediate.pem" -outform DER -out "$pki/intermediate.der"

# issue NAME SECTION [openssl ca options...]: certify $pki/NAME.csr with the intermediate.
issue() {
	local name=$1 section=$2
	shift 2
	ossl ca -config "$cnf" -name ca_intermediate -batch -notext -extensions "$section" \
		-in "$pki/$name.csr" -out "$pki/$name.pem" "$@"
	ossl x509 -in "$pki/$name.pem" -outform DER -out "$pki/$name.der"
}

# End-entity certificates for the token keys: the CSR is signed by the token key
# (`p11smime csr`, SHA-256), checked, certified, and the certificate is stored next to the
# key under the same CKA_ID and CKA_LABEL (`p11smime import-cert`, which first checks that
# the certificate holds the key's public key).  The extensions the CSR requests (SAN,
# keyUsage, emailProtection) are not copied (copy_extensions = none): the certificate's
# extensions are those of the ee_rsa / ee_ec profile, as before.  No --chain: the CA
# certificates stay off the token, which holds exactly the four keys' objects.
for k in "${keys[@]}"; do
	read -r id klabel ktype <<<"$k"
	case $ktype in
	rsa:*) section=ee_rsa ;;
	*) section=ee_ec ;;
	esac
	user=alice-$klabel
	say "certifying token key $klabel as $user@example.org"
	p11s csr --key "${key_uri[$klabel]}" \
		--subject "/O=p11smime test/CN=Alice $klabel/emailAddress=$user@example.org" \
		--email "$user@example.org" --usage both --out "$pki/$klabel.csr" >>"$log"
	# The CSR's self-signature proves that the token key matches the public key in it.
	ossl req -in "$pki/$klabel.csr" -verify -noout
	issue "$klabel" "$section"
	# The certificate must carry the token's public key object (CKA_ID $id).
	p11tool --provider "$module" --export "pkcs11:token=$label_enc;id=%$id;type=public" \
		2>>"$log" | openssl pkey -pubin -outform DER -out "$pki/$klabel.pub.der" 2>>"$log"
	openssl x509 -in "$pki/$klabel.pem" -pubkey -noout 2>>"$log" |
		openssl pkey -pubin -outform DER 2>>"$log" | cmp -s - "$pki/$klabel.pub.der" ||
		die "certificate $klabel.pem does not hold the public key of token object id $id"
	rm -f -- "$pki/$klabel.pub.der"
	p11s import-cert --key "${key_uri[$klabel]}" --in "$pki/$klabel.pem" >>"$log"
done

# Software-key certificates that verification must reject (keys in PEM next to them).
# name section subject [openssl ca options...]
soft=(
	"revoked ee_rsa /O=p11smime test/CN=Revoked User/emailAddress=revoked@example.org"
	"expired ee_rsa /O=p11smime test/CN=Expired User/emailAddress=expired@example.org"
	"keyenc-only ee_keyenc_only /O=p11smime test/CN=Keyenc Only/emailAddress=keyenc-only@example.org"
	"serverauth ee_serverauth /O=p11smime test/CN=ServerAuth Only/emailAddress=serverauth@example.org"
	"san-mismatch ee_san_mismatch /O=p11smime test/CN=SAN Mismatch"
)
say "issuing software-key negative-case certificates"
for s in "${soft[@]}"; do
	read -r name section subject <<<"$s"
	ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/$name.key"
	ossl req -config "$cnf" -new -key "$pki/$name.key" -subj "$subject" -out "$pki/$name.csr"
	if [ "$name" = expired ]; then
		issue "$name" "$section" -startdate 20200101000000Z -enddate 20210101000000Z
	else
		issue "$name" "$section"
	fi
done
ossl ca -config "$cnf" -name ca_intermediate -revoke "$pki/revoked.pem" -crl_reason keyCompromise

# CRLs, generated after the revocation; valid for 30 days.
for ca in root intermediate; do
	ossl ca -config "$cnf" -name "ca_$ca" -gencrl -crldays 30 -out "$pki/$ca.crl.pem"
	ossl crl -in "$pki/$ca.crl.pem" -outform DER -out "$pki/$ca.crl.der"
done
cat "$pki/root.crl.pem" "$pki/intermediate.crl.pem" >"$pki/crls.pem"

# ---------------------------------------------------------------- self-check ----------
# verify_expect NAME WANT: openssl verify NAME.pem with full CRL checking; WANT is "OK"
# or the X509_V_ERR number the verification must stop at.
verify_expect() {
	local name=$1 want=$2 out
	out=$(openssl verify -CAfile "$pki/root.pem" -untrusted "$pki/intermediate.pem" \
		-crl_check_all -CRLfile "$pki/crls.pem" -purpose smimesign "$pki/$name.pem" 2>&1 || true)
	printf '+ verify %s: %s\n' "$name" "$out" >>"$log"
	if [ "$want" = OK ]; then
		[ "$out" = "$pki/$name.pem: OK" ] || die "self-check: $name.pem does not verify: $out"
	else
		case $out in
		*"error $want at"*) ;;
		*) die "self-check: $name.pem should fail with X509 error $want: $out" ;;
		esac
	fi
}
for k in "${keys[@]}"; do
	read -r _ klabel _ <<<"$k"
	verify_expect "$klabel" OK
done
verify_expect revoked 23        # X509_V_ERR_CERT_REVOKED
verify_expect expired 10        # X509_V_ERR_CERT_HAS_EXPIRED
verify_expect serverauth 26     # X509_V_ERR_INVALID_PURPOSE
verify_expect keyenc-only 26    # X509_V_ERR_INVALID_PURPOSE (no digitalSignature/nonRepudiation)
verify_expect san-mismatch OK   # valid chain; only the From check rejects it

# Private keys, public keys and certificates must pair up by CKA_ID on the token.
listing=$(P11S_MT_PIN=$pin pkcs11-tool --module "$module" --token-label "$label" \
	--login --pin env:P11S_MT_PIN --list-objects 2>>"$log")
printf '%s\n' "$listing" >>"$log"
for k in "${keys[@]}"; do
	read -r id klabel _ <<<"$k"
	n=$(printf '%s\n' "$listing" | grep -c "^  ID:  *$id\$" || true)
	[ "$n" = 3 ] || die "self-check: token holds $n objects with id $id, expected 3 (key pair + cert)"
done

trap - ERR
say "done in $((SECONDS - t0)) s"

{
	printf 'export SOFTHSM2_CONF=%q\n' "$conf"
	printf 'export P11S_TEST_MODULE=%q\n' "$module"
	printf 'export P11S_TEST_TOKEN=%q\n' "$label"
	printf 'export P11S_TEST_PKI=%q\n' "$pki"
	printf 'export P11S_TEST_PIN_FILE=%q\n' "$pin_file"
} | tee "$dir/env.sh"
