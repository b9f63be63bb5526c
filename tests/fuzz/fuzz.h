/*
 * Shared helpers of the fuzz targets (tests/fuzz/README.md). Every target defines
 * LLVMFuzzerTestOneInput(); libFuzzer (P11S_FUZZ=ON, clang) or replay.c (every build) calls it.
 */
#ifndef P11S_FUZZ_H
#define P11S_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * The input as a seekable FILE backed by a real descriptor (memfd): the message readers dup()
 * fileno() for GMime, so fmemopen(), which has no descriptor, would not do. Rewound.
 * @return the FILE, or NULL (then the caller skips the input).
 */
FILE *p11s_fuzz_file(const uint8_t *data, size_t size);

/* A NUL-terminated copy of the input (malloc'd), or NULL. */
char *p11s_fuzz_str(const uint8_t *data, size_t size);

/* A writable FILE that discards everything ("/dev/null"), opened once per process. */
FILE *p11s_fuzz_null(void);

#endif
