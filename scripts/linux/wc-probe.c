// SPDX-License-Identifier: MIT
// wc-probe: the write-combine measurement from Linux user space.
//
// Usage: wc-probe /sys/bus/pci/devices/DDDD:BB:DD.F [WINDOW_KIB]
//
// Maps BAR2 of the device twice through sysfs: `resource2`, which Linux maps
// Device-nGnRE (pgprot_device), and `resource2_wc`, which it maps Normal
// Non-cacheable (pgprot_writecombine). For each mapping it times plain
// 64-bit stores and loads over a window of the BAR, writes a pattern and
// reads it back, and probes an unaligned 64-bit load (an alignment fault,
// SIGBUS, on Device memory; none on Normal memory). The windows of the two
// mappings do not overlap, so the patterns stay in the BAR for the host to
// check (ivshmem's backing file). One line per mapping:
//
//   LINUX-WC-RESULT dev=0000:00:02.0 bar=2 map=resource2 offset=0x0
//     bytes=4194304 seed=0x... write_mib_s=... read_mib_s=... verify=ok
//     unaligned=sigbus
//
// and a final LINUX-WC-SUMMARY ok|FAIL. Pattern word i of a window is
// seed ^ (i * 0x9e3779b97f4a7c15), little-endian.
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define GOLDEN 0x9e3779b97f4a7c15ull

static sigjmp_buf probe_jmp;
static volatile sig_atomic_t probe_signal;

static void on_fault(int sig)
{
    probe_signal = sig;
    siglongjmp(probe_jmp, 1);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

// Eight plain 64-bit stores per 64 bytes, like the test guest's benchmark.
static void write_block(volatile uint64_t *p, size_t words, uint64_t v)
{
    for (size_t i = 0; i < words; i += 8) {
        p[i] = v;
        p[i + 1] = v;
        p[i + 2] = v;
        p[i + 3] = v;
        p[i + 4] = v;
        p[i + 5] = v;
        p[i + 6] = v;
        p[i + 7] = v;
    }
}

static uint64_t read_block(volatile uint64_t *p, size_t words)
{
    uint64_t s = 0;
    for (size_t i = 0; i < words; i += 8)
        s += p[i] ^ p[i + 1] ^ p[i + 2] ^ p[i + 3] ^ p[i + 4] ^ p[i + 5] ^ p[i + 6] ^ p[i + 7];
    return s;
}

// One unaligned LDR; "sigbus" if it faulted with SIGBUS.
static const char *unaligned_probe(volatile uint8_t *p)
{
    struct sigaction sa, old_bus, old_segv;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fault;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &old_bus);
    sigaction(SIGSEGV, &sa, &old_segv);
    probe_signal = 0;
    const char *r = "ok";
    if (sigsetjmp(probe_jmp, 1) == 0) {
        uint64_t v;
        __asm__ volatile("ldr %0, [%1]" : "=r"(v) : "r"(p + 1) : "memory");
        (void)v;
    } else {
        r = probe_signal == SIGBUS ? "sigbus" : "sigsegv";
    }
    sigaction(SIGBUS, &old_bus, NULL);
    sigaction(SIGSEGV, &old_segv, NULL);
    return r;
}

static int measure(const char *dev, const char *name, size_t offset, size_t bytes, uint64_t seed)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dev, name);
    int fd = open(path, O_RDWR | O_SYNC);
    if (fd < 0) {
        printf("LINUX-WC-RESULT dev=%s bar=2 map=%s error=open:%s\n", strrchr(dev, '/') + 1, name,
               strerror(errno));
        return 1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || (size_t)st.st_size < offset + bytes) {
        printf("LINUX-WC-RESULT dev=%s bar=2 map=%s error=bar-smaller-than-0x%zx\n",
               strrchr(dev, '/') + 1, name, offset + bytes);
        close(fd);
        return 1;
    }
    uint8_t *base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)offset);
    if (base == MAP_FAILED) {
        printf("LINUX-WC-RESULT dev=%s bar=2 map=%s error=mmap:%s\n", strrchr(dev, '/') + 1, name,
               strerror(errno));
        close(fd);
        return 1;
    }
    volatile uint64_t *w = (volatile uint64_t *)base;
    size_t words = bytes / 8;
    const int rounds = 4;

    write_block(w, words, 0); // first touch: page faults outside the timing
    double t0 = now();
    for (int r = 0; r < rounds; r++)
        write_block(w, words, seed + (uint64_t)r);
    double t1 = now();
    uint64_t sink = 0;
    for (int r = 0; r < rounds; r++)
        sink += read_block(w, words);
    double t2 = now();

    for (size_t i = 0; i < words; i++)
        w[i] = seed ^ (i * GOLDEN);
    size_t bad = 0;
    for (size_t i = 0; i < words; i++)
        bad += w[i] != (seed ^ (i * GOLDEN));

    const char *unaligned = unaligned_probe(base);
    double mib = (double)bytes * rounds / (1024.0 * 1024.0);
    printf("LINUX-WC-RESULT dev=%s bar=2 map=%s offset=0x%zx bytes=%zu seed=0x%016llx "
           "write_mib_s=%.1f read_mib_s=%.1f verify=%s unaligned=%s sink=%llx\n",
           strrchr(dev, '/') + 1, name, offset, bytes, (unsigned long long)seed, mib / (t1 - t0),
           mib / (t2 - t1), bad ? "FAIL" : "ok", unaligned, (unsigned long long)(sink & 0xf));
    fflush(stdout);
    munmap(base, bytes);
    close(fd);
    return bad != 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fprintf(stderr, "usage: wc-probe /sys/bus/pci/devices/DDDD:BB:DD.F [WINDOW_KIB]\n");
        return 2;
    }
    size_t bytes = (argc > 2 ? strtoul(argv[2], NULL, 0) : 4096) * 1024;
    if (bytes == 0 || bytes % 64 != 0) {
        fprintf(stderr, "wc-probe: the window must be a non-zero multiple of 64 bytes\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    int fails = 0;
    fails += measure(argv[1], "resource2", 0, bytes, 0x5eed000000000002ull);
    fails += measure(argv[1], "resource2_wc", bytes, bytes, 0x5eed0000000002c0ull);
    printf("LINUX-WC-SUMMARY %s\n", fails ? "FAIL" : "ok");
    return fails != 0;
}
