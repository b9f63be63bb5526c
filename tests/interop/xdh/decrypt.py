#!/usr/bin/python3
"""An independent RFC 8418 decryptor for the interop test: asn1crypto reads the CMS,
python3-cryptography does X25519/X448, HKDF or the X9.63 KDF, AES key unwrap and AES-GCM/CBC.

usage: decrypt.py PRIVATE-KEY.pem MESSAGE.der   -> the decrypted inner entity on stdout
Exit 1 with one line on stderr when it cannot decrypt."""
import os
import sys

from asn1crypto import cms

from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import x448, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from rfc8418_asn1 import GCMParameters, SharedInfo, WrapAlgorithm  # noqa: E402

SCHEMES = {  # RFC 8418 §2.2 / RFC 5753 §7.1.4
    "1.2.840.113549.1.9.16.3.19": ("hkdf", hashes.SHA256()),
    "1.2.840.113549.1.9.16.3.20": ("hkdf", hashes.SHA384()),
    "1.2.840.113549.1.9.16.3.21": ("hkdf", hashes.SHA512()),
    "1.3.132.1.11.1": ("x963", hashes.SHA256()),
    "1.3.132.1.11.2": ("x963", hashes.SHA384()),
    "1.3.132.1.11.3": ("x963", hashes.SHA512()),
}
WRAP = {"2.16.840.1.101.3.4.1.5": 16, "2.16.840.1.101.3.4.1.25": 24,
        "2.16.840.1.101.3.4.1.45": 32}


def fail(msg):
    print("decrypt.py: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    key = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), None)
    ci = cms.ContentInfo.load(open(sys.argv[2], "rb").read())
    body = ci["content"]
    for ri in body["recipient_infos"]:
        if ri.name != "kari":
            continue
        kari = ri.chosen
        orig = kari["originator"].chosen
        pub = orig["public_key"].native
        oid = orig["algorithm"]["algorithm"].dotted
        if oid != ("1.3.101.110" if isinstance(key, x25519.X25519PrivateKey) else "1.3.101.111"):
            continue
        if isinstance(key, x25519.X25519PrivateKey):
            z = key.exchange(x25519.X25519PublicKey.from_public_bytes(pub))
        else:
            z = key.exchange(x448.X448PublicKey.from_public_bytes(pub))
        kea = kari["key_encryption_algorithm"]
        scheme, md = SCHEMES[kea["algorithm"].dotted]
        wrap = WrapAlgorithm.load(kea["parameters"].dump())
        klen = WRAP[wrap["algorithm"].dotted]
        ukm = kari["ukm"].native if kari["ukm"].native is not None else None
        si = SharedInfo({"key_info": wrap, "supp_pub_info": (klen * 8).to_bytes(4, "big")})
        if ukm is not None:
            si["entity_u_info"] = ukm
        if scheme == "hkdf":
            kek = HKDF(md, klen, ukm, si.dump()).derive(z)
        else:
            kek = X963KDF(md, klen, si.dump()).derive(z)
        for rek in kari["recipient_encrypted_keys"]:
            try:
                cek = aes_key_unwrap(kek, rek["encrypted_key"].native)
                break
            except Exception:
                continue
        else:
            continue
        auth = ci["content_type"].dotted == "1.2.840.113549.1.9.16.1.23"  # RFC 5083
        eci = body["auth_encrypted_content_info" if auth else "encrypted_content_info"]
        alg = eci["content_encryption_algorithm"]
        data = eci["encrypted_content"].native
        if auth:
            p = GCMParameters.load(alg["parameters"].dump())
            if p["icv_len"].native != 16 or len(body["mac"].native) != 16:
                fail("unexpected GCM tag length")
            # RFC 5083 §2.2: the authAttrs, if any, are the AAD as a DER SET OF.
            aad = body["auth_attrs"].untag().dump() if body["auth_attrs"].native else None
            sys.stdout.buffer.write(AESGCM(cek).decrypt(p["nonce"].native,
                                                        data + body["mac"].native, aad))
        else:
            iv = alg["parameters"].native
            d = Cipher(algorithms.AES(cek), modes.CBC(iv)).decryptor()
            u = padding.PKCS7(128).unpadder()
            sys.stdout.buffer.write(u.update(d.update(data) + d.finalize()) + u.finalize())
        return
    fail("no key agreement recipient info that this key opens")


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception as e:  # one line, as the tests expect
        fail("%s: %s" % (type(e).__name__, e))
