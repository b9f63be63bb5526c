#!/bin/bash
# RFC 9788 header protection (issue 20, docs/sign.md and docs/verify.md "Header protection")
# on the throwaway token (on by default, CLI.md): sign puts copies of the header fields into the
# signed entity with hp="clear"; verify reports them, says where the outer ones differ, and
# checks the protected From (RFC 8550); openssl cms still verifies (backward compatible).
# usage: protect.sh   (environment from tests/CMakeLists.txt: P11S_BIN, P11S_TEST_*)
set -eu
backend=pkcs11
. "$(dirname "$0")/lib.sh"

rsa=$(keyuri rsa2048)
m=$tmp/msg.eml
printf 'Received: from relay.example.org by mx.example.org\nFrom: Alice <alice-rsa2048@example.org>\nTo: Bob <bob@example.org>\nCc: carol@example.org\nSubject: quarterly figures\nDate: %s\nMessage-ID: <hp-1@example.org>\nMIME-Version: 1.0\nContent-Type: text/plain;\n charset=us-ascii\n\nthe figures\n' \
	"$(date -R)" >"$m"
# entity FILE: the signed entity's header section (multipart/signed part 1), LF line ends.
entity() { awk '/^------p11smime-/ {n++; next} n == 1' "$1" | tr -d '\r' | sed '/^$/q'; }
vjson() { "$bin" --json verify --trust "$pki/root.pem" --in "$1" "${@:2}"; }

expect 0 "sign --protect-headers" -- p11s sign --protect-headers --key "$rsa" \
	--chain "$pki/intermediate.pem" --in "$m" --out "$tmp/hp.eml"
entity "$tmp/hp.eml" >"$tmp/entity"
check "  ... the entity's Content-Type says hp=\"clear\" (RFC 9788 §2.1.1)" \
	grep -q 'charset=us-ascii; hp="clear"$' "$tmp/entity"
for f in "From: Alice <alice-rsa2048@example.org>" "To: Bob <bob@example.org>" \
	"Cc: carol@example.org" "Subject: quarterly figures" "Message-ID: <hp-1@example.org>"; do
	check "  ... the entity carries $f" grep -qxF "$f" "$tmp/entity"
done
check "  ... and the Date" grep -q "^Date: " "$tmp/entity"
check "  ... but no trace field (Received)" sh -c "! grep -q '^Received:' '$tmp/entity'"
check "  ... the outer header is unchanged (Subject, Received stay)" sh -c \
	"sed '/^\r\?$/q' '$tmp/hp.eml' | grep -q '^Subject: quarterly figures' &&
	 sed '/^\r\?$/q' '$tmp/hp.eml' | grep -q '^Received: '"
openssl cms -verify -in "$tmp/hp.eml" -CAfile "$pki/root.pem" -out "$tmp/inner" 2>/dev/null &&
	ok "  ... openssl cms verifies it (legacy readers see a part with extra fields)" ||
	not_ok "  ... openssl cms refuses it"

expect 0 "verify: valid" -- vjson "$tmp/hp.eml"
check "  ... header_protection.hp = clear" jq -e '.header_protection.hp == "clear"' "$tmp/out"
check "  ... the protected Subject is reported" jq -e \
	'[.header_protection.fields[] | select(.name == "Subject") | .value] == ["quarterly figures"]' "$tmp/out"
check "  ... no field differs" jq -e '.header_protection.differs == []' "$tmp/out"
expect 0 "verify (text) names the protected fields" -- "$bin" verify --trust "$pki/root.pem" \
	--in "$tmp/hp.eml"
check "  ... header protection: hp=clear" grep -q "^header protection: hp=clear, 6 protected fields" "$tmp/out"

# An outer Subject changed in transit (a list's tag): still valid, the difference reported.
sed '0,/^Subject: quarterly figures/s//Subject: [list] quarterly figures/' "$tmp/hp.eml" >"$tmp/subj.eml"
expect 0 "outer Subject altered in transit: the signature still verifies" -- vjson "$tmp/subj.eml"
check "  ... the difference is reported (outer vs protected)" jq -e \
	'.header_protection.differs == [{"name":"Subject","protected":"quarterly figures","outer":"[list] quarterly figures","exposed_by_sender":false}]' "$tmp/out"
check "  ... as a warning protected-header-differs" jq -e \
	'[.warnings[].code] | index("protected-header-differs") != null' "$tmp/out"

# An outer From forged after signing: the address check uses the signed From.
sed '0,/^From: Alice <alice-rsa2048@example.org>/s//From: Mallory <mallory@example.org>/' \
	"$tmp/hp.eml" >"$tmp/from.eml"
expect 0 "outer From forged: the RFC 8550 check uses the protected From (valid)" -- vjson "$tmp/from.eml"
check "  ... and the forged outer From is reported" jq -e \
	'[.header_protection.differs[] | select(.name == "From") | .outer] == ["Mallory <mallory@example.org>"]' "$tmp/out"
# A signer who signs someone else's From: the protected From fails the check.
sed 's/^From: Alice <alice-rsa2048@example.org>/From: Eve <eve@example.org>/' "$m" >"$tmp/eve.eml"
expect 0 "sign a message whose From is not the signer's" -- p11s sign --protect-headers \
	--key "$rsa" --chain "$pki/intermediate.pem" --in "$tmp/eve.eml" --out "$tmp/eve-hp.eml"
sed '0,/^From: Eve <eve@example.org>/s//From: Alice <alice-rsa2048@example.org>/' \
	"$tmp/eve-hp.eml" >"$tmp/eve-outer.eml"
expect 1 "  ... the outer From set to the signer's does not make it valid (exit 1)" -- \
	vjson "$tmp/eve-outer.eml"
check "  ... reason address-mismatch" jq -e \
	'[.signers[0].reasons[].code] | index("address-mismatch") != null' "$tmp/out"

# Opaque, and a body that needs re-encoding (the GMime path): both protected.
expect 0 "sign --protect-headers --opaque" -- p11s sign --protect-headers --opaque --key "$rsa" \
	--chain "$pki/intermediate.pem" --in "$m" --out "$tmp/op.eml"
expect 0 "  ... verify reads the protection from the eContent" -- vjson "$tmp/op.eml"
check "  ... hp clear" jq -e '.header_protection.hp == "clear"' "$tmp/out"
printf 'From: alice-rsa2048@example.org\nSubject: caf\xc3\xa9\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\ncaf\xc3\xa9 cr\xc3\xa8me\n' >"$tmp/8bit.eml"
expect 0 "sign --protect-headers, an 8-bit body re-encoded" -- p11s sign --protect-headers \
	--key "$rsa" --chain "$pki/intermediate.pem" --in "$tmp/8bit.eml" --out "$tmp/8bit-hp.eml"
expect 0 "  ... verifies, hp clear" -- vjson "$tmp/8bit-hp.eml"
check "  ... with its protected Subject" jq -e \
	'.header_protection.hp == "clear" and ([.header_protection.fields[].name] | index("Subject") != null)' "$tmp/out"

# Encryption (RFC 9788 §2.1.1, §2.2, §3.2.1): hp="cipher", HP-Outer, the outer Subject "[...]".
expect 0 "encrypt --protect-headers" -- "$bin" encrypt --protect-headers --to "$pki/rsa2048.pem" \
	--to "$pki/keyenc-only.pem" --in "$m" --out "$tmp/enc.eml"
check "  ... the outer Subject is [...]" grep -qx 'Subject: \[...\]' "$tmp/enc.eml"
check "  ... nothing else of the Subject outside" sh -c "! grep -q 'quarterly' '$tmp/enc.eml'"
openssl cms -decrypt -inkey "$pki/keyenc-only.key" -recip "$pki/keyenc-only.pem" -in "$tmp/enc.eml" \
	-out "$tmp/payload" 2>/dev/null && ok "  ... openssl cms decrypts it (a legacy reader)" ||
	not_ok "  ... openssl cms cannot decrypt it"
tr -d '\r' <"$tmp/payload" | sed '/^$/q' >"$tmp/payload.head"
check "  ... the payload says hp=\"cipher\"" grep -q 'hp="cipher"' "$tmp/payload.head"
check "  ... carries the real Subject" grep -qx 'Subject: quarterly figures' "$tmp/payload.head"
check "  ... and HP-Outer for each exposed field (Subject: [...])" grep -qxF 'HP-Outer: Subject: [...]' \
	"$tmp/payload.head"
check "  ... HP-Outer: From" grep -qxF 'HP-Outer: From: Alice <alice-rsa2048@example.org>' "$tmp/payload.head"
expect 0 "decrypt on the token: the message a reader should see" -- p11s decrypt --key "$rsa" \
	--in "$tmp/enc.eml" --out "$tmp/dec.eml"
tr -d '\r' <"$tmp/dec.eml" | sed '/^$/q' >"$tmp/dec.head"
check "  ... one Subject, the protected one" sh -c "[ \$(grep -c '^Subject:' '$tmp/dec.head') = 1 ] &&
	grep -qx 'Subject: quarterly figures' '$tmp/dec.head'"
check "  ... no HP-Outer left" sh -c "! grep -q '^HP-Outer:' '$tmp/dec.head'"
check "  ... the trace field from outside stays" grep -q '^Received: ' "$tmp/dec.head"
check "  ... the body" grep -q '^the figures' "$tmp/dec.eml"
expect 0 "decrypt --json reports the header protection" -- p11s --json decrypt --key "$rsa" \
	--in "$tmp/enc.eml" --out "$tmp/dec2.eml"
check "  ... hp cipher, the protected Subject, no HP-Outer among the fields" jq -e \
	'.header_protection.hp == "cipher" and .header_protection_signed_payload == false and
	([.header_protection.fields[] | select(.name == "Subject") | .value] == ["quarterly figures"]) and
	([.header_protection.fields[] | select(.name == "HP-Outer")] == [])' "$tmp/out"
check "  ... the outer Subject [...] differs, exposed by the sender" jq -e \
	'[.header_protection.differs[] | select(.name == "Subject") | [.outer, .exposed_by_sender]] == [["[...]", true]]' "$tmp/out"
check "  ... no warning" sh -c "! grep -q 'protected-header-differs' '$tmp/err'"
sed '0,/^To: /s/^To: .*/To: Mallory <mallory@example.org>/' "$tmp/enc.eml" >"$tmp/enc-to.eml"
expect 0 "decrypt of a message whose outer To was changed in transit" -- p11s --json decrypt \
	--key "$rsa" --in "$tmp/enc-to.eml" --out "$tmp/dec3.eml"
check "  ... To differs, not exposed by the sender" jq -e \
	'[.header_protection.differs[] | select(.name == "To") | [.outer, .exposed_by_sender]] == [["Mallory <mallory@example.org>", false]]' "$tmp/out"
check "  ... a warning protected-header-differs naming To" grep -q 'protected-header-differs: the outer To' "$tmp/err"
check "  ... the output has the protected To" sh -c "! grep -q 'Mallory' '$tmp/dec3.eml'"

# Another implementation's bytes: RFC 9788's own payloads (Appendix C.3.1.2, the payload of
# smime-signed-enc-hp-baseline once its layers are off; Appendix E.1, a Legacy Display
# Element), encrypted by openssl cms to the token's key under the outer header the RFC gives.
rfc_msg() { # PAYLOAD OUTER OUT: openssl encrypts PAYLOAD; OUTER's fields go on top
	openssl cms -encrypt -aes-256-cbc -in "$1" -out "$tmp/rfc.p7m" "$pki/rsa2048.pem"
	{ cat "$2"; cat "$tmp/rfc.p7m"; } >"$3"
}
printf '%s\n' 'MIME-Version: 1.0' 'Content-Transfer-Encoding: 7bit' \
	'Subject: smime-signed-enc-hp-baseline' 'Message-ID: <smime-signed-enc-hp-baseline@example>' \
	'From: Alice <alice@smime.example>' 'To: Bob <bob@smime.example>' \
	'Date: Sat, 20 Feb 2021 10:09:02 -0500' 'User-Agent: Sample MUA Version 1.0' \
	'HP-Outer: Subject: [...]' 'HP-Outer: Message-ID: <smime-signed-enc-hp-baseline@example>' \
	'HP-Outer: From: Alice <alice@smime.example>' 'HP-Outer: To: Bob <bob@smime.example>' \
	'HP-Outer: Date: Sat, 20 Feb 2021 10:09:02 -0500' 'HP-Outer: User-Agent: Sample MUA Version 1.0' \
	'Content-Type: text/plain; charset="utf-8"; hp="cipher"' '' 'This is the' \
	'smime-signed-enc-hp-baseline' 'message.' >"$tmp/rfc-c312"
printf '%s\n' 'Subject: [...]' 'Message-ID: <smime-signed-enc-hp-baseline@example>' \
	'From: Alice <alice@smime.example>' 'To: Bob <bob@smime.example>' \
	'Date: Sat, 20 Feb 2021 10:09:02 -0500' 'User-Agent: Sample MUA Version 1.0' >"$tmp/rfc-c312.outer"
rfc_msg "$tmp/rfc-c312" "$tmp/rfc-c312.outer" "$tmp/rfc-c312.eml"
expect 0 "RFC 9788 C.3.1.2 payload (encrypted by openssl): decrypt --json" -- p11s --json decrypt \
	--key "$rsa" --in "$tmp/rfc-c312.eml" --out "$tmp/rfc-c312.dec"
check "  ... hp cipher; Subject, From and User-Agent among the protected fields, no HP-Outer" jq -e \
	'.header_protection.hp == "cipher" and
	([.header_protection.fields[] | select(.name == "Subject" or .name == "User-Agent") | .value] ==
	 ["smime-signed-enc-hp-baseline", "Sample MUA Version 1.0"]) and
	([.header_protection.fields[] | select(.name == "HP-Outer")] == [])' "$tmp/out"
check "  ... only the Subject differs outside, exposed by the sender" jq -e \
	'[.header_protection.differs[] | [.name, .outer, .exposed_by_sender]] == [["Subject", "[...]", true]]' "$tmp/out"
tr -d '\r' <"$tmp/rfc-c312.dec" | sed '/^$/q' >"$tmp/rfc-c312.head"
check "  ... rendered: the real Subject in the obscured one's place, one of each field" sh -c \
	"sed -n 1p '$tmp/rfc-c312.head' | grep -qx 'Subject: smime-signed-enc-hp-baseline' &&
	[ \$(grep -c '^User-Agent:' '$tmp/rfc-c312.head') = 1 ] && ! grep -q 'HP-Outer\|hp=' '$tmp/rfc-c312.head'"
check "  ... the body" grep -q '^smime-signed-enc-hp-baseline' "$tmp/rfc-c312.dec"
printf '%s\n' 'Date: Fri, 21 Jan 2022 20:40:48 -0500' 'From: Alice <alice@example.net>' \
	'To: Bob <bob@example.net>' 'Subject: Dinner plans' \
	'Message-ID: <text-plain-legacy-display@lhp.example>' 'MIME-Version: 1.0' \
	'Content-Type: text/plain; charset="us-ascii"; hp-legacy-display="1";' ' hp="cipher"' \
	'HP-Outer: Date: Fri, 21 Jan 2022 20:40:48 -0500' 'HP-Outer: From: Alice <alice@example.net>' \
	'HP-Outer: To: Bob <bob@example.net>' 'HP-Outer: Subject: [...]' \
	'HP-Outer: Message-ID: <text-plain-legacy-display@lhp.example>' '' 'Subject: Dinner plans' '' \
	"Let's meet at Rama's Roti Shop at 8pm and go to the park" 'from there.' >"$tmp/rfc-e1"
printf '%s\n' 'Date: Fri, 21 Jan 2022 20:40:48 -0500' 'From: Alice <alice@example.net>' \
	'To: Bob <bob@example.net>' 'Subject: [...]' \
	'Message-ID: <text-plain-legacy-display@lhp.example>' >"$tmp/rfc-e1.outer"
rfc_msg "$tmp/rfc-e1" "$tmp/rfc-e1.outer" "$tmp/rfc-e1.eml"
expect 0 "RFC 9788 E.1 (a Legacy Display Element, encrypted by openssl): decrypt" -- p11s decrypt \
	--key "$rsa" --in "$tmp/rfc-e1.eml" --out "$tmp/rfc-e1.dec"
check "  ... the element is gone (§4.5.3.2), the text stays" bash -c "tr -d '\r' <'$tmp/rfc-e1.dec' |
	sed '1,/^\$/d' | cmp -s - <(printf \"%s\\n\" \"Let's meet at Rama's Roti Shop at 8pm and go to the park\" 'from there.')"
check "  ... the Subject is the real one, once, and no hp parameter is left" sh -c \
	"tr -d '\r' <'$tmp/rfc-e1.dec' | sed '/^\$/q' >'$tmp/rfc-e1.head' &&
	[ \$(grep -c '^Subject:' '$tmp/rfc-e1.head') = 1 ] && grep -qx 'Subject: Dinner plans' '$tmp/rfc-e1.head' &&
	! grep -q 'hp=\\|hp-legacy-display=' '$tmp/rfc-e1.head'"

# wrap: the inner signed entity is the payload (hp="cipher"); the layers around add none.
expect 0 "wrap --protect-headers" -- p11s wrap --protect-headers --key "$rsa" \
	--chain "$pki/intermediate.pem" --to "$pki/rsa2048.pem" --in "$m" --out "$tmp/wrap.eml"
check "  ... the outer Subject is [...]" sh -c "tr -d '\r' <'$tmp/wrap.eml' | grep -qx 'Subject: \[...\]'"
expect 0 "  ... unwrap verifies and decrypts" -- p11s --json unwrap --key "$rsa" \
	--trust "$pki/root.pem" --in "$tmp/wrap.eml"
expect 0 "  ... decrypted, the inner signature" -- p11s decrypt --key "$rsa" --in "$tmp/wrap.eml" \
	--out "$tmp/wrap-inner.eml"
expect 0 "wrap --protect-headers to a software recipient" -- p11s wrap --protect-headers --key "$rsa" \
	--chain "$pki/intermediate.pem" --to "$pki/keyenc-only.pem" --in "$m" --out "$tmp/wrap2.eml"
expect 0 "  ... verifies with hp=cipher, the real Subject protected" -- vjson "$tmp/wrap-inner.eml"
check "  ... hp cipher, Subject quarterly figures" jq -e '.header_protection.hp == "cipher" and
	([.header_protection.fields[] | select(.name == "Subject") | .value] == ["quarterly figures"])' "$tmp/out"
check "  ... decrypt put the protected fields outside: nothing differs, no warning" jq -e \
	'.header_protection.differs == [] and ([.warnings[].code] | index("protected-header-differs") == null)' "$tmp/out"
check "  ... one Subject on the decrypted message, the real one" sh -c "tr -d '\r' <'$tmp/wrap-inner.eml' |
	sed '/^\$/q' | grep -c '^Subject:' | grep -qx 1 && tr -d '\r' <'$tmp/wrap-inner.eml' | sed '/^\$/q' |
	grep -qx 'Subject: quarterly figures'"
# The obscured Subject as it travelled: exposed by the sender (HP-Outer), so no warning.
openssl cms -decrypt -inkey "$pki/keyenc-only.key" -recip "$pki/keyenc-only.pem" -in "$tmp/wrap2.eml" \
	-out "$tmp/wrap2-raw.eml" 2>/dev/null
{ tr -d '\r' <"$tmp/wrap2.eml" | sed '/^$/q' | grep -v -i '^\(content-\|mime-version\)' | sed '/^$/d'
  echo "MIME-Version: 1.0"; cat "$tmp/wrap2-raw.eml"; } >"$tmp/wrap2-legacy.eml"
expect 0 "  ... decrypted by a legacy tool (outer Subject [...] kept): verifies" -- vjson "$tmp/wrap2-legacy.eml"
check "  ... Subject listed as differing, exposed by the sender (HP-Outer), no warning" jq -e \
	'([.header_protection.differs[] | select(.name == "Subject") | [.outer, .exposed_by_sender]] == [["[...]", true]]) and ([.warnings[].code] | index("protected-header-differs") == null)' "$tmp/out"
# hp="cipher" excuses only what HP-Outer says the sender exposed: a To changed later warns.
sed '0,/^To: Bob <bob@example.org>/s//To: Mallory <mallory@example.org>/' "$tmp/wrap-inner.eml" \
	>"$tmp/wrap-to.eml"
expect 0 "  ... an outer To changed after decryption" -- vjson "$tmp/wrap-to.eml"
check "  ... is a warning even with hp=cipher" jq -e \
	'[.warnings[] | select(.code == "protected-header-differs") | .message | test("To")] == [true]' "$tmp/out"

# On by default (CLI.md); --no-protect-headers gives the RFC 8551 entity: Content-* and body.
expect 0 "sign without --protect-headers" -- p11s sign --key "$rsa" --chain "$pki/intermediate.pem" \
	--in "$m" --out "$tmp/default.eml"
check "  ... protected by default: hp=\"clear\" and the copies" sh -c \
	"grep -q 'hp=\"clear\"' '$tmp/default.eml' && [ \$(grep -c '^Subject:' '$tmp/default.eml') = 2 ]"
expect 0 "sign --no-protect-headers" -- p11s sign --no-protect-headers --key "$rsa" \
	--chain "$pki/intermediate.pem" --in "$m" --out "$tmp/plain.eml"
check "  ... no hp, no copies" sh -c "! grep -q 'hp=' '$tmp/plain.eml' && [ \$(grep -c '^Subject:' '$tmp/plain.eml') = 1 ]"
expect 0 "  ... verify: header_protection null" -- vjson "$tmp/plain.eml"
check "  ... null" jq -e '.header_protection == null' "$tmp/out"
# Header fields inside an entity without hp are not presented as protected.
mkdir -p "$tmp/cfg/p11smime"
printf 'protect-headers = yes\n' >"$tmp/cfg/p11smime/config"
expect 0 "config protect-headers = yes: protected without the option" -- env XDG_CONFIG_HOME="$tmp/cfg" \
	"$bin" --backend "$backend" --module "$mod" --pin-source "file:$pinfile" sign --key "$rsa" \
	--chain "$pki/intermediate.pem" --in "$m" --out "$tmp/cfg.eml"
check "  ... hp=\"clear\"" grep -q 'hp="clear"' "$tmp/cfg.eml"
printf 'protect-headers = no\n' >"$tmp/cfg/p11smime/config"
for cmd in sign wrap; do
	args=(--key "$rsa" --chain "$pki/intermediate.pem")
	[ "$cmd" = wrap ] && args+=(--to "$pki/rsa2048.pem")
	expect 0 "config protect-headers = no: $cmd leaves the headers alone" -- env \
		XDG_CONFIG_HOME="$tmp/cfg" "$bin" --backend "$backend" --module "$mod" \
		--pin-source "file:$pinfile" "$cmd" "${args[@]}" --in "$m" --out "$tmp/cfg-$cmd.eml"
	check "  ... the outer Subject is the real one" grep -q '^Subject: quarterly figures' "$tmp/cfg-$cmd.eml"
done
expect 0 "config protect-headers = no: decrypt of the wrap gives no hp" -- env \
	XDG_CONFIG_HOME="$tmp/cfg" "$bin" --backend "$backend" --module "$mod" \
	--pin-source "file:$pinfile" decrypt --key "$rsa" --in "$tmp/cfg-wrap.eml" --out "$tmp/cfg-dec.eml"
check "  ... not in the signed entity either" sh -c "! grep -q 'hp=' '$tmp/cfg-dec.eml'"
expect 0 "encrypt --no-protect-headers" -- "$bin" encrypt --no-protect-headers \
	--to "$pki/rsa2048.pem" --in "$m" --out "$tmp/enc-plain.eml"
check "  ... the outer Subject stays" grep -q '^Subject: quarterly figures' "$tmp/enc-plain.eml"
expect 0 "  ... decrypt --json" -- p11s --json decrypt --key "$rsa" --in "$tmp/enc-plain.eml" \
	--out "$tmp/dec4.eml"
check "  ... header_protection null" jq -e '.header_protection == null' "$tmp/out"
printf 'protect-headers = maybe\n' >"$tmp/cfg/p11smime/config"
expect 2 "config protect-headers = maybe: exit 2" -- env XDG_CONFIG_HOME="$tmp/cfg" \
	"$bin" --backend "$backend" --module "$mod" --pin-source "file:$pinfile" sign --key "$rsa" \
	--in "$m" --out "$tmp/cfg2.eml"
finish
