/* p11smime — S/MIME with private keys on PKCS#11 tokens. Umbrella header. */
#ifndef P11SMIME_H
#define P11SMIME_H

#include "audit.h"
#include "common.h"
#include "config.h"
#include "detached.h"
#include "envelope.h"
#include "error.h"
#include "ess.h"
#include "gateway.h"
#include "harvest.h"
#include "keygen.h"
#include "log.h"
#include "message.h"
#include "pin.h"
#include "pin_callback.h"
#include "reader.h"
#include "revocation.h"
#include "secret.h"
#include "sign.h"
#include "store.h"
#include "token.h"
#include "tsa.h"
#include "uri.h"
#include "verify.h"

#endif
