/*
 * keel/process.h - the process-wide memory settings of keel's worker programs.
 *
 * libkeel itself never changes a process-wide setting: a program that embeds it decides. keel's
 * own programs (keel-worker, and keel-bench-peers so that the peer benchmark measures what ships)
 * call keel_process_memory_setup() first thing in main(), before any thread starts.
 * docs/operations.md ("Memory") says what it does and why; docs/performance.md ("Memory") where a
 * worker's memory goes.
 */
#ifndef KEEL_PROCESS_H
#define KEEL_PROCESS_H

/* At most this many glibc malloc arenas (glibc's default is 8 per core). */
#define KEEL_PROCESS_MALLOC_ARENAS 2

/*
 * Cap glibc's malloc arenas at KEEL_PROCESS_MALLOC_ARENAS, unless the environment already says
 * (MALLOC_ARENA_MAX or GLIBC_TUNABLES: the operator's choice wins). Each thread that allocates
 * otherwise gets an arena of its own (up to 8 per core), and each arena keeps the memory its
 * thread freed. Call before any thread starts. KEEL_OK, or KEEL_EUNIMPLEMENTED when the allocator
 * takes no such setting (not glibc's malloc; AddressSanitizer's, say): nothing changed then.
 */
int keel_process_memory_setup(void);

#endif
