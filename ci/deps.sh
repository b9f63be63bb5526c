#!/bin/bash
# Install the Debian 12 packages p11smime needs to build, test and run its demo.
# Idempotent: apt-get runs only when something is missing. Needs root (or sudo).
set -euo pipefail

packages=(
	# build
	build-essential cmake pkg-config clang libclang-rt-14-dev
	libssl-dev openssl libp11-kit-dev p11-kit libp11-dev libcmocka-dev
	# the token and the tools that make test tokens
	softhsm2 opensc opensc-pkcs11 gnutls-bin libengine-pkcs11-openssl
	libgmime-3.0-dev libcurl4-openssl-dev curl
	libpkcs11-helper1-dev libpcsclite-dev libmilter-dev libassuan-dev pinentry-tty tmux
	# the recipients' certificate store (docs/certificates.md)
	libsqlite3-dev sqlite3 libldap-dev
	# a real directory for the LDAP lookups (tests/store)
	slapd ldap-utils
	# interop peers and test vectors (PKITS S/MIME messages)
	libnss3-tools gpgsm gpg-agent python3-cryptography-vectors
	# BouncyCastle, the independent RFC 8419 (Ed25519) peer (tests/interop/bouncycastle.sh;
	# the JDK for java's source-file launcher); asn1crypto + pyca cryptography, the RFC 8418
	# (X25519) decryptor of tests/interop/xdh.sh
	libbcprov-java libbcpkix-java default-jdk-headless python3-asn1crypto python3-cryptography
	# real git for the commit and tag signing tests (tests/git)
	git
	# test harness
	python3 valgrind strace time jq
	# real readers (virtual card) and a real MTA for the gateway
	pcscd vsmartcard-vpcd python3-virtualsmartcard python3-pycryptodome postfix
	# real mail clients driven in tmux (tests/mua)
	neomutt tmux
	# Debian packaging (ci/package.sh, tests/package)
	debhelper devscripts lintian dpkg-dev fakeroot
	# systemd-analyze verify of the gateway unit (tests/package/installed.sh)
	systemd
)

missing=()
for p in "${packages[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
if [ "${#missing[@]}" -eq 0 ]; then
	exit 0
fi
sudo=
if [ "$(id -u)" -ne 0 ]; then
	sudo=sudo
fi
echo "ci/deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
