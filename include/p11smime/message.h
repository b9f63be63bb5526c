/* p11smime — what kind of S/MIME entity a message is, and re-joining a peeled layer. */
#ifndef P11SMIME_MESSAGE_H
#define P11SMIME_MESSAGE_H

#include <stdio.h>

#include "common.h"

/** The S/MIME layer at the root of a message (RFC 8551 §3.2, §3.5, §3.9). */
typedef enum p11s_msg_kind {
	P11S_MSG_PLAIN = 0,     /**< not an S/MIME layer (or not one we peel) */
	P11S_MSG_SIGNED,        /**< multipart/signed or smime-type=signed-data */
	P11S_MSG_ENVELOPED,     /**< enveloped-data or authEnveloped-data */
} p11s_msg_kind;

/**
 * Classify the root entity of `in` (seekable) by its Content-Type: multipart/signed,
 * application/(x-)pkcs7-mime with smime-type signed-data, enveloped-data or
 * authEnveloped-data; without smime-type (or application/octet-stream named *.p7m), by the
 * contentType of the CMS ContentInfo in the body. `in` is rewound afterwards.
 * @return P11S_OK; P11S_ERR_MALFORMED (no header section, undecodable body); P11S_ERR_IO.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_message_kind(FILE *in, p11s_msg_kind *out);

/**
 * Write the header fields of `outer` that are not Content-* or MIME-Version (raw, in order),
 * `MIME-Version: 1.0` unless `entity` has one, then `entity` from its start: the message a
 * peeled layer stands for (RFC 8551 §3.1: the outer fields stay outside the layers).
 * @return P11S_OK, P11S_ERR_MALFORMED, P11S_ERR_IO.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_message_join(FILE *outer, FILE *entity, FILE *out);

#endif
