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

/**
 * An S/MIME part found inside a message's content (p11s_message_smime_parts()): content of
 * the message, not a layer of it (RFC 9787 §3).
 */
typedef struct p11s_message_part {
	char path[64];           /**< MIME part number ("2", "1.2"); a forwarded message/rfc822
	                              part is named by its own number */
	char content_type[128];  /**< media type of the part ("multipart/signed",
	                              "message/rfc822", ...) */
	p11s_msg_kind kind;      /**< P11S_MSG_SIGNED or P11S_MSG_ENVELOPED */
	FILE *entity;            /**< the part as a message of its own (an unlinked temporary
	                              file, rewound): a forwarded message with its header; owned by
	                              the array (p11s_message_parts_free()), may be taken (set the
	                              field to NULL and fclose() it yourself) */
} p11s_message_part;

/**
 * List the S/MIME parts below the root of `in` (the root itself is not looked at: peel it
 * first): signed or enveloped entities (as p11s_message_kind() classifies them), and
 * message/rfc822 parts whose own root is one. An S/MIME part is not entered. At most 16 parts,
 * 32 levels deep. `in` is rewound.
 * @param out  the parts (NULL when none); free with p11s_message_parts_free().
 * @return P11S_OK; P11S_ERR_MALFORMED (not a MIME message); P11S_ERR_IO; P11S_ERR_NOMEM.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_message_smime_parts(FILE *in, p11s_message_part **out,
    size_t *n);

/** Free what p11s_message_smime_parts() returned (closing the entity files left). */
P11S_EXTERN void p11s_message_parts_free(p11s_message_part *parts, size_t n);

#endif
