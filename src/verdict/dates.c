/*
 * The date check (docs/verify.md, "Dates"): a message whose Date header is far from the time
 * its signer claims (signingTime, RFC 5652 §11.3) or from the time a TSA certifies (genTime,
 * RFC 3161 §2.4.2) was re-dated or replayed; the signature covers the content, not the outer
 * Date, so without this check an old signed message passes as new.
 */
#include <stdio.h>
#include <stdlib.h>

#include "core/error_int.h"
#include "verdict/verdict.h"

/* "3 d 04:05:06" / "04:05:06" for a number of seconds (absolute). */
static void span(char *buf, size_t len, int64_t s)
{
	int64_t a = s < 0 ? -s : s;

	if (a >= 86400) {
		snprintf(buf, len, "%lld d %02lld:%02lld:%02lld", (long long)(a / 86400),
		    (long long)(a % 86400 / 3600), (long long)(a % 3600 / 60), (long long)(a % 60));
	} else {
		snprintf(buf, len, "%02lld:%02lld:%02lld", (long long)(a / 3600),
		    (long long)(a % 3600 / 60), (long long)(a % 60));
	}
}

static int compare(const char *which, const char *raw, int64_t date, const char *what,
    const char *when_text, int64_t when, int64_t tolerance, p11s_reasons *reasons)
{
	int64_t d = date - when;
	char a[64], t[64];

	if ((d < 0 ? -d : d) <= tolerance) {
		return P11S_OK;
	}
	span(a, sizeof(a), d);
	span(t, sizeof(t), tolerance);
	return p11s_reasons__add(reasons, "date-mismatch",
	    "the %s (%s) is %s %s the %s %s (difference %+lld s, tolerance %s): the message may "
	    "have been re-dated or replayed", which, raw, a, d < 0 ? "before" : "after", what,
	    when_text, (long long)d, t);
}

int p11s_verdict__dates(const p11s_dates_in *in, int64_t tolerance, p11s_dates_out *out,
    p11s_reasons *reasons)
{
	int64_t st = 0, ts = 0;
	int has_st = in->signing_time != NULL &&
	    p11s_verify_parse_time(in->signing_time, &st) == P11S_OK;
	int has_ts = in->timestamp != NULL && p11s_verify_parse_time(in->timestamp, &ts) == P11S_OK;
	int rc;

	out->has_date_skew = out->has_timestamp_skew = 0;
	if (in->has_date && has_st) {
		out->has_date_skew = 1;
		out->date_skew = in->date - st;
	}
	if (in->has_date && has_ts) {
		out->has_timestamp_skew = 1;
		out->timestamp_skew = in->date - ts;
	}
	if (tolerance < 0) {
		return P11S_OK;
	}
	/* Outer Date, then the protected one (RFC 9788 §2), each against both times. */
	for (int k = 0; k < 2; k++) {
		int has = k == 0 ? in->has_date : in->has_protected_date;
		int64_t date = k == 0 ? in->date : in->protected_date;
		const char *raw = k == 0 ? in->date_raw : in->protected_date_raw;
		const char *which = k == 0 ? "Date header" : "protected Date header (inside the "
		                                             "signed part)";

		if (!has) {
			continue;
		}
		if (has_st && (rc = compare(which, raw, date, "signingTime", in->signing_time, st,
		                   tolerance, reasons)) < 0) {
			return rc;
		}
		if (has_ts && (rc = compare(which, raw, date, "time-stamp genTime", in->timestamp, ts,
		                   tolerance, reasons)) < 0) {
			return rc;
		}
	}
	return P11S_OK;
}
