"""The ASN.1 of RFC 8418 / RFC 5753 that asn1crypto lacks, shared by the independent peers
encrypt.py and decrypt.py (asn1crypto knows the CMS itself)."""
from asn1crypto import core


class WrapAlgorithm(core.Sequence):  # KeyWrapAlgorithm, RFC 5753 §7.1.1 (parameters absent)
    _fields = [("algorithm", core.ObjectIdentifier), ("parameters", core.Any, {"optional": True})]


class GCMParameters(core.Sequence):  # RFC 5084 §3.2
    _fields = [("nonce", core.OctetString), ("icv_len", core.Integer, {"default": 12})]


class SharedInfo(core.Sequence):  # ECC-CMS-SharedInfo, RFC 5753 §7.2
    _fields = [("key_info", WrapAlgorithm),
               ("entity_u_info", core.OctetString, {"explicit": 0, "optional": True}),
               ("supp_pub_info", core.OctetString, {"explicit": 2})]
