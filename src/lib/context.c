/*
 * The library context, assembled one floor above the rooms it joins: the token layer's
 * context (backend, modules, PIN source, login policy; src/token/) and the bridge's OpenSSL
 * library context (src/bridge/). Neither knows the other this way round: the token layer never
 * calls the bridge, the bridge uses the token layer (DESIGN.md "Layers", docs/architecture.md).
 */
#include <stddef.h>

#include <p11smime/error.h>
#include <p11smime/token.h>

#include "bridge/bridge.h"
#include "token/token_int.h"

int p11s_ctx_new(p11s_ctx **out, const p11s_ctx_opts *opts)
{
	p11s_ctx *ctx;
	int rc;

	if ((rc = p11s_token__ctx_new(&ctx, opts)) < 0) {
		return rc; /* *out is NULL */
	}
	if ((rc = p11s_bridge__libctx_new(&ctx->libctx)) < 0) {
		p11s_token__ctx_free(ctx);
		return rc;
	}
	*out = ctx;
	return P11S_OK;
}

void p11s_ctx_free(p11s_ctx *ctx)
{
	OSSL_LIB_CTX *libctx;

	if (ctx == NULL) {
		return;
	}
	/* The modules first (they may still hold sessions of keys), then the providers. */
	libctx = ctx->libctx;
	p11s_token__ctx_free(ctx);
	p11s_bridge__libctx_free(libctx);
}

OSSL_LIB_CTX *p11s_ctx_libctx(p11s_ctx *ctx)
{
	return ctx->libctx;
}
