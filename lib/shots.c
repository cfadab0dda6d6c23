/* shots.c - k-shot demonstrations: pool, BM25 index, selection (shots.h). */
#define _GNU_SOURCE /* qsort_r */
#include "shots.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "jsonout.h"
#include "metrics.h"
#include "rng.h"
#include "xxhash.h"

const char *const icl_shots_selection_names[] = {"random", "similar", "fixed", NULL};

#define BM25_K1 1.5
#define BM25_B 0.75
#define BM25_EPSILON 0.25

typedef struct {
    uint64_t term;
    uint32_t doc, tf;
} posting;

struct icl_shots {
    int k, sel, balance;
    uint64_t seed;
    size_t n, cap;
    icl_tfields *f;      /* instruction, input, output (owned copies) */
    char **idtext;       /* JSON text of each record's id */
    uint64_t *key, *label;
    /* key set (open addressing, 0 = empty; key 0 is mapped to 1) */
    uint64_t *set;
    size_t setcap;
    /* BM25 */
    icl_tokenize tok;
    posting *post;       /* sorted by term, then doc */
    size_t npost;
    uint64_t *terms;     /* distinct terms, sorted */
    size_t *toff;        /* postings of terms[i]: post[toff[i] .. toff[i+1]) */
    size_t nterms;
    double *idf;         /* idf of terms[i] */
    uint32_t *dl;        /* tokens per record */
    double avgdl;
    /* label groups: members of group g are gm[go[g] .. go[g+1]) in pool order */
    size_t ngroups, *go, *gm, *gid;
    /* scratch for pick */
    double *score;
    size_t *order, *cur, *gorder, *stream;
    icl_buf t1, t2;
    uint64_t *qterms;
    size_t nq, qcap;
    int indexed;
};

icl_shots *icl_shots_new(int k, int selection, uint64_t seed, int balance)
{
    icl_shots *s = icl_xcalloc(1, sizeof *s);
    s->k = k < 0 ? 0 : k;
    s->sel = selection;
    s->seed = seed;
    s->balance = balance;
    return s;
}

void icl_shots_free(icl_shots *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free((char *)s->f[i].instruction.s);
        free((char *)s->f[i].input.s);
        free((char *)s->f[i].output.s);
        free(s->idtext[i]);
    }
    free(s->f);
    free(s->idtext);
    free(s->key);
    free(s->label);
    free(s->set);
    free(s->post);
    free(s->terms);
    free(s->toff);
    free(s->idf);
    free(s->dl);
    free(s->go);
    free(s->gm);
    free(s->gid);
    free(s->score);
    free(s->order);
    free(s->cur);
    free(s->gorder);
    free(s->stream);
    free(s->qterms);
    icl_buf_free(&s->t1);
    icl_buf_free(&s->t2);
    free(s);
}

/* Append the normalised text of x to out (see icl_shots_key). */
static void normalise(icl_str x, icl_buf *out)
{
    icl_buf raw = {0}, low = {0};
    icl_buf_append(&raw, x.s ? x.s : "", x.n);
    icl_py_lower(raw.data, &low);
    int space = 0, any = 0;
    for (size_t i = 0; i < low.len; i++) {
        char c = low.data[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
            space = 1;
            continue;
        }
        if (space && any)
            icl_buf_putc(out, ' ');
        space = 0;
        any = 1;
        icl_buf_putc(out, c);
    }
    icl_buf_append(out, "", 0);
    icl_buf_free(&raw);
    icl_buf_free(&low);
}

uint64_t icl_shots_key(const icl_tfields *f)
{
    icl_buf b = {0};
    normalise(f->instruction, &b);
    icl_buf_append(&b, "", 1); /* the NUL between the two */
    normalise(f->input, &b);
    uint64_t h = XXH3_64bits(b.data, b.len);
    icl_buf_free(&b);
    return h ? h : 1;
}

static uint64_t label_key(const icl_tfields *f)
{
    icl_buf b = {0};
    normalise(f->output, &b);
    uint64_t h = XXH3_64bits(b.data ? b.data : "", b.len);
    icl_buf_free(&b);
    return h;
}

/* Insert h into the key set: 1 if new, 0 if present. */
static int set_add(icl_shots *s, uint64_t h)
{
    if (2 * (s->n + 1) > s->setcap) {
        size_t nc = s->setcap ? 2 * s->setcap : 1024;
        uint64_t *ns = icl_xcalloc(nc, sizeof *ns);
        for (size_t i = 0; i < s->setcap; i++)
            if (s->set[i]) {
                size_t j = s->set[i] & (nc - 1);
                while (ns[j])
                    j = (j + 1) & (nc - 1);
                ns[j] = s->set[i];
            }
        free(s->set);
        s->set = ns;
        s->setcap = nc;
    }
    size_t j = h & (s->setcap - 1);
    while (s->set[j]) {
        if (s->set[j] == h)
            return 0;
        j = (j + 1) & (s->setcap - 1);
    }
    s->set[j] = h;
    return 1;
}

static icl_str dup_str(icl_str x)
{
    char *p = icl_xmalloc(x.n + 1);
    if (x.n)
        memcpy(p, x.s, x.n);
    p[x.n] = '\0';
    return (icl_str){p, x.n};
}

int icl_shots_add(icl_shots *s, const icl_tfields *f, const json_t *id, long index)
{
    uint64_t h = icl_shots_key(f);
    if (!set_add(s, h))
        return 0;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->f = icl_xreallocarray(s->f, s->cap, sizeof *s->f);
        s->idtext = icl_xreallocarray(s->idtext, s->cap, sizeof *s->idtext);
        s->key = icl_xreallocarray(s->key, s->cap, sizeof *s->key);
        s->label = icl_xreallocarray(s->label, s->cap, sizeof *s->label);
    }
    size_t i = s->n++;
    s->f[i] = (icl_tfields){{"", 0}, dup_str(f->instruction), dup_str(f->input), dup_str(f->output)};
    icl_buf b = {0};
    if (id && !json_is_null(id))
        icl_json_put_value(&b, id);
    else
        icl_buf_printf(&b, "%ld", index);
    s->idtext[i] = icl_xstrndup(b.data, b.len);
    icl_buf_free(&b);
    s->key[i] = h;
    s->label[i] = label_key(f);
    return 1;
}

size_t icl_shots_k(const icl_shots *s)
{
    return (size_t)s->k;
}

size_t icl_shots_size(const icl_shots *s)
{
    return s->n;
}

const icl_tfields *icl_shots_fields(const icl_shots *s, size_t i)
{
    return &s->f[i];
}

void icl_shots_put_id(const icl_shots *s, size_t i, icl_buf *out)
{
    icl_buf_puts(out, s->idtext[i]);
}

/* instruction + " " + input, lower-cased and tokenized: term hashes into
 * s->qterms (s->nq of them). */
static void terms_of(icl_shots *s, const icl_tfields *f)
{
    icl_buf_clear(&s->t1);
    icl_buf_clear(&s->t2);
    icl_buf raw = {0};
    icl_buf_append(&raw, f->instruction.s ? f->instruction.s : "", f->instruction.n);
    if (f->input.n) {
        icl_buf_putc(&raw, ' ');
        icl_buf_append(&raw, f->input.s, f->input.n);
    }
    icl_buf_append(&raw, "", 0);
    icl_py_lower(raw.data, &s->t1);
    icl_buf_free(&raw);
    icl_buf_append(&s->t1, "", 0);
    icl_bleu_tokenize(s->tok, s->t1.data, &s->t2);
    s->nq = 0;
    const char *p = s->t2.data ? s->t2.data : "";
    while (*p) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (!n)
            break;
        if (s->nq == s->qcap) {
            s->qcap = s->qcap ? 2 * s->qcap : 64;
            s->qterms = icl_xreallocarray(s->qterms, s->qcap, sizeof *s->qterms);
        }
        s->qterms[s->nq++] = XXH3_64bits(p, n);
        p += n;
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_post(const void *a, const void *b)
{
    const posting *x = a, *y = b;
    if (x->term != y->term)
        return x->term < y->term ? -1 : 1;
    return x->doc < y->doc ? -1 : x->doc > y->doc;
}

static void build_bm25(icl_shots *s)
{
    icl_script_counts sc = {0};
    icl_buf b = {0};
    for (size_t i = 0; i < s->n; i++) {
        icl_buf_clear(&b);
        icl_buf_append(&b, s->f[i].instruction.s, s->f[i].instruction.n);
        icl_buf_putc(&b, ' ');
        icl_buf_append(&b, s->f[i].input.s, s->f[i].input.n);
        icl_script_count(&sc, b.data);
    }
    icl_buf_free(&b);
    s->tok = icl_script_choose(&sc);
    s->dl = icl_xcalloc(s->n + 1, sizeof *s->dl);
    size_t pcap = 0;
    double total = 0;
    for (size_t i = 0; i < s->n; i++) {
        terms_of(s, &s->f[i]);
        s->dl[i] = (uint32_t)s->nq;
        total += (double)s->nq;
        qsort(s->qterms, s->nq, sizeof *s->qterms, cmp_u64);
        for (size_t j = 0; j < s->nq;) {
            size_t e = j;
            while (e < s->nq && s->qterms[e] == s->qterms[j])
                e++;
            if (s->npost == pcap) {
                pcap = pcap ? 2 * pcap : 1024;
                s->post = icl_xreallocarray(s->post, pcap, sizeof *s->post);
            }
            s->post[s->npost++] = (posting){s->qterms[j], (uint32_t)i, (uint32_t)(e - j)};
            j = e;
        }
    }
    s->avgdl = s->n ? total / (double)s->n : 0;
    if (s->npost)
        qsort(s->post, s->npost, sizeof *s->post, cmp_post);
    s->terms = icl_xmalloc((s->npost + 1) * sizeof *s->terms);
    s->toff = icl_xmalloc((s->npost + 2) * sizeof *s->toff);
    for (size_t j = 0; j < s->npost; j++)
        if (j == 0 || s->post[j].term != s->post[j - 1].term) {
            s->terms[s->nterms] = s->post[j].term;
            s->toff[s->nterms++] = j;
        }
    s->toff[s->nterms] = s->npost;
    /* rank_bm25's BM25Okapi._calc_idf: log(N - n + 0.5) - log(n + 0.5), and
     * negative ones (terms in more than half the records) replaced by
     * epsilon * the mean of all idfs */
    s->idf = icl_xmalloc((s->nterms + 1) * sizeof *s->idf);
    double sum = 0, N = (double)s->n;
    for (size_t i = 0; i < s->nterms; i++) {
        double df = (double)(s->toff[i + 1] - s->toff[i]);
        s->idf[i] = log(N - df + 0.5) - log(df + 0.5);
        sum += s->idf[i];
    }
    double eps = s->nterms ? BM25_EPSILON * sum / (double)s->nterms : 0;
    for (size_t i = 0; i < s->nterms; i++)
        if (s->idf[i] < 0)
            s->idf[i] = eps;
}

void icl_shots_index(icl_shots *s)
{
    size_t n = s->n;
    if (s->sel == ICL_SHOTS_SIMILAR)
        build_bm25(s);
    /* groups: labels in order of first appearance (or one group) */
    s->go = icl_xcalloc(n + 2, sizeof *s->go);
    s->gm = icl_xcalloc(n + 1, sizeof *s->gm);
    size_t *gid = icl_xcalloc(n + 1, sizeof *gid);
    uint64_t *lab = icl_xcalloc(n + 1, sizeof *lab);
    size_t ng = 0;
    for (size_t i = 0; i < n; i++) {
        size_t g = 0;
        if (s->balance) {
            for (g = 0; g < ng && lab[g] != s->label[i]; g++)
                ;
            if (g == ng)
                lab[ng++] = s->label[i];
        } else if (ng == 0)
            ng = 1;
        gid[i] = g;
    }
    size_t *cnt = icl_xcalloc(ng + 1, sizeof *cnt);
    for (size_t i = 0; i < n; i++)
        cnt[gid[i]]++;
    for (size_t g = 0; g < ng; g++)
        s->go[g + 1] = s->go[g] + cnt[g];
    memset(cnt, 0, (ng + 1) * sizeof *cnt);
    for (size_t i = 0; i < n; i++)
        s->gm[s->go[gid[i]] + cnt[gid[i]]++] = i;
    s->ngroups = ng;
    free(cnt);
    free(lab);
    s->gid = gid;
    s->score = icl_xcalloc(n + 1, sizeof *s->score);
    s->order = icl_xcalloc(n + 1, sizeof *s->order);
    s->stream = icl_xcalloc(n + 1, sizeof *s->stream);
    s->cur = icl_xcalloc(ng + 1, sizeof *s->cur);
    s->gorder = icl_xcalloc(ng + 1, sizeof *s->gorder);
    s->indexed = 1;
}

/* BM25 scores of all pool records for the query into s->score. */
static void score_all(icl_shots *s, const icl_tfields *q)
{
    memset(s->score, 0, s->n * sizeof *s->score);
    terms_of(s, q);
    for (size_t t = 0; t < s->nq; t++) {
        size_t lo = 0, hi = s->nterms;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (s->terms[mid] < s->qterms[t])
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == s->nterms || s->terms[lo] != s->qterms[t])
            continue;
        double idf = s->idf[lo];
        for (size_t j = s->toff[lo]; j < s->toff[lo + 1]; j++) {
            const posting *p = &s->post[j];
            double tf = p->tf, norm = BM25_K1 * (1 - BM25_B + BM25_B * (double)s->dl[p->doc] / s->avgdl);
            s->score[p->doc] += idf * tf * (BM25_K1 + 1) / (tf + norm);
        }
    }
}

double icl_shots_bm25(icl_shots *s, const icl_tfields *q, size_t i)
{
    if (!s->indexed || s->sel != ICL_SHOTS_SIMILAR || i >= s->n)
        return NAN;
    score_all(s, q);
    return s->score[i];
}

/* The next eligible record of group g in the selection's order (random:
 * a lazy Fisher-Yates step over the group's rest), or SIZE_MAX. */
static size_t next_of(icl_shots *s, size_t g, icl_rng *rng, uint64_t qk)
{
    size_t end = s->go[g + 1];
    while (s->cur[g] < end) {
        size_t c = s->cur[g]++;
        if (s->sel == ICL_SHOTS_RANDOM) {
            size_t j = c + (size_t)icl_rng_below(rng, end - c), t = s->stream[c];
            s->stream[c] = s->stream[j];
            s->stream[j] = t;
        }
        if (s->key[s->stream[c]] != qk)
            return s->stream[c];
    }
    return SIZE_MAX;
}

static int cmp_score(const void *a, const void *b, void *ctx)
{
    const icl_shots *s = ctx;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    double sx = s->score[x], sy = s->score[y];
    if (sx != sy)
        return sx > sy ? -1 : 1;
    return x < y ? -1 : x > y;
}

size_t icl_shots_pick(icl_shots *s, const icl_tfields *q, uint64_t pos, size_t *out)
{
    if (!s->indexed)
        icl_shots_index(s);
    size_t n = s->n, k = (size_t)s->k, ng = s->ngroups, got = 0;
    if (!k || !n)
        return 0;
    uint64_t qk = icl_shots_key(q);
    icl_rng rng;
    icl_rng_seed(&rng, s->seed, pos);
    const size_t *gid = s->gid;
    /* each group's members, in the selection's order, into stream[] */
    memcpy(s->stream, s->gm, n * sizeof *s->stream);
    if (s->sel == ICL_SHOTS_SIMILAR) {
        score_all(s, q);
        for (size_t i = 0; i < n; i++)
            s->order[i] = i;
        qsort_r(s->order, n, sizeof *s->order, cmp_score, s); /* glibc's */
        size_t *fill = s->cur;
        for (size_t g = 0; g < ng; g++)
            fill[g] = s->go[g];
        for (size_t i = 0; i < n; i++)
            s->stream[fill[gid[s->order[i]]]++] = s->order[i];
    }
    for (size_t g = 0; g < ng; g++) {
        s->cur[g] = s->go[g];
        s->gorder[g] = g;
    }
    if (s->balance)
        icl_rng_shuffle(&rng, s->gorder, ng);
    if (!s->balance) {
        for (size_t c; got < k && (c = next_of(s, 0, &rng, qk)) != SIZE_MAX;)
            out[got++] = c;
    } else
        for (int progress = 1; got < k && progress;) { /* one per label in turn */
            progress = 0;
            for (size_t gi = 0; gi < ng && got < k; gi++) {
                size_t c = next_of(s, s->gorder[gi], &rng, qk);
                if (c != SIZE_MAX) {
                    out[got++] = c;
                    progress = 1;
                }
            }
        }
    if (s->balance && got > 1)
        icl_rng_shuffle(&rng, out, got);
    return got;
}
