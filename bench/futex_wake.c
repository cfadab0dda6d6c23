/* bench/futex_wake.c - what a sleeping wait costs on this machine: two
 * threads pass a token back and forth N times through a 32-bit word, the
 * waiter either sleeping on a futex (FUTEX_WAIT, woken by FUTEX_WAKE: what
 * icl's waits do once ICL_WAIT_SPINS pauses have passed, cmd/common/
 * blis_wait.c and libgomp) or spinning on the word with pause.  Prints the
 * round trip (two hand-overs) in microseconds.  The sleeping figure depends
 * on what the other CPU does: busy with another program, the wake-up is a
 * reschedule; idle (halted vCPU), it is an interrupt to a halted CPU.
 * Not run by make bench: make build/bench/futex_wake, then
 * usage: futex_wake [spin [N]]   (spin 0: sleep, 1: spin; N 20000) */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static uint32_t word[2];
static int spin, N = 20000;

static double mono(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* until *w == v; the futex call sleeps only while *w still holds its old value */
static void wait_for(uint32_t *w, uint32_t v)
{
    uint32_t cur;
    while ((cur = __atomic_load_n(w, __ATOMIC_ACQUIRE)) != v) {
        if (spin)
            __builtin_ia32_pause();
        else
            syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, cur, NULL, NULL, 0);
    }
}

static void post(uint32_t *w, uint32_t v)
{
    __atomic_store_n(w, v, __ATOMIC_RELEASE);
    if (!spin)
        syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *peer(void *a)
{
    (void)a;
    for (int i = 1; i <= N; i++) {
        wait_for(&word[0], (uint32_t)i);
        post(&word[1], (uint32_t)i);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    spin = argc > 1 && atoi(argv[1]);
    if (argc > 2 && atoi(argv[2]) > 0)
        N = atoi(argv[2]);
    pthread_t t;
    if (pthread_create(&t, NULL, peer, NULL)) {
        fprintf(stderr, "futex_wake: pthread_create failed\n");
        return 1;
    }
    double t0 = mono();
    for (int i = 1; i <= N; i++) {
        post(&word[0], (uint32_t)i);
        wait_for(&word[1], (uint32_t)i);
    }
    double dt = mono() - t0;
    pthread_join(t, NULL);
    printf("futex_wake: %s: %.2f us per round trip (%d round trips)\n", spin ? "spinning" : "sleeping (futex)",
           dt / N * 1e6, N);
    return 0;
}
