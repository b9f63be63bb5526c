#!/bin/bash
# Git commit and tag signing with token keys (docs/git.md, issue 16), with real git running
# p11smime-gpg as gpg.x509.program on the throwaway SoftHSMv2 token, without the agent: the
# PIN source, module, trust anchors and CRLs come from the configuration file.
#   1. commit -S, verify-commit, log --show-signature, %G? %GK %GF %GS %GT, tag -s,
#      verify-tag, merge --verify-signatures (signed passes, unsigned is refused),
#      gpg.minTrustLevel, every kind of user.signingkey;
#   2. a tampered commit object fails; an unknown key fails commit -S with a message; an
#      untrusted signer fails; bad arguments fail with exit 2;
#   3. expired and revoked signer certificates (software keys of the test PKI signing through
#      openssl cms) give EXPKEYSIG / REVKEYSIG and fail;
#   4. a commit signed with an RFC 3161 time-stamp (real TSA on loopback) still verifies once
#      the signer certificate has expired (--faked-system-time), one without does not;
#   5. gpgsm in a private GNUPGHOME verifies p11smime-gpg's commit signature through git, and
#      p11smime-gpg verifies a commit that gpgsm signed through git.
. "$(dirname "$0")/../interop/common.sh"
need git gpgsm gpg-agent gpgconf openssl python3

gpgbin=$P11S_GPG_BIN
src=$P11S_SOURCE_DIR
export HOME=$tmp/home XDG_CONFIG_HOME=$tmp/xdg GIT_CONFIG_NOSYSTEM=1 GNUPGHOME=$tmp/gnupg
mkdir -p "$HOME" "$XDG_CONFIG_HOME/p11smime"
mkdir -m 700 "$GNUPGHOME"
trap 'gpgconf --kill all >/dev/null 2>&1 || true; [ -n "${tsa_dir:-}" ] && "$src/tests/evidence/tsa.sh" stop "$tsa_dir" >/dev/null 2>&1; rm -rf "$tmp"' EXIT

# The configuration file p11smime-gpg reads (docs/git.md): no agent, PIN from a file.
conf=$XDG_CONFIG_HOME/p11smime/config
cat >"$conf" <<EOT
module = $mod
pin-source = file:$pinfile
trust = $pki/root.pem
certs = $pki/intermediate.pem
crl = $pki/crls.pem
EOT

git config --global user.name "Alice"
git config --global user.email "alice-rsa2048@example.org"
git config --global init.defaultBranch main
# The three lines of docs/git.md.
git config --global gpg.format x509
git config --global gpg.x509.program "$gpgbin"
git config --global user.signingkey alice-rsa2048@example.org

fpr() { openssl x509 -in "$1" -noout -fingerprint -"${2:-sha1}" | sed 's/.*=//; s/://g'; }
fpr_rsa=$(fpr "$pki/rsa2048.pem")

repo=$tmp/repo
git init -q "$repo"
cd "$repo"
g() { git "$@"; }

# --- 1. sign and verify through git
echo one >file
git add file
expect 0 "git commit -S (user.signingkey = e-mail address)" -- git commit -q -S -m "signed one"
check "  ... the commit carries a PEM CMS signature" sh -c \
	"git cat-file commit HEAD | grep -q '^gpgsig -----BEGIN SIGNED MESSAGE-----'"
expect 0 "git verify-commit HEAD" -- git verify-commit HEAD
check "  ... Good signature from the token certificate's subject" grep -q \
	'Good signature from "emailAddress=alice-rsa2048@example.org,CN=Alice rsa2048' "$tmp/err"
expect 0 "git verify-commit --raw HEAD" -- git verify-commit --raw HEAD
check "  ... NEWSIG first, then GOODSIG, VALIDSIG, TRUST_FULLY" sh -c \
	"head -1 '$tmp/err' | grep -qx '\[GNUPG:\] NEWSIG' &&
	 grep -q '^\[GNUPG:\] GOODSIG $fpr_rsa emailAddress=' '$tmp/err' &&
	 grep -q '^\[GNUPG:\] VALIDSIG $fpr_rsa ' '$tmp/err' &&
	 grep -qx '\[GNUPG:\] TRUST_FULLY 0 shell' '$tmp/err'"
expect 0 "git log --show-signature" -- git log --show-signature -1
check "  ... says Good signature" grep -q 'Good signature from' "$tmp/out"
expect 0 "git log --format=%G?..." -- git log -1 --format='%G?|%GK|%GF|%GT|%GS'
check "  ... G, key and fingerprint = SHA-1 of the certificate, trust fully" \
	grep -qx "G|$fpr_rsa|$fpr_rsa|fully|emailAddress=alice-rsa2048@example.org,CN=Alice rsa2048,O=p11smime test" "$tmp/out"

expect 0 "git tag -s" -- git tag -s v1 -m "release one"
check "  ... the tag carries a PEM CMS signature" sh -c \
	"git cat-file tag v1 | grep -q '^-----BEGIN SIGNED MESSAGE-----'"
expect 0 "git verify-tag v1" -- git verify-tag v1
check "  ... Good signature" grep -q 'Good signature from' "$tmp/err"

# Every form of user.signingkey (docs/git.md).
fpr256_ec=$(fpr "$pki/ec256.pem" sha256)
fpr_ec384=$(fpr "$pki/ec384.pem")
n=1
for key in "$fpr_rsa" "0x${fpr_rsa:24}" "${fpr_rsa:32}" "$fpr256_ec" "Alice <alice-ec256@example.org>" \
		"pkcs11:token=$label;object=rsa3072;type=private" "$fpr_ec384"; do
	n=$((n + 1))
	echo "$n" >file
	expect 0 "commit -S with user.signingkey '$key'" -- \
		git -c user.signingkey="$key" commit -q -a -S -m "signed $n"
	expect 0 "  ... verify-commit" -- git verify-commit HEAD
done
check "  ... the RSA-3072 commit was signed with rsa3072's certificate" sh -c \
	"git log --format='%GF %s' | grep -qx '$(fpr "$pki/rsa3072.pem") signed 7'"

# merge --verify-signatures: a signed branch merges, an unsigned one is refused.
git checkout -q -b feature
echo feature >f2
git add f2
git commit -q -S -m "feature, signed"
git checkout -q main
expect 0 "git merge --verify-signatures (signed branch)" -- \
	git merge -q --no-ff --verify-signatures -S -m "merge feature" feature
expect 0 "  ... the merge commit is signed and verifies" -- git verify-commit HEAD
git checkout -q -b unsigned
echo unsigned >f3
git add f3
git commit -q -m "feature, unsigned"
git checkout -q main
expect 128 "git merge --verify-signatures (unsigned branch): refused" -- \
	git merge -q --no-ff --verify-signatures -m "merge unsigned" unsigned
check "  ... git says it has no signature" grep -q 'does not have a GPG signature' "$tmp/err"

# gpg.minTrustLevel: the token's path is TRUST_FULLY.
expect 0 "gpg.minTrustLevel=fully: verify-commit passes" -- \
	git -c gpg.minTrustLevel=fully verify-commit HEAD
expect 1 "gpg.minTrustLevel=ultimate: verify-commit fails" -- \
	git -c gpg.minTrustLevel=ultimate verify-commit HEAD

# --- 2. failures
signed=$(git rev-parse HEAD)
git cat-file commit "$signed" | sed 's/^merge feature$/merge feature (altered)/' >"$tmp/tampered"
check "  (the tampered object differs)" sh -c "! git cat-file commit $signed | cmp -s - '$tmp/tampered'"
tampered=$(git hash-object -t commit -w "$tmp/tampered")
expect 1 "verify-commit of a tampered commit object fails" -- git verify-commit "$tampered"
expect 0 "  ... %G? of the tampered commit" -- git log -1 --format=%G? "$tampered"
check "  ... is B (BADSIG)" grep -qx B "$tmp/out"
expect 1 "  ... p11smime-gpg --verify: exit 1" -- sh -c \
	"git cat-file commit $tampered | sed -n '/^gpgsig /,/END SIGNED/p' | sed 's/^gpgsig //; s/^ //' >'$tmp/t.sig' &&
	 git cat-file commit $tampered | sed '/^gpgsig /,/END SIGNED/d' | '$gpgbin' --status-fd=1 --verify '$tmp/t.sig' -"
check "  ... BADSIG and no GOODSIG" sh -c \
	"grep -q '^\[GNUPG:\] BADSIG $fpr_rsa ' '$tmp/out' && ! grep -q GOODSIG '$tmp/out'"
check "  ... says the content was altered" grep -q 'content was altered' "$tmp/err"

echo five >file
expect 128 "commit -S with an unknown user.signingkey fails" -- \
	git -c user.signingkey=nobody@example.org commit -q -a -S -m "no key"
check "  ... git says the signing failed" grep -q 'gpg failed to sign the data' "$tmp/err"
check "  ... HEAD did not move" test "$(git rev-parse HEAD)" = "$signed"
expect 3 "p11smime-gpg -bsau nobody@example.org: exit 3" -- \
	sh -c "echo payload | '$gpgbin' --status-fd=2 -bsau nobody@example.org"
check "  ... one line saying that no token key matches" sh -c \
	"grep -c 'no key with a certificate on the token matches user.signingkey .nobody@example.org.' '$tmp/err' | grep -qx 1"
check "  ... nothing on stdout" test ! -s "$tmp/out"

# Without the trust anchor the signature is good but the signer unknown: git fails.
printf 'module = %s\npin-source = file:%s\n' "$mod" "$pinfile" >"$tmp/notrust.conf"
printf '#!/bin/sh\nexec "%s" --config "%s" "$@"\n' "$gpgbin" "$tmp/notrust.conf" >"$tmp/notrust.sh"
chmod +x "$tmp/notrust.sh"
expect 1 "untrusted signer (no trust anchor): verify-commit fails" -- \
	git -c gpg.x509.program="$tmp/notrust.sh" verify-commit --raw HEAD
check "  ... GOODSIG with TRUST_UNDEFINED 98 (not trusted), no TRUST_FULLY" sh -c \
	"grep -q '^\[GNUPG:\] TRUST_UNDEFINED 98$' '$tmp/err' && ! grep -q TRUST_FULLY '$tmp/err'"

expect 2 "p11smime-gpg --bogus: exit 2" -- "$gpgbin" --bogus
check "  ... invalid option" grep -q "invalid option '--bogus'" "$tmp/err"
expect 2 "p11smime-gpg -bsx: exit 2" -- "$gpgbin" -bsx
expect 2 "p11smime-gpg --verify SIG without data: exit 2" -- "$gpgbin" --verify "$tmp/t.sig"
expect 2 "p11smime-gpg --pin 1234: refused, a PIN is never an argument" -- "$gpgbin" --pin 1234
check "  ... says so" grep -q 'a PIN is never an argument' "$tmp/err"
echo garbage >"$tmp/garbage.sig"
expect 2 "p11smime-gpg --verify garbage: exit 2" -- sh -c "echo x | '$gpgbin' --status-fd=1 --verify '$tmp/garbage.sig' -"
check "  ... NEWSIG, NODATA, no GOODSIG" sh -c \
	"grep -q NODATA '$tmp/out' && ! grep -q GOODSIG '$tmp/out'"

# The configuration's trust/crl/certs are `p11smime verify`'s defaults when no --trust is given.
printf 'From: alice-rsa2048@example.org\r\nSubject: config\r\n\r\nhello\r\n' >"$tmp/plain.eml"
expect 0 "p11smime sign (config file: module, pin-source)" -- "$bin" sign \
	--key "$(keyuri rsa2048)" --in "$tmp/plain.eml" --out "$tmp/signed.eml"
expect 0 "p11smime verify without --trust: the config's trust anchors (and CRLs)" -- \
	"$bin" verify --in "$tmp/signed.eml"
check "  ... revocation was checked with the config's crl" grep -q '0: good (CRL of CN=p11smime Test Intermediate CA' "$tmp/out"
expect 1 "p11smime verify --trust OTHER: the config's anchors are not added" -- \
	"$bin" verify --trust "$pki/ec256.pem" --in "$tmp/signed.eml"
expect 1 "p11smime verify with a config without trust: untrusted" -- \
	"$bin" --config "$tmp/notrust.conf" verify --in "$tmp/signed.eml"

# --- 3. expired and revoked signers: a signing program that signs with a software key
# of the test PKI through openssl cms, as gpgsm would (detached, PEM "SIGNED MESSAGE").
cat >"$tmp/softsign.sh" <<'EOT'
#!/bin/sh
# softsign.sh CERT KEY CHAIN --status-fd=2 -bsau ID: git's signing call, answered by openssl.
cert=$1 key=$2 chain=$3
echo "[GNUPG:] BEGIN_SIGNING H8" >&2
openssl cms -sign -binary -md sha256 -signer "$cert" -inkey "$key" -certfile "$chain" \
	-outform PEM | sed 's/BEGIN CMS/BEGIN SIGNED MESSAGE/; s/END CMS/END SIGNED MESSAGE/' || exit 2
echo "[GNUPG:] SIG_CREATED D 1 8 00 0 -" >&2
EOT
chmod +x "$tmp/softsign.sh"
for s in "expired EXPKEYSIG Y" "revoked REVKEYSIG R"; do
	read -r who keyword letter <<<"$s"
	echo "$who" >file
	printf '#!/bin/sh\nexec "%s" "%s" "%s" "%s" "$@"\n' "$tmp/softsign.sh" "$pki/$who.pem" \
		"$pki/$who.key" "$pki/intermediate.pem" >"$tmp/sign-$who.sh"
	chmod +x "$tmp/sign-$who.sh"
	expect 0 "commit signed by the $who certificate's key (openssl cms)" -- \
		git -c gpg.x509.program="$tmp/sign-$who.sh" commit -q -a -S -m "by $who"
	expect 1 "  ... verify-commit fails" -- git verify-commit --raw HEAD
	check "  ... $keyword, no GOODSIG, no TRUST_FULLY" sh -c \
		"grep -q '^\[GNUPG:\] $keyword $(fpr "$pki/$who.pem") ' '$tmp/err' &&
		 ! grep -q 'GOODSIG\|TRUST_FULLY' '$tmp/err'"
	expect 0 "  ... %G?" -- git log -1 --format=%G?
	check "  ... is $letter" grep -qx "$letter" "$tmp/out"
	git reset -q --hard "$signed"
done

# --- 4. RFC 3161 time-stamps: history keeps verifying after the certificate expires.
tsa_dir=$tmp/tsa
tsa_url=$("$src/tests/evidence/tsa.sh" start "$tsa_dir" "$pki")
printf 'tsa = %s/good\n' "$tsa_url" >>"$conf"
git reset -q --hard "$signed"
echo stamped >file
expect 0 "commit -S with tsa = the loopback TSA (config key tsa)" -- \
	git commit -q -a -S -m "time-stamped"
stamped=$(git rev-parse HEAD)
expect 0 "  ... verify-commit now" -- git verify-commit HEAD
check "  ... reports the time-stamp" grep -q 'time-stamped .* by .*p11smime Test TSA' "$tmp/err"
sed -i '/^tsa = /d' "$conf"
echo unstamped >file
git commit -q -a -S -m "not time-stamped"
unstamped=$(git rev-parse HEAD)
# 800 days on: the token certificate (730 days) has expired, the CAs have not; the CRLs (30
# days) have, so this verifier has none.
later=$(($(date +%s) + 800 * 86400))
printf 'module = %s\npin-source = file:%s\ntrust = %s\ncerts = %s\n' "$mod" "$pinfile" \
	"$pki/root.pem" "$pki/intermediate.pem" >"$tmp/later.conf"
printf '#!/bin/sh\nexec "%s" --config "%s" --faked-system-time %s "$@"\n' "$gpgbin" \
	"$tmp/later.conf" "$later" >"$tmp/later.sh"
chmod +x "$tmp/later.sh"
expect 0 "after expiry: the time-stamped commit still verifies" -- \
	git -c gpg.x509.program="$tmp/later.sh" verify-commit --raw "$stamped"
check "  ... GOODSIG and TRUST_FULLY" sh -c \
	"grep -q '^\[GNUPG:\] GOODSIG ' '$tmp/err' && grep -q '^\[GNUPG:\] TRUST_FULLY' '$tmp/err'"
expect 1 "after expiry: the commit without a time-stamp fails" -- \
	git -c gpg.x509.program="$tmp/later.sh" verify-commit --raw "$unstamped"
check "  ... EXPKEYSIG, TRUST_UNDEFINED 101" sh -c \
	"grep -q '^\[GNUPG:\] EXPKEYSIG $fpr_rsa ' '$tmp/err' && grep -q '^\[GNUPG:\] TRUST_UNDEFINED 101$' '$tmp/err'"
"$src/tests/evidence/tsa.sh" stop "$tsa_dir" >/dev/null 2>&1 || true
tsa_dir=

# --- 5. gpgsm interop through git, in the private GNUPGHOME
printf 'disable-crl-checks\ndisable-dirmngr\n' >"$GNUPGHOME/gpgsm.conf"
printf 'allow-loopback-pinentry\n' >"$GNUPGHOME/gpg-agent.conf"
gpgsm --batch --import "$pki/root.pem" "$pki/intermediate.pem" 2>/dev/null
printf '%s S\n' "$(openssl x509 -in "$pki/root.pem" -noout -fingerprint -sha1 | sed 's/.*=//')" \
	>"$GNUPGHOME/trustlist.txt"
git reset -q --hard "$signed"
expect 0 "gpgsm verifies p11smime-gpg's commit signature (git -c gpg.x509.program=gpgsm)" -- \
	git -c gpg.x509.program=gpgsm verify-commit --raw HEAD
check "  ... gpgsm: GOODSIG $fpr_rsa, TRUST_FULLY" sh -c \
	"grep -q '^\[GNUPG:\] GOODSIG $fpr_rsa ' '$tmp/err' && grep -q '^\[GNUPG:\] TRUST_FULLY' '$tmp/err'"
expect 0 "gpgsm verifies the signed tag" -- git -c gpg.x509.program=gpgsm verify-tag v1

soft_cert gpgrsa rsa
p12 gpgrsa "$p12pass" -certpbe PBE-SHA1-3DES -keypbe PBE-SHA1-3DES -macalg sha1
expect 0 "gpgsm --import a software RSA key (PKCS#12)" -- gpgsm --batch --pinentry-mode loopback \
	--passphrase-fd 3 --import "$tmp/gpgrsa.p12" 3<"$p12pass"
printf '#!/bin/sh\nexec gpgsm --batch --pinentry-mode loopback --passphrase-fd 3 "$@" 3<"%s"\n' \
	"$p12pass" >"$tmp/gpgsm-sign.sh"
chmod +x "$tmp/gpgsm-sign.sh"
echo gpgsm >file
expect 0 "git commit -S signed by gpgsm" -- git -c gpg.x509.program="$tmp/gpgsm-sign.sh" \
	-c user.signingkey=gpgrsa@example.org commit -q -a -S -m "signed by gpgsm"
expect 0 "p11smime-gpg verifies gpgsm's commit signature" -- git verify-commit --raw HEAD
check "  ... GOODSIG $(fpr "$tmp/gpgrsa.pem"), TRUST_FULLY" sh -c \
	"grep -q '^\[GNUPG:\] GOODSIG $(fpr "$tmp/gpgrsa.pem") ' '$tmp/err' && grep -q '^\[GNUPG:\] TRUST_FULLY' '$tmp/err'"
gpgsm_commit=$(git rev-parse HEAD)
git cat-file commit "$gpgsm_commit" | sed 's/^signed by gpgsm$/signed by gpgsn/' >"$tmp/tampered2"
expect 1 "  ... and fails when the commit is altered" -- \
	git verify-commit "$(git hash-object -t commit -w "$tmp/tampered2")"

finish
