/* adapt.c - see adapt.h. */
#define _GNU_SOURCE
#include "adapt.h"

#include <blis.h>
#include <math.h>
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

int icl_adapt_decide(double busy, double own, double interval, int ncpu, int cur, int max)
{
    if (!(interval > 0) || ncpu < 1 || cur < 1 || max < 1)
        return cur < 1 ? 1 : cur;
    double o = (busy - own) / interval;
    if (!(o > 0))
        o = 0;
    if (o > ncpu)
        o = ncpu;
    int down = ncpu - (int)floor(o + 0.5), up = ncpu - (int)floor(o + 0.75);
    /* no core taken: the count without load, which may exceed the mask */
    int want_down = (int)floor(o + 0.5) == 0 ? max : down, want_up = (int)floor(o + 0.75) == 0 ? max : up;
    want_down = want_down < 1 ? 1 : want_down > max ? max : want_down;
    want_up = want_up < 1 ? 1 : want_up > max ? max : want_up;
    if (want_down < cur)
        return want_down;
    if (want_up > cur)
        return want_up;
    return cur;
}

/* Busy jiffies of the CPUs in a->cpus, from /proc/stat's "cpuN" lines:
 * user nice system idle iowait irq softirq steal (guest and guest_nice are
 * inside user and nice).  -1 when unreadable or a CPU is missing. */
static double busy_jiffies(const icl_adapt *a)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    char line[512];
    double sum = 0;
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        int id;
        unsigned long long v[8] = {0};
        if (strncmp(line, "cpu", 3) != 0 || line[3] < '0' || line[3] > '9')
            continue;
        if (sscanf(line + 3, "%d %llu %llu %llu %llu %llu %llu %llu %llu", &id, &v[0], &v[1], &v[2], &v[3], &v[4],
                   &v[5], &v[6], &v[7]) < 5)
            continue;
        for (int i = 0; i < a->ncpu; i++)
            if (a->cpus[i] == id) {
                sum += (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
                found++;
                break;
            }
    }
    fclose(f);
    return found == a->ncpu ? sum : -1;
}

/* This process's CPU time (all threads, user and system), in jiffies. */
static double own_jiffies(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return -1;
    double s = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
               1e-6 * (double)ru.ru_stime.tv_usec;
    return s * (double)sysconf(_SC_CLK_TCK);
}

void icl_adapt_start(icl_adapt *a, int on, int max, int verbose)
{
    memset(a, 0, sizeof *a);
    a->verbose = verbose;
    a->max = a->cur = max;
    a->window = ICL_ADAPT_WINDOW;
    const char *e = getenv("ICL_ADAPT_SECONDS");
    if (e && *e && (icl_parse_double(e, &a->window) || !(a->window >= 0 && a->window <= 3600)))
        icl_die("ICL_ADAPT_SECONDS=%s: not a number of seconds from 0 to 3600", e);
    if (!on || a->window == 0)
        return;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return;
    for (int c = 0; c < CPU_SETSIZE && a->ncpu < (int)(sizeof a->cpus / sizeof *a->cpus); c++)
        if (CPU_ISSET(c, &set))
            a->cpus[a->ncpu++] = c;
    if (a->ncpu < 1 || sysconf(_SC_CLK_TCK) <= 0)
        return;
    a->busy0 = busy_jiffies(a);
    a->own0 = own_jiffies();
    if (a->busy0 < 0 || a->own0 < 0)
        return;
    a->t0 = icl_now();
    a->on = 1;
}

int icl_adapt_poll(icl_adapt *a, const char *where)
{
    if (!a->on)
        return a->cur;
    if (a->max < 1)
        a->max = a->cur = omp_get_max_threads();
    double now = icl_now();
    if (now - a->t0 < a->window)
        return a->cur;
    double busy = busy_jiffies(a), own = own_jiffies(), hz = (double)sysconf(_SC_CLK_TCK);
    if (busy < 0 || own < 0) { /* /proc went away: keep the count */
        a->on = 0;
        return a->cur;
    }
    double interval = (now - a->t0) * hz;
    a->others = (busy - a->busy0 - (own - a->own0)) / interval;
    if (a->others < 0)
        a->others = 0;
    int n = icl_adapt_decide(busy - a->busy0, own - a->own0, interval, a->ncpu, a->cur, a->max);
    a->t0 = now;
    a->busy0 = busy;
    a->own0 = own;
    if (n == a->cur)
        return n;
    a->cur = n;
    omp_set_num_threads(n);
    bli_thread_set_num_threads(n);
    if (a->verbose) {
        if (a->line_open && *a->line_open) {
            fputc('\n', stderr);
            *a->line_open = 0;
        }
        fprintf(stderr, "%s: other programs use %.1f of %d cores: %d thread%s%s%s\n", icl_progname, a->others,
                a->ncpu, n, n == 1 ? "" : "s", where ? " from " : "", where ? where : "");
    }
    return n;
}
