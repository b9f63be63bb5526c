#!/usr/bin/python3
"""An independent RFC 8418 encryptor for the interop test, the mirror of decrypt.py: asn1crypto
writes the CMS, python3-cryptography does X25519/X448, HKDF or the X9.63 KDF, AES key wrap and
AES-GCM/CBC. It makes X25519/X448 key agreement recipients that p11smime must open.

usage: encrypt.py [options] RECIPIENT-CERT.pem INPUT OUTPUT
  INPUT is the MIME entity to encrypt, as is (encapsulated content type id-data). OUTPUT is
  an S/MIME message (application/pkcs7-mime, base64, LF line ends), or with --der the DER
  ContentInfo.
  --cipher aes128-cbc|aes192-cbc|aes256-cbc|aes128-gcm|aes256-gcm   (default aes256-gcm)
        GCM: AuthEnvelopedData (RFC 5083/5084), 12-byte nonce, 16-byte tag in mac, no
        authAttrs; CBC: EnvelopedData, PKCS#7 padding, 16-byte IV.
  --kdf hkdf|x963       dhSinglePass-stdDH-hkdf-shaNNN-scheme (RFC 8418 §2.2; HKDF, salt = the
                        ukm if any, info = DER(ECC-CMS-SharedInfo)) or dhSinglePass-stdDH-shaNNNkdf-
                        scheme (the X9.63 KDF, RFC 5753 §7.2)           (default hkdf)
  --hash sha256|sha384|sha512   the KDF's hash        (default SHA-256 for X25519, SHA-512 X448)
  --wrap 128|192|256    the AES key wrap (RFC 3394)   (default the content key's size)
  --ukm                 a random 16-byte ukm per key agreement recipient, also the
                        SharedInfo's entityUInfo and, with HKDF, the salt (RFC 8418 §2.2)
  --rid issuer|ski      name the key agreement recipients by issuerAndSerialNumber (default)
                        or rKeyId (the certificate's subjectKeyIdentifier)
  --bad-tag             flip a bit of the GCM tag (CBC: of the last ciphertext block, so that
                        the padding is wrong): a message that must not decrypt
  --bad-wrap            flip a bit of RECIPIENT-CERT's encryptedKey
  --also CERT.pem       another recipient (repeatable): X25519/X448 as a further
                        KeyAgreeRecipientInfo, RSA as a KeyTransRecipientInfo (PKCS #1 v1.5,
                        issuerAndSerialNumber); DER sorts the SET, so a KTRI comes first
  --der                 write the DER ContentInfo
Exit 2 with one line on stderr for a usage error or bad input, 1 for any other failure."""
import argparse
import base64
import os
import sys

from asn1crypto import cms, core, pem, x509

from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa, x448, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rfc8418_asn1 import GCMParameters, SharedInfo, WrapAlgorithm  # noqa: E402

CIPHERS = {  # name -> (OID, key length, GCM)
    "aes128-cbc": ("2.16.840.1.101.3.4.1.2", 16, False),
    "aes192-cbc": ("2.16.840.1.101.3.4.1.22", 24, False),
    "aes256-cbc": ("2.16.840.1.101.3.4.1.42", 32, False),
    "aes128-gcm": ("2.16.840.1.101.3.4.1.6", 16, True),
    "aes256-gcm": ("2.16.840.1.101.3.4.1.46", 32, True),
}
SCHEMES = {  # (kdf, hash) -> keyEncryptionAlgorithm, RFC 8418 §2.2 / RFC 5753 §7.1.4
    ("hkdf", "sha256"): "1.2.840.113549.1.9.16.3.19",
    ("hkdf", "sha384"): "1.2.840.113549.1.9.16.3.20",
    ("hkdf", "sha512"): "1.2.840.113549.1.9.16.3.21",
    ("x963", "sha256"): "1.3.132.1.11.1",
    ("x963", "sha384"): "1.3.132.1.11.2",
    ("x963", "sha512"): "1.3.132.1.11.3",
}
HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
WRAP = {128: "2.16.840.1.101.3.4.1.5", 192: "2.16.840.1.101.3.4.1.25",
        256: "2.16.840.1.101.3.4.1.45"}  # id-aesNNN-wrap, RFC 3565 §2.3.2
XDH = {  # certificate key algorithm -> (originator key OID, RFC 8410 §3; default KDF hash)
    "x25519": ("1.3.101.110", "sha256"),
    "x448": ("1.3.101.111", "sha512"),
}
ID_DATA = "1.2.840.113549.1.7.1"


class Usage(Exception):
    """A usage error or bad input: exit 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        raise Usage(message)


def load_cert(path):
    """The certificate (PEM or DER) and its public key as python3-cryptography sees it."""
    try:
        data = open(path, "rb").read()
    except OSError as e:
        raise Usage("%s: %s" % (path, e.strerror))
    try:
        if pem.detect(data):
            _, _, data = pem.unarmor(data)
        cert = x509.Certificate.load(data)
        alg = cert.public_key["algorithm"]["algorithm"].native
        pub = serialization.load_der_public_key(cert.public_key.dump())
    except Exception as e:
        raise Usage("%s: not a certificate (%s)" % (path, e))
    return cert, alg, pub


def issuer_serial(cert):
    return cms.IssuerAndSerialNumber({"issuer": cert.issuer, "serial_number": cert.serial_number})


def kari(path, cert, alg, pub, cek, opts):
    """A KeyAgreeRecipientInfo (RFC 5652 §6.2.2, RFC 8418 §2) with a fresh ephemeral key."""
    oid, default_hash = XDH[alg]
    md = opts.hash or default_hash
    if alg == "x25519":
        eph = x25519.X25519PrivateKey.generate()
    else:
        eph = x448.X448PrivateKey.generate()
    z = eph.exchange(pub)
    eph_pub = eph.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
    wrap_bits = opts.wrap or len(cek) * 8
    wrap = WrapAlgorithm({"algorithm": WRAP[wrap_bits]})
    ukm = os.urandom(16) if opts.ukm else None
    si = SharedInfo({"key_info": wrap, "supp_pub_info": wrap_bits.to_bytes(4, "big")})
    if ukm is not None:
        si["entity_u_info"] = ukm
    if opts.kdf == "hkdf":  # RFC 8418 §2.2: salt = ukm (absent without), info = DER(SharedInfo)
        kek = HKDF(HASHES[md](), wrap_bits // 8, ukm, si.dump()).derive(z)
    else:  # RFC 5753 §7.2: the ANSI X9.63 KDF, SharedInfo = DER(ECC-CMS-SharedInfo)
        kek = X963KDF(HASHES[md](), wrap_bits // 8, si.dump()).derive(z)
    if opts.rid == "ski":
        ski = cert.key_identifier
        if ski is None:
            raise Usage("%s: no subjectKeyIdentifier for --rid ski" % path)
        rki = cms.RecipientKeyIdentifier({"subjectKeyIdentifier": ski})
        rid = cms.KeyAgreementRecipientIdentifier.load(  # rKeyId [0] IMPLICIT
            rki.retag({"implicit": 0}).dump())
    else:
        rid = cms.KeyAgreementRecipientIdentifier(name="issuer_and_serial_number",
                                                  value=issuer_serial(cert))
    info = {
        "version": "v3",
        "originator": cms.OriginatorIdentifierOrKey(
            name="originator_key",
            value={"algorithm": {"algorithm": oid},  # parameters absent, RFC 8410 §3
                   "public_key": eph_pub}),
        "key_encryption_algorithm": {"algorithm": SCHEMES[(opts.kdf, md)],
                                     "parameters": core.Any.load(wrap.dump())},
        "recipient_encrypted_keys": [{"rid": rid, "encrypted_key": aes_key_wrap(kek, cek)}],
    }
    if ukm is not None:
        info["ukm"] = ukm
    return cms.RecipientInfo(name="kari", value=cms.KeyAgreeRecipientInfo(info))


def ktri(cert, pub, cek):
    """A KeyTransRecipientInfo with RSAES-PKCS1-v1_5 (RFC 3370 §4.2.1)."""
    return cms.RecipientInfo(name="ktri", value=cms.KeyTransRecipientInfo({
        "version": "v0",
        "rid": cms.RecipientIdentifier(name="issuer_and_serial_number",
                                       value=issuer_serial(cert)),
        "key_encryption_algorithm": {"algorithm": "rsaes_pkcs1v15", "parameters": core.Null()},
        "encrypted_key": pub.encrypt(cek, asym_padding.PKCS1v15()),
    }))


def flip_wrap(ri):
    rek = ri.chosen["recipient_encrypted_keys"][0]
    ek = bytearray(rek["encrypted_key"].native)
    ek[len(ek) // 2] ^= 0x01
    rek["encrypted_key"] = bytes(ek)


def cbc_bad(cek, iv, ct):
    """`ct` with one bit of its last block flipped such that the PKCS #7 padding is wrong."""
    for pos in range(len(ct) - 1, len(ct) - 17, -1):
        for bit in range(8):
            bad = bytearray(ct)
            bad[pos] ^= 1 << bit
            d = Cipher(algorithms.AES(cek), modes.CBC(iv)).decryptor()
            u = padding.PKCS7(128).unpadder()
            try:
                u.update(d.update(bytes(bad)) + d.finalize())
                u.finalize()
            except ValueError:
                return bytes(bad)
    raise RuntimeError("no bit flip spoils the padding")


def smime(der, gcm):
    b64 = base64.b64encode(der).decode("ascii")
    head = ("MIME-Version: 1.0\n"
            "Content-Type: application/pkcs7-mime; smime-type=%s; name=\"smime.p7m\"\n"
            "Content-Transfer-Encoding: base64\n"
            "Content-Disposition: attachment; filename=\"smime.p7m\"\n\n"
            % ("authEnveloped-data" if gcm else "enveloped-data"))
    return (head + "".join(b64[i:i + 64] + "\n" for i in range(0, len(b64), 64))).encode()


def main():
    ap = Parser(prog="encrypt.py", add_help=False,
                usage="encrypt.py [options] RECIPIENT-CERT.pem INPUT OUTPUT")
    ap.add_argument("-h", "--help", action="store_true")
    ap.add_argument("--cipher", choices=sorted(CIPHERS), default="aes256-gcm")
    ap.add_argument("--kdf", choices=["hkdf", "x963"], default="hkdf")
    ap.add_argument("--hash", choices=sorted(HASHES))
    ap.add_argument("--wrap", type=int, choices=sorted(WRAP))
    ap.add_argument("--ukm", action="store_true")
    ap.add_argument("--rid", choices=["issuer", "ski"], default="issuer")
    ap.add_argument("--bad-tag", action="store_true")
    ap.add_argument("--bad-wrap", action="store_true")
    ap.add_argument("--also", action="append", default=[], metavar="CERT.pem")
    ap.add_argument("--der", action="store_true")
    ap.add_argument("cert")
    ap.add_argument("input")
    ap.add_argument("output")
    if "-h" in sys.argv[1:] or "--help" in sys.argv[1:]:
        print(__doc__)
        return
    opts = ap.parse_args()

    cipher_oid, keylen, gcm = CIPHERS[opts.cipher]
    recipients = []
    for i, path in enumerate([opts.cert] + opts.also):
        cert, alg, pub = load_cert(path)
        if alg in XDH and isinstance(pub, (x25519.X25519PublicKey, x448.X448PublicKey)):
            recipients.append((path, cert, alg, pub))
        elif alg == "rsa" and isinstance(pub, rsa.RSAPublicKey) and i > 0:
            recipients.append((path, cert, alg, pub))
        elif i == 0:
            raise Usage("%s: its %s key is not X25519 or X448 (RSA only with --also)"
                        % (path, alg))
        else:
            raise Usage("%s: its %s key is neither X25519/X448 nor RSA" % (path, alg))
    try:
        content = open(opts.input, "rb").read()
    except OSError as e:
        raise Usage("%s: %s" % (opts.input, e.strerror))

    cek = os.urandom(keylen)
    ris = [kari(p, c, a, k, cek, opts) if a in XDH else ktri(c, k, cek)
           for p, c, a, k in recipients]
    if opts.bad_wrap:  # ris[0] is the RECIPIENT-CERT's KeyAgreeRecipientInfo
        flip_wrap(ris[0])

    if gcm:  # RFC 5083/5084: the tag is the mac; no authAttrs, so no AAD
        nonce = os.urandom(12)
        sealed = AESGCM(cek).encrypt(nonce, content, None)
        ct, tag = sealed[:-16], sealed[-16:]
        if opts.bad_tag:
            tag = bytes([tag[0] ^ 0x01]) + tag[1:]
        body = cms.AuthEnvelopedData({
            "version": "v0",
            "recipient_infos": ris,
            "auth_encrypted_content_info": {
                "content_type": ID_DATA,
                "content_encryption_algorithm": {
                    "algorithm": cipher_oid,
                    "parameters": GCMParameters({"nonce": nonce, "icv_len": 16})},
                "encrypted_content": ct},
            "mac": tag,
        })
        ci = cms.ContentInfo({"content_type": "authenticated_enveloped_data", "content": body})
    else:  # EnvelopedData version 2: a KeyAgreeRecipientInfo is not version 0 (RFC 5652 §6.1)
        iv = os.urandom(16)
        p = padding.PKCS7(128).padder()
        e = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
        ct = e.update(p.update(content) + p.finalize()) + e.finalize()
        if opts.bad_tag:
            ct = cbc_bad(cek, iv, ct)
        body = cms.EnvelopedData({
            "version": "v2",
            "recipient_infos": ris,
            "encrypted_content_info": {
                "content_type": ID_DATA,
                "content_encryption_algorithm": {"algorithm": cipher_oid,
                                                 "parameters": core.OctetString(iv)},
                "encrypted_content": ct},
        })
        ci = cms.ContentInfo({"content_type": "enveloped_data", "content": body})

    der = ci.dump(force=True)
    out = der if opts.der else smime(der, gcm)
    with open(opts.output, "wb") as f:
        f.write(out)


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Usage as e:  # one line, as the tests expect
        print("encrypt.py: " + " ".join(str(e).split()), file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        print("encrypt.py: %s: %s" % (type(e).__name__, " ".join(str(e).split())),
              file=sys.stderr)
        sys.exit(1)
