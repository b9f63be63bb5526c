#!/usr/bin/python3
"""Staple an OCSP response into a signed message (RFC 5940 §2: RevocationInfoChoice other,
id-ri-ocsp-response) for tests/revocation/revocation.sh, with asn1crypto. The SignedData's
revocation information is not signed, so the signature still verifies.

usage: staple.py MESSAGE.eml OCSP-RESPONSE.der OUT.eml   (multipart/signed from openssl cms)"""
import base64
import re
import sys

from asn1crypto import cms, ocsp


def main(argv):
    if len(argv) != 4:
        sys.stderr.write(__doc__ + "\n")
        return 2
    raw = open(argv[1], "rb").read()
    resp = ocsp.OCSPResponse.load(open(argv[2], "rb").read())
    boundary = re.search(rb'boundary="?([^";\r\n]+)"?', raw).group(1)
    start = re.search(rb"(?mi)^Content-Type: *application/(x-)?pkcs7-signature", raw).end()
    body = re.search(rb"\r?\n\r?\n", raw[start:]).end() + start
    end = raw.index(b"\n--" + boundary, body) + 1
    nl = b"\r\n" if b"\r\n" in raw[body:end] else b"\n"
    ci = cms.ContentInfo.load(base64.b64decode(raw[body:end]))
    sd = ci["content"]
    crls = list(sd["crls"]) if sd["crls"].native is not None else []
    crls.append(cms.RevocationInfoChoice(
        name="other", value=cms.OtherRevocationInfoFormat(
            {"other_rev_info_format": "ocsp_response", "other_rev_info": resp})))
    sd["crls"] = crls
    b64 = base64.b64encode(ci.dump())
    lines = nl.join(b64[i:i + 64] for i in range(0, len(b64), 64)) + nl
    open(argv[3], "wb").write(raw[:body] + lines + raw[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
