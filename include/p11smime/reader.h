/* p11smime — smartcard readers and card events (pcsc-lite). */
#ifndef P11SMIME_READER_H
#define P11SMIME_READER_H

#include "common.h"

/** One PC/SC reader and whether a card is in it. */
typedef struct p11s_reader_info {
	char name[128];        /**< reader name as pcscd reports it */
	int card_present;      /**< a card is inserted (recognised by PKCS#11 or not) */
	int card_in_use;       /**< another application holds the card exclusively */
	unsigned char atr[33]; /**< the card's ATR when present */
	size_t atr_len;
} p11s_reader_info;

/**
 * List the readers pcscd knows and their cards.
 * @return P11S_OK (an empty list when there are no readers); P11S_ERR_UNSUPPORTED when built
 *         without pcsc-lite; P11S_ERR_TOKEN when pcscd is not reachable. Free `*out` with free().
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_reader_list(p11s_reader_info **out, size_t *count);

/**
 * Wait until a card is present in some reader (at once if one already is), following
 * SCardGetStatusChange events, readers plugged in meanwhile included. `timeout_ms` < 0 waits
 * without limit. `reader` (may be NULL) receives the reader's name.
 * @return P11S_OK; P11S_ERR_TOKEN_ABSENT on timeout; P11S_ERR_TOKEN when pcscd fails;
 *         P11S_ERR_UNSUPPORTED without pcsc-lite.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_reader_wait_card(long timeout_ms, char *reader,
    size_t reader_len);

/**
 * Wait for the next change of any reader's card state (insertion, removal) or of the reader
 * list, for a long-running process (batch, gateway) that must notice removal and insertion.
 * @return P11S_OK when something changed; P11S_ERR_TOKEN_ABSENT on timeout; as above.
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_reader_wait_change(long timeout_ms);

/**
 * A reader monitor: a thread that follows SCardGetStatusChange events and calls `fn(reader,
 * card_present, payload)` for each card removal (0) and insertion (1) after the start (the
 * state at the start is not an event), a reader unplugged with its card counting as a removal.
 * `fn` runs on the monitor's thread. Harmless without pcscd: the monitor keeps trying to reach
 * it and reports nothing meanwhile.
 */
typedef struct p11s_reader_monitor p11s_reader_monitor;

/** The callback of a reader monitor (see above). */
typedef void (*p11s_reader_event_fn)(const char *reader, int card_present, void *payload);

/**
 * Start a monitor.
 * @return P11S_OK; P11S_ERR_UNSUPPORTED without pcsc-lite; P11S_ERR_NOMEM or P11S_ERR_GENERIC
 *         when the thread cannot be started. Stop and free with p11s_reader_monitor_stop().
 */
P11S_EXTERN P11S_MUST_CHECK int p11s_reader_monitor_start(p11s_reader_monitor **out,
    p11s_reader_event_fn fn, void *payload);

/** Stop the thread (it returns within about a second) and free; NULL is accepted. */
P11S_EXTERN void p11s_reader_monitor_stop(p11s_reader_monitor *mon);

#endif
