#!/bin/bash
# The Debian packages as installed (issue 22, docs/packaging.md): install the four packages
# that ci/package.sh built with apt-get, use the INSTALLED programs and library, then purge
# them and check that nothing is left behind.
#
#   1. apt-get install ./libp11smime0_*.deb ./libp11smime-dev_*.deb ./p11smime_*.deb
#      ./p11smime-gateway_*.deb (no recommends: every dependency is already there after
#      ci/deps.sh, so no network is needed);
#   2. /usr/bin/p11smime, owned by the package and loading libp11smime.so.0 from the system
#      library directory, on a throwaway SoftHSMv2 token (tokens/make-token.sh, its keys, CSRs
#      and certificate objects made by the installed p11smime keygen/csr/import-cert): sign, verify,
#      an altered byte failing verification (exit 1), encrypt, decrypt; p11smime-client runs the
#      installed tool; bash completion loads;
#   3. a C program compiled with `pkg-config --cflags --libs p11smime` (nothing of the source
#      tree on the include or library path) signs on the token, and the same program built by
#      CMake with find_package(p11smime); the shipped library has no mock backend;
#   4. the gateway: `systemd-analyze verify` of the installed unit, the p11smime system user
#      and its directory, /etc/p11smime/gateway.conf registered as a conffile, and the
#      commented configuration refused (the milter socket is not set);
#   5. apt-get purge: every path `dpkg -L` listed (and that did not exist before) is gone,
#      /etc/p11smime and /var/lib/p11smime are gone, no package is left in state "rc". The
#      p11smime system user stays (Debian policy 9.2.2; docs/packaging.md), and is reported.
#
# Needs root (it installs packages) and refuses to run when one of the four packages is
# already installed, so that it never replaces or purges an administrator's installation.
# The packages are purged on every exit, success or not.
# usage: tests/package/installed.sh [DIST-DIR]     (default: dist/ in the top directory)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
dist=$(cd "${1:-$top/dist}" && pwd)
packages=(libp11smime0 libp11smime-dev p11smime p11smime-gateway)
module=/usr/lib/softhsm/libsofthsm2.so
export DEBIAN_FRONTEND=noninteractive

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $*"; }
check() {
	local desc=$1
	shift
	if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}
# expect STATUS DESCRIPTION -- COMMAND...: COMMAND's exit status (stdout to $tmp/out, stderr
# to $tmp/err).
expect() {
	local want=$1 desc=$2 got
	shift 3
	set +e
	"$@" >"$tmp/out" 2>"$tmp/err"
	got=$?
	set -e
	if [ "$got" = "$want" ]; then
		ok "$desc"
	else
		not_ok "$desc (exit $got, expected $want)"
		sed 's/^/#   stderr: /' "$tmp/err" | head -5
	fi
}
die() { echo "installed.sh: $*" >&2; exit 2; }

[ "$(id -u)" -eq 0 ] || die "needs root (apt-get install and purge)"
debs=()
for p in "${packages[@]}"; do
	# One .deb per package: NAME_VERSION_ARCH.deb (the NAME-dbgsym_ packages beside them are
	# not installed); the last one in version order if several are there.
	f=
	for g in "$dist/${p}"_*.deb; do
		if [ -e "$g" ]; then f=$g; fi
	done
	f=$(if [ -n "$f" ]; then printf '%s\n' "$dist/${p}"_*.deb | sort -V | tail -n 1; fi)
	[ -n "$f" ] || die "no ${p}_*.deb in $dist (run ci/package.sh first)"
	debs+=("$f")
	if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -Eq 'installed|config-files'; then
		die "$p is already installed (or not purged): this test installs and purges it"
	fi
done

# One run at a time on a machine: two runs would install and purge each other's packages.
exec 9>/run/lock/p11smime-package-test.lock
flock -w 600 9 || die "another tests/package/installed.sh holds /run/lock/p11smime-package-test.lock"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/p11smime-installed.XXXXXX")
chmod 755 "$tmp"
installed=0
purge() {
	if [ "$installed" -eq 1 ]; then
		installed=0
		apt-get purge -y -qq "${packages[@]}" >"$tmp/purge.log" 2>&1 ||
			{ echo "# apt-get purge failed:"; sed 's/^/#   /' "$tmp/purge.log"; }
	fi
}
cleanup() {
	purge
	[ -e "$tmp/token/softhsm2.conf" ] && "$top/tokens/remove-token.sh" "$tmp/token" >/dev/null 2>&1
	rm -rf "$tmp"
}
trap cleanup EXIT

# Which of the packages' paths exist before the install (directories like /usr/bin do):
# those must exist after the purge too, and every other one must be gone.
for f in "${debs[@]}"; do
	dpkg-deb -c "$f" | awk '{ p = $6; sub(/^\./, "", p); sub(/\/$/, "", p); if (p != "") print p }'
done | sort -u >"$tmp/paths"
while read -r p; do
	if [ -e "$p" ] || [ -L "$p" ]; then echo "$p"; fi
done <"$tmp/paths" >"$tmp/before"
for p in /usr/bin/p11smime /usr/lib/x86_64-linux-gnu/libp11smime.so.0 /etc/p11smime; do
	if [ -e "$p" ]; then die "$p exists but no package owns it (a cmake --install?): not overwriting it"; fi
done

# --- 1. install
start=$SECONDS
if apt-get install -y -qq --no-install-recommends "${debs[@]}" >"$tmp/install.log" 2>&1; then
	installed=1
	ok "apt-get install of the four packages ($((SECONDS - start)) s)"
else
	installed=1 # whatever got unpacked is purged
	not_ok "apt-get install of the four packages"
	sed 's/^/#   /' "$tmp/install.log" | tail -n 20
	exit 1
fi
for p in "${packages[@]}"; do
	dpkg -L "$p"
done | grep -vx '/\.' | sort -u >"$tmp/listed"
check "dpkg -L lists files of all four packages" test "$(wc -l <"$tmp/listed")" -gt 50

# --- 2. the installed tool on a throwaway token
bin=/usr/bin/p11smime
check "$bin belongs to the package p11smime" sh -c "dpkg -S $bin | grep -q '^p11smime: '"
# The library file the package installed (/usr/lib/<multiarch>/libp11smime.so.0), and the one
# the dynamic linker picks for a program (with /lib -> usr/lib, ldd may name it /lib/...).
syslib=$(readlink -f "$(dpkg -L libp11smime0 | grep '/libp11smime\.so\.0$')")
loads_syslib() {
	local l
	l=$(ldd "$1" | awk '$1 == "libp11smime.so.0" { print $3 }')
	[ -n "$l" ] && [ "$(readlink -f "$l")" = "$syslib" ]
}
check "$bin loads the packaged $syslib" loads_syslib "$bin"
check "installed programs have no RUNPATH" sh -c \
	"! readelf -d /usr/bin/p11smime /usr/bin/p11smime-gpg /usr/sbin/p11smime-gateway | grep -Eq 'RPATH|RUNPATH'"
version=$(sed -n 's/^project(p11smime VERSION \([0-9.]*\).*/\1/p' "$top/CMakeLists.txt")
expect 0 "p11smime --version" -- "$bin" --version
check "  ... says $version" grep -q "$version" "$tmp/out"

umask 077
mkdir "$tmp/token"
printf '%s\n' 314159 >"$tmp/token/user.pin"
printf '%s\n' 27182818 >"$tmp/token/so.pin"
umask 022
if ! "$top/tokens/make-token.sh" --dir "$tmp/token" --label p11s-installed \
	--pin-file "$tmp/token/user.pin" --so-pin-file "$tmp/token/so.pin" --module "$module" \
	--p11smime "$bin" >"$tmp/token.env" 2>"$tmp/token.err"; then
	not_ok "make the throwaway SoftHSM token"
	tail -n 20 "$tmp/token.err" | sed 's/^/#   /'
	exit 1
fi
# shellcheck disable=SC1090 # the export lines of make-token.sh
. "$tmp/token.env"
pki=$P11S_TEST_PKI
pinfile=$P11S_TEST_PIN_FILE
keyuri() { printf 'pkcs11:token=p11s-installed;object=%s;type=private' "$1"; }
p11s() { "$bin" --module "$module" --pin-source "file:$pinfile" "$@"; }

# message KEY: a message From the address of the token key KEY's certificate (verify checks
# the sender, docs/verify.md), Date now.
message() {
	printf 'From: Alice <alice-%s@example.org>\nTo: bob@example.org\nSubject: installed\nDate: %s\nMessage-ID: <installed-%s@example.org>\nContent-Type: text/plain; charset=us-ascii\n\nSigned and encrypted by the installed p11smime.\n' \
		"$1" "$(LC_ALL=C date -R)" "$1" >"$tmp/msg-$1.eml"
	echo "$tmp/msg-$1.eml"
}
expect 0 "tokens lists the throwaway token" -- p11s tokens
check "  ... by its label" grep -q p11s-installed "$tmp/out"
for key in rsa2048 ec256; do
	msg=$(message "$key")
	expect 0 "$key: sign on the token" -- p11s sign --key "$(keyuri "$key")" \
		--chain "$pki/intermediate.pem" --in "$msg" --out "$tmp/signed-$key.eml"
	expect 0 "$key: verify" -- "$bin" verify --trust "$pki/root.pem" --crl "$pki/crls.pem" \
		--in "$tmp/signed-$key.eml" --out "$tmp/content-$key"
	check "  ... the verified content is the message body" grep -q "by the installed p11smime" \
		"$tmp/content-$key"
	# One byte of the signed body changed: verification fails, exit 1.
	sed 's/Signed and encrypted/Signed and encrypteD/' "$tmp/signed-$key.eml" >"$tmp/altered.eml"
	check "  ... (the alteration changed the message)" sh -c "! cmp -s '$tmp/signed-$key.eml' '$tmp/altered.eml'"
	expect 1 "$key: an altered byte fails verification" -- "$bin" verify --trust "$pki/root.pem" \
		--crl "$pki/crls.pem" --in "$tmp/altered.eml"
	expect 0 "$key: encrypt to the token's certificate" -- "$bin" encrypt --to "$pki/$key.pem" \
		--in "$msg" --out "$tmp/enc-$key.eml"
	check "  ... the body is not in the clear" sh -c "! grep -q 'by the installed p11smime' '$tmp/enc-$key.eml'"
	expect 0 "$key: decrypt on the token" -- p11s decrypt --in "$tmp/enc-$key.eml" \
		--out "$tmp/dec-$key.eml"
	check "  ... gives the message back" grep -q "Signed and encrypted by the installed p11smime" \
		"$tmp/dec-$key.eml"
done
expect 2 "the fault-injecting mock backend is not in the package (usage error)" -- \
	"$bin" --backend mock tokens
expect 0 "p11smime-client (no agent: it runs the installed p11smime) signs" -- \
	/usr/bin/p11smime-client --module "$module" --pin-source "file:$pinfile" --agent never \
	sign --key "$(keyuri ec256)" --chain "$pki/intermediate.pem" --in "$(message ec256)" \
	--out "$tmp/client.eml"
expect 0 "  ... and the signature verifies" -- "$bin" verify --trust "$pki/root.pem" \
	--in "$tmp/client.eml"
check "bash completion of p11smime loads" bash -c \
	'. /usr/share/bash-completion/completions/p11smime && complete -p p11smime >/dev/null'
for page in man1/p11smime.1 man1/p11smime-client.1 man1/p11smime-gpg.1 \
	man5/p11smime-gateway.conf.5 man8/p11smime-gateway.8; do
	check "manual page $page installed" test -s "/usr/share/man/$page.gz"
done

# --- 3. the development package
expect 0 "pkg-config finds p11smime" -- pkg-config --modversion p11smime
check "  ... version $version" grep -qx "$version" "$tmp/out"
# shellcheck disable=SC2046 # pkg-config's words are separate options
expect 0 "a C program compiles with pkg-config --cflags --libs p11smime" -- \
	cc -std=c11 -Wall -Wextra -Werror -o "$tmp/consumer" "$here/consumer.c" \
	$(pkg-config --cflags --libs p11smime)
expect 0 "  ... and signs on the token through the installed library" -- \
	"$tmp/consumer" "$module" "$(keyuri rsa2048)" "$pinfile" "$(message rsa2048)" "$tmp/consumer.eml"
check "  ... reports version $version" grep -qx "version $version" "$tmp/out"
check "  ... the shipped library has no mock backend" sh -c "! grep -qx 'backend mock' '$tmp/out'"
check "  ... and has the pkcs11 backend" grep -qx "backend pkcs11" "$tmp/out"
# The program signs with the default options (no chain): the verifiers get the intermediate
# (openssl cms of OpenSSL 3.0 has no -untrusted: chain.pem is intermediate and root).
expect 0 "  ... its signature verifies with the installed p11smime" -- "$bin" verify \
	--trust "$pki/root.pem" --certs "$pki/intermediate.pem" --in "$tmp/consumer.eml"
expect 0 "  ... and with openssl cms" -- openssl cms -verify -in "$tmp/consumer.eml" \
	-CAfile "$pki/chain.pem" -out /dev/null
check "  ... it loads the packaged $syslib" loads_syslib "$tmp/consumer"
expect 0 "find_package(p11smime 0.1) configures a CMake project" -- \
	cmake -S "$here/cmake-consumer" -B "$tmp/cmake-consumer" -DP11S_CONSUMER_SOURCE="$here/consumer.c"
expect 0 "  ... which builds" -- cmake --build "$tmp/cmake-consumer"
expect 0 "  ... and signs on the token" -- "$tmp/cmake-consumer/consumer" "$module" \
	"$(keyuri ec256)" "$pinfile" "$(message ec256)" "$tmp/cmake.eml"
expect 0 "  ... its signature verifies" -- "$bin" verify --trust "$pki/root.pem" \
	--certs "$pki/intermediate.pem" --in "$tmp/cmake.eml"

# --- 4. the gateway
unit=/lib/systemd/system/p11smime-gateway.service
expect 0 "systemd-analyze verify $unit" -- systemd-analyze verify "$unit"
if [ -s "$tmp/err" ]; then sed 's/^/#   systemd-analyze: /' "$tmp/err"; fi
check "the system user p11smime exists (sysusers.d)" sh -c "getent passwd p11smime >/dev/null"
check "  ... with home /var/lib/p11smime and no login shell" sh -c \
	"getent passwd p11smime | grep -q ':/var/lib/p11smime:/usr/sbin/nologin$'"
check "/var/lib/p11smime belongs to p11smime (tmpfiles.d)" sh -c \
	"[ \"\$(stat -c %U:%a /var/lib/p11smime)\" = p11smime:750 ]"
check "/etc/p11smime/gateway.conf is a conffile" sh -c \
	"dpkg-query -W -f='\${Conffiles}' p11smime-gateway | grep -q ' /etc/p11smime/gateway.conf '"
check "  ... every setting in it is commented out" sh -c \
	"! grep -Ev '^[[:space:]]*(#|\\[|\$)' /etc/p11smime/gateway.conf | grep -q ."
check "the unit is installed, neither enabled nor started" sh -c \
	"[ ! -e /etc/systemd/system/multi-user.target.wants/p11smime-gateway.service ]"
expect 2 "p11smime-gateway refuses the commented configuration (no milter socket)" -- \
	/usr/sbin/p11smime-gateway --config /etc/p11smime/gateway.conf --check
check "  ... in one line" test "$(wc -l <"$tmp/err")" -eq 1

# --- 5. purge
"$top/tokens/remove-token.sh" "$tmp/token" >/dev/null 2>&1
start=$SECONDS
purge
ok "apt-get purge of the four packages ($((SECONDS - start)) s)"
for p in "${packages[@]}"; do
	check "$p is not installed, no config-files left" sh -c \
		"! dpkg-query -W -f='\${Status}' $p 2>/dev/null | grep -Eq 'installed|config-files'"
done
left=$(while read -r p; do
	if [ -e "$p" ] || [ -L "$p" ]; then echo "$p"; fi
done < <(sort -u "$tmp/listed" "$tmp/paths" | comm -23 - "$tmp/before"))
if [ -z "$left" ]; then
	ok "every file and directory the packages installed is gone ($(comm -23 <(sort -u "$tmp/listed" "$tmp/paths") "$tmp/before" | wc -l) paths)"
else
	not_ok "left behind after the purge:"
	echo "$left" | sed 's/^/#   /'
fi
for d in /etc/p11smime /var/lib/p11smime /run/p11smime; do
	check "$d is gone" test ! -e "$d"
done
if getent passwd p11smime >/dev/null; then
	echo "# the system user p11smime remains (Debian policy 9.2.2: system users are not removed)"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
