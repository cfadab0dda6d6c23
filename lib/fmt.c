/* fmt.c - see fmt.h. */
#include "fmt.h"
#include "chat.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <xxhash.h>

#include "csvin.h"
#include "jsonin.h"
#include "jsonout.h"
#include "reader.h"
#include "record.h"
#include "rng.h"
#include "shots.h"
#include "tokenizer.h"

const char *const icl_fmt_field_names[ICL_F_N] = {"instruction", "input",  "output",  "system",
                                                  "messages",    "prompt", "response"};

#define SHAREGPT_KEY "conversations" /* read as messages when there is no "messages" */
#define WARN_MAX 5           /* warnings of one kind shown before only counting */
#define OUT_FLUSH (1u << 20) /* bytes buffered before a write */

enum { W_BAD, W_EMPTY_OUT, W_EMPTY_INSTR, W_EMPTY_TURN, W_N };

struct icl_fmt {
    icl_fmt_opts o;
    icl_fmt_stats st;
    icl_buf *L;              /* where the record being built goes: &out or &store */
    size_t rec_start;        /* its first byte in *L */
    icl_buf p, r;            /* rendered prompt and response of one turn */
    icl_buf pj, rj;          /* JSON arrays of prompts/responses (chat) */
    icl_buf carry;           /* context of exchanges with a blank answer, put before the next prompt */
    icl_buf num[ICL_F_N];    /* text of non-string JSON scalars */
    icl_buf out;             /* output waiting to be written */
    size_t hash_end;         /* line bytes covered by the dedup hash */
    /* held output (shuffle/split): records back to back in store */
    icl_buf store;
    size_t *off;
    size_t n, cap;
    /* dedup: open-addressing set of XXH3 hashes (0 = empty slot) */
    uint64_t *set;
    size_t setcap, setn;
    int has_zero;
    const char *name;        /* display name of the current input */
    long warned[W_N];
    /* failure: fail() stores the message and jumps back to the entry point
     * (icl_fmt_file, icl_fmt_finish), which cleans up what is open and
     * returns -1; nothing in this file exits */
    jmp_buf jb;
    char errmsg[1024];
    icl_csv *csv;            /* open CSV parser (its thread), freed on failure */
    icl_jarr *jarr;          /* open JSON array reader */
    json_t *obj;             /* object being converted */
    long elem;               /* its element number (from 1) in a JSON array; 0: not in one */
    int open_brace_line;     /* the input's first line is a lone "{": a JSON object over several lines */
    json_t *msgs;            /* its messages as {role, content} while they are converted */
    icl_reader rd;           /* the input being read */
    char *used;              /* do_csv's scratch */
    size_t *koff;
    icl_buf keys, cols;
    icl_buf side;            /* icl_fmt_finish's scratch */
    /* k-shot prompts */
    json_t *rec_id;          /* the current record's "id" (pool reading), a reference */
    size_t *pick;            /* the chosen pool records */
    icl_buf sp, sr, sq;      /* scratch: one turn's prompt, response; the whole prompt */
    icl_ids ids;             /* scratch: the prompt's tokens (budget) */
    size_t *perm;
    long nobj;               /* JSON records read */
    long key_seen[ICL_F_N];  /* of them, records holding each --map key */
    icl_buf keys1;           /* the first JSON record's keys, ", "-separated */
};

/* ---- options ---------------------------------------------------------- */

int icl_fmt_parse_format(const char *name)
{
    static const char *names[] = {"csv", "tsv", "jsonl", "json"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0)
            return ICL_FMT_CSV + i;
    return -1;
}

int icl_fmt_parse_map(const char *spec, const char *map[ICL_F_N], char *err, size_t errsz)
{
    const char *s = spec;
    while (*s) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        const char *eq = memchr(s, '=', len);
        if (!eq || eq == s || eq == s + len - 1) {
            snprintf(err, errsz, "bad --map entry '%.*s' (want KEY=COLUMN)", (int)len, s);
            return -1;
        }
        int k;
        for (k = 0; k < ICL_F_N; k++)
            if (strlen(icl_fmt_field_names[k]) == (size_t)(eq - s) &&
                strncmp(s, icl_fmt_field_names[k], (size_t)(eq - s)) == 0)
                break;
        if (k == ICL_F_N) {
            snprintf(err, errsz, "bad --map key '%.*s' (keys: instruction, input, output, system, "
                     "messages, prompt, response)", (int)(eq - s), s);
            return -1;
        }
        free((char *)map[k]); /* a later --map for the same key wins */
        map[k] = icl_xstrndup(eq + 1, (size_t)(s + len - eq - 1));
        s += len;
        if (*s == ',')
            s++;
    }
    return 0;
}

int icl_fmt_detect(const char *p, size_t n)
{
    size_t i = 0;
    if (n >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    if (i < n && p[i] == '[')
        return ICL_FMT_JSON;
    if (i < n && p[i] == '{')
        return ICL_FMT_JSONL;
    long tabs = 0, commas = 0;
    int q = 0;
    size_t first = i;
    for (; i < n && (q || (p[i] != '\n' && p[i] != '\r')); i++) {
        if (p[i] == '"')
            q = !q;
        else if (!q && p[i] == '\t')
            tabs++;
        else if (!q && p[i] == ',')
            commas++;
    }
    /* a first line that is a JSON value but not an object ("hello", 42,
     * null) followed by a line that is a whole JSON object with a key: JSON
     * Lines whose first record is bad (its reader then says so at line 1),
     * not a one-column CSV (a CSV row is no such object: its quotes would
     * be doubled) */
    size_t j = i, k;
    while (j < n && (p[j] == ' ' || p[j] == '\t' || p[j] == '\r' || p[j] == '\n'))
        j++;
    for (k = j; k < n && p[k] != '\n' && p[k] != '\r';)
        k++;
    if (!tabs && !commas && j < n && p[j] == '{' && k < n) {
        json_t *a = json_loadb(p + first, i - first, JSON_DECODE_ANY, NULL);
        json_t *b = a ? json_loadb(p + j, k - j, 0, NULL) : NULL;
        int jsonl = a && json_is_object(b) && json_object_size(b) > 0;
        json_decref(a);
        json_decref(b);
        if (jsonl)
            return ICL_FMT_JSONL;
    }
    return tabs > commas ? ICL_FMT_TSV : ICL_FMT_CSV;
}

/* ---- set-up ------------------------------------------------------------ */

icl_fmt *icl_fmt_new(const icl_fmt_opts *o)
{
    icl_fmt *f = icl_xcalloc(1, sizeof *f);
    f->o = *o;
    for (int k = 0; k < ICL_F_N; k++)
        if (!f->o.map[k])
            f->o.map[k] = icl_fmt_field_names[k];
    return f;
}

void icl_fmt_free(icl_fmt *f)
{
    if (f) {
        free(f->pick);
        icl_buf_free(&f->sp);
        icl_buf_free(&f->sr);
        icl_buf_free(&f->sq);
        icl_ids_free(&f->ids);
    }
    if (!f)
        return;
    icl_buf_free(&f->p);
    icl_buf_free(&f->r);
    icl_buf_free(&f->pj);
    icl_buf_free(&f->carry);
    icl_buf_free(&f->rj);
    for (int k = 0; k < ICL_F_N; k++)
        icl_buf_free(&f->num[k]);
    icl_buf_free(&f->out);
    icl_buf_free(&f->store);
    icl_buf_free(&f->keys);
    icl_buf_free(&f->cols);
    icl_buf_free(&f->keys1);
    free(f->off);
    free(f->set);
    free(f);
}

/* ---- messages ---------------------------------------------------------- */

/* A warning, through the caller's callback (none: dropped). */
/* msg, or in buf msg with "array element N: " after its "FILE:LINE: " when
 * the record being converted is element N of a JSON array: a compact array
 * (json.dump's) is one line, so the line alone does not find the record. */
static const char *at_elem(const icl_fmt *f, const char *msg, char *buf, size_t n)
{
    if (!f->elem || !f->name)
        return msg;
    size_t nl = strlen(f->name);
    if (strncmp(msg, f->name, nl) || msg[nl] != ':')
        return msg;
    const char *p = msg + nl + 1;
    if (!(*p >= '0' && *p <= '9'))
        return msg;
    while (*p >= '0' && *p <= '9')
        p++;
    if (p[0] != ':' || p[1] != ' ' || !strncmp(p + 2, "array element ", 14))
        return msg;
    snprintf(buf, n, "%.*sarray element %ld: %s", (int)(p + 2 - msg), msg, f->elem, p + 2);
    return buf;
}

__attribute__((format(printf, 2, 3)))
static void say(icl_fmt *f, const char *fmt, ...)
{
    if (f->o.quiet || !f->o.on_warning)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char el[1100];
    f->o.on_warning(f->o.warning_ctx, at_elem(f, msg, el, sizeof el));
}

/* A warning of a kind shown WARN_MAX times at most. */
#define note(f, kind, ...) \
    do { \
        if ((f)->warned[kind]++ < WARN_MAX) \
            say(f, __VA_ARGS__); \
    } while (0)

static void flush_out(icl_fmt *f, FILE *to, icl_buf *b);

/* Give up: back to the entry point with the message. */
_Noreturn static void fail(icl_fmt *f, const char *err)
{
    snprintf(f->errmsg, sizeof f->errmsg, "%s", err);
    longjmp(f->jb, 1);
}

/* Stop the run: the records before the error are written (unless held for
 * --shuffle/--split), then the error is returned. */
_Noreturn static void fatal(icl_fmt *f, const char *err)
{
    flush_out(f, f->o.out, &f->out);
    fflush(f->o.out);
    fail(f, err);
}

__attribute__((format(printf, 2, 3)))
_Noreturn static void fatalf(icl_fmt *f, const char *fmt, ...)
{
    char err[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, sizeof err, fmt, ap);
    va_end(ap);
    fatal(f, err);
}

/* A bad record: stop (exit 1) or skip and count. */
static void bad(icl_fmt *f, const char *err)
{
    char el[1100];
    err = at_elem(f, err, el, sizeof el);
    if (!f->o.skip_bad)
        fatal(f, err);
    f->st.bad++;
    note(f, W_BAD, "%s (skipped)", err);
}

__attribute__((format(printf, 3, 4)))
static void badf(icl_fmt *f, long line, const char *fmt, ...)
{
    char msg[512], err[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(err, sizeof err, "%s:%ld: %s", f->name, line, msg);
    bad(f, err);
}

/* ---- output ------------------------------------------------------------ */

/* Write b to `to` (f's out or split_out) and empty it; a failed write
 * fails naming the output ("FILE: write error: reason"). */
static void flush_out(icl_fmt *f, FILE *to, icl_buf *b)
{
    if (b->len && fwrite(b->data, 1, b->len, to) != b->len) {
        const char *name = to == f->o.split_out ? f->o.split_name : f->o.out_name;
        char err[600];
        snprintf(err, sizeof err, "%s: write error: %s", name ? name : "<stdout>", strerror(errno));
        icl_buf_clear(b);
        fail(f, err);
    }
    icl_buf_clear(b);
}

static void drop(icl_fmt *f);

/* 1 if the hash of the record so far (up to hash_end) was seen before; then
 * the record is dropped. */
static int is_dup(icl_fmt *f)
{
    if (!f->o.dedup)
        return 0;
    uint64_t h = XXH3_64bits(f->L->data + f->rec_start, f->hash_end - f->rec_start);
    if (h == 0) {
        if (f->has_zero)
            goto dup;
        f->has_zero = 1;
        return 0;
    }
    if (2 * (f->setn + 1) > f->setcap) {
        size_t nc = f->setcap ? 2 * f->setcap : 1024;
        uint64_t *ns = icl_xcalloc(nc, sizeof *ns);
        for (size_t i = 0; i < f->setcap; i++)
            if (f->set[i]) {
                size_t j = f->set[i] & (nc - 1);
                while (ns[j])
                    j = (j + 1) & (nc - 1);
                ns[j] = f->set[i];
            }
        free(f->set);
        f->set = ns;
        f->setcap = nc;
    }
    size_t j = h & (f->setcap - 1);
    while (f->set[j]) {
        if (f->set[j] == h)
            goto dup;
        j = (j + 1) & (f->setcap - 1);
    }
    f->set[j] = h;
    f->setn++;
    return 0;
dup:
    f->st.duplicates++;
    drop(f);
    return 1;
}

/* Records are written straight into the output buffer, or into the store
 * when held for --shuffle/--split; a dropped record is cut off again. */
static void begin(icl_fmt *f)
{
    f->L = (f->o.shuffle || f->o.split > 0) ? &f->store : &f->out;
    f->rec_start = f->L->len;
}

static void drop(icl_fmt *f)
{
    f->L->len = f->rec_start;
    if (f->L->data)
        f->L->data[f->L->len] = '\0';
}

/* The record in *f->L is complete but for "}\n": keep it. */
static void emit(icl_fmt *f)
{
    icl_buf_append(f->L, "}\n", 2);
    if (f->L == &f->store) {
        if (f->n == f->cap) {
            f->cap = f->cap ? 2 * f->cap : 1024;
            f->off = icl_xreallocarray(f->off, f->cap + 1, sizeof *f->off);
        }
        f->off[f->n++] = f->rec_start;
        return;
    }
    f->st.written++;
    if (f->out.len >= OUT_FLUSH)
        flush_out(f, f->o.out, &f->out);
}

/* 1 if s[0..n) is only ASCII white space (or empty): such an output is no
 * target to train on and is dropped as an empty one is */
static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\n\r\v\f", s[i]) || !s[i])
            return 0;
    return 1;
}

/* the warning for a dropped output: "empty" or "whitespace-only" */
static const char *empty_word(size_t n) { return n ? "whitespace-only" : "empty"; }

/* A multi-turn record whose exchanges k have blank answers (blank[k]: 0, 1
 * empty, 2 whitespace-only) among others: such an answer is no target (an
 * empty one would train the model to end its turn at once), so exchange k
 * becomes context, folded into the next exchange's prompt (P[k] + R[k] +
 * P[k+1]), and a blank last answer is left out with its prompt.  P and R
 * (equal-length arrays of strings) are changed in place; the warnings name
 * exchange k as what num[k] (num NULL: k + 1).  Returns how many exchanges remain: 0 when
 * every answer is blank (the record is then dropped, warned and counted as
 * an empty output). */
static size_t fold_blank(icl_fmt *f, long line, json_t *P, json_t *R, const int *blank, const char *what,
                         const size_t *num)
{
    size_t n = json_array_size(R), kept = 0, nblank = 0, k0 = n;
    for (size_t k = 0; k < n; k++)
        if (blank[k] && !nblank++)
            k0 = k;
    if (!nblank)
        return n;
    if (nblank == n) {
        f->st.empty_output++;
        note(f, W_EMPTY_OUT, "%s:%ld: %s %s %zu; record dropped%s", f->name, line,
             blank[k0] == 2 ? "whitespace-only" : "empty", what, num ? num[k0] : k0 + 1,
             n > 1 ? " (no answer to train on)" : "");
        return 0;
    }
    f->st.empty_turns++;
    note(f, W_EMPTY_TURN, "%s:%ld: %s %s %zu%s: not trained on (%s); the record's other answers are", f->name,
         line, blank[k0] == 2 ? "whitespace-only" : "empty", what, num ? num[k0] : k0 + 1,
         nblank > 1 ? " and others" : "", k0 + 1 == n ? "the last exchange, left out" : "context of the next turn");
    json_t *nP = json_array(), *nR = json_array();
    icl_buf c = {0};
    for (size_t k = 0; k < n; k++) {
        json_t *p = json_array_get(P, k), *r = json_array_get(R, k);
        icl_buf_append(&c, json_string_value(p), json_string_length(p));
        if (blank[k]) {
            icl_buf_append(&c, json_string_value(r), json_string_length(r));
            continue;
        }
        json_array_append_new(nP, json_stringn(c.data ? c.data : "", c.len));
        json_array_append(nR, r);
        icl_buf_clear(&c);
        kept++;
    }
    icl_buf_free(&c);
    json_array_clear(P);
    json_array_clear(R);
    json_array_extend(P, nP);
    json_array_extend(R, nR);
    json_decref(nP);
    json_decref(nR);
    return kept;
}

/* A conversation rendered by the model's chat template (opts.chat) and
 * split into context/target arrays.  sys (may be empty) is put first as a
 * system message when the conversation has none.  Returns 0 if dropped or
 * bad. */
static int start_chat_tpl(icl_fmt *f, const json_t *msgs, icl_str sys, long line)
{
    char err[700];
    json_t *m = icl_chat_messages(msgs, err, sizeof err);
    if (!m) {
        badf(f, line, "%s", err);
        return 0;
    }
    const char *r0 = json_string_value(json_object_get(json_array_get(m, 0), "role"));
    if (sys.n && strcmp(r0, "system")) {
        json_t *s = json_object();
        json_object_set_new(s, "role", json_string("system"));
        json_object_set_new(s, "content", json_stringn(sys.s, sys.n));
        json_array_insert_new(m, 0, s);
    }
    /* blank answers: which, and the message number of the first assistant message */
    size_t nm = json_array_size(m), na = 0, nblank = 0, k0 = 0, *num = xcalloc(nm + 1, sizeof *num);
    int *bl = xcalloc(nm + 1, sizeof *bl), kind0 = 0;
    for (size_t i = 0; i < nm; i++) {
        json_t *e = json_array_get(m, i);
        json_t *ct = json_object_get(e, "content");
        if (strcmp(json_string_value(json_object_get(e, "role")), "assistant"))
            continue;
        num[na] = i + 1;
        if (json_is_string(ct) && blank(json_string_value(ct), json_string_length(ct))) {
            bl[na] = 1 + (json_string_length(ct) > 0);
            if (!nblank++) {
                k0 = i + 1;
                kind0 = bl[na];
            }
        }
        na++;
    }
    json_t *P, *R;
    if (icl_chat_segments(f->o.chat, m, &P, &R, err, sizeof err)) {
        json_decref(m);
        free(bl);
        free(num);
        badf(f, line, "%s", err);
        return 0;
    }
    json_decref(m);
    if (nblank && (json_array_size(R) != na || nblank == na)) {
        /* every answer blank, or {% generation %} spans that are not one per
         * assistant message: no way to tell which to leave out */
        f->st.empty_output++;
        note(f, W_EMPTY_OUT, "%s:%ld: %s assistant message %zu; record dropped%s", f->name, line,
             kind0 == 2 ? "whitespace-only" : "empty", k0, nblank == na && na > 1 ? " (no answer to train on)" : "");
        free(bl);
        free(num);
        json_decref(P);
        json_decref(R);
        return 0;
    }
    fold_blank(f, line, P, R, bl, "assistant message", num); /* not every answer is blank: some remain */
    free(bl);
    free(num);
    begin(f);
    buf_puts(f->L, "{\"prompt\":");
    icl_json_put_value(f->L, P);
    buf_puts(f->L, ",\"response\":");
    icl_json_put_value(f->L, R);
    f->hash_end = f->L->len;
    buf_puts(f->L, ",\"chat\":true");
    json_decref(P);
    json_decref(R);
    return !is_dup(f);
}

/* instruction/input/output as a one-turn conversation for a chat template */
static int start_instr_chat(icl_fmt *f, const icl_tfields *tf, long line)
{
    json_t *m = json_array(), *u = json_object(), *a = json_object();
    icl_buf q = {0};
    buf_append(&q, tf->instruction.s ? tf->instruction.s : "", tf->instruction.n);
    if (tf->input.n) {
        if (q.len)
            buf_puts(&q, "\n\n");
        buf_append(&q, tf->input.s, tf->input.n);
    }
    json_object_set_new(u, "role", json_string("user"));
    json_object_set_new(u, "content", json_stringn(q.data ? q.data : "", q.len));
    json_object_set_new(a, "role", json_string("assistant"));
    json_object_set_new(a, "content", json_stringn(tf->output.s ? tf->output.s : "", tf->output.n));
    json_array_append_new(m, u);
    json_array_append_new(m, a);
    buf_free(&q);
    int r = start_chat_tpl(f, m, tf->system, line);
    json_decref(m);
    return r;
}

/* --shots with a kind of record other than instruction/input/output: bad. */
static int no_shots(icl_fmt *f, long line)
{
    if (!f->o.shots && !f->o.collect)
        return 0;
    badf(f, line, "%s needs instruction/output records (not messages or prompt/response)",
         f->o.collect ? "a --shots-from pool" : "--shots");
    return 1;
}

/* A prompt/response record given with --chat-template: refused as a bad
 * record (1), since it would pass through unrendered, without the template
 * the user asked for; 0 otherwise.  rendered: the record says "chat": true
 * (icl-fmt --chat-template's own output), which passes. */
static int no_chat_passthrough(icl_fmt *f, long line, int rendered)
{
    if (!f->o.chat || rendered)
        return 0;
    badf(f, line, "--chat-template renders messages or instruction/output records; prompt/response would "
         "pass through without the template: to render the prompt as the user message and the response "
         "as the answer, --map instruction=%s,output=%s", f->o.map[ICL_F_PROMPT], f->o.map[ICL_F_RESPONSE]);
    return 1;
}

/* The user text of a one-turn conversation: instruction, "\n\n", input. */
static json_t *user_text(const icl_tfields *tf)
{
    icl_buf q = {0};
    buf_append(&q, tf->instruction.s ? tf->instruction.s : "", tf->instruction.n);
    if (tf->input.n) {
        if (q.len)
            buf_puts(&q, "\n\n");
        buf_append(&q, tf->input.s, tf->input.n);
    }
    json_t *v = json_stringn(q.data ? q.data : "", q.len);
    buf_free(&q);
    return v;
}

static void add_msg(json_t *m, const char *role, json_t *content)
{
    json_t *e = json_object();
    json_object_set_new(e, "role", json_string(role));
    json_object_set_new(e, "content", content);
    json_array_append_new(m, e);
}

/* Render the query tf after its first k shots (f->pick) into f->sq (the
 * whole context) and f->sr (the target).  0, or -1 with the chat
 * template's error in err. */
static int render_shots(icl_fmt *f, const icl_tfields *tf, size_t k, char *err, size_t errsz)
{
    icl_buf_clear(&f->sq);
    icl_buf_clear(&f->sr);
    icl_buf_append(&f->sq, "", 0);
    if (!f->o.chat) {
        for (size_t i = 0; i < k; i++) {
            icl_tfields d = *icl_shots_fields(f->o.shots, f->pick[i]);
            d.system = tf->system; /* the query's system text, on turn 0 */
            icl_buf_clear(&f->sp);
            icl_template_render(f->o.tpl, &d, (int)i, &f->sq, &f->sp);
            icl_buf_append(&f->sq, f->sp.data, f->sp.len);
        }
        icl_template_render(f->o.tpl, tf, (int)k, &f->sq, &f->sr);
        return 0;
    }
    json_t *m = json_array();
    if (tf->system.n)
        add_msg(m, "system", json_stringn(tf->system.s, tf->system.n));
    for (size_t i = 0; i < k; i++) {
        const icl_tfields *d = icl_shots_fields(f->o.shots, f->pick[i]);
        add_msg(m, "user", user_text(d));
        add_msg(m, "assistant", json_stringn(d->output.s, d->output.n));
    }
    add_msg(m, "user", user_text(tf));
    add_msg(m, "assistant", json_stringn(tf->output.s ? tf->output.s : "", tf->output.n));
    json_t *P, *R;
    int rc = icl_chat_segments(f->o.chat, m, &P, &R, err, errsz);
    json_decref(m);
    if (rc)
        return -1;
    size_t n = json_array_size(P);
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_array_get(P, i), *r = json_array_get(R, i);
        icl_buf_append(&f->sq, json_string_value(p), json_string_length(p));
        if (i + 1 < n)
            icl_buf_append(&f->sq, json_string_value(r), json_string_length(r));
        else
            icl_buf_append(&f->sr, json_string_value(r), json_string_length(r));
    }
    icl_buf_append(&f->sr, "", 0);
    json_decref(P);
    json_decref(R);
    return 0;
}

/* A record with k shots before its prompt (opts.shots).  Returns 0 if
 * dropped or bad. */
static int start_shots(icl_fmt *f, const icl_tfields *tf, long line)
{
    size_t K = icl_shots_k(f->o.shots);
    if (!f->pick)
        f->pick = icl_xcalloc(K + 1, sizeof *f->pick);
    size_t k = icl_shots_pick(f->o.shots, tf, (uint64_t)(f->st.read - 1), f->pick);
    char err[700];
    for (;;) {
        if (render_shots(f, tf, k, err, sizeof err)) {
            badf(f, line, "%s", err);
            return 0;
        }
        if (f->o.max_prompt_tokens <= 0 || k == 0)
            break;
        f->ids.n = 0;
        if (icl_tok_encode(f->o.budget_tok, NULL, f->sq.data, f->sq.len, ICL_TOK_PARSE_SPECIAL, &f->ids, err,
                           sizeof err)) {
            badf(f, line, "%s", err);
            return 0;
        }
        if ((long)f->ids.n <= f->o.max_prompt_tokens)
            break;
        k--;
    }
    begin(f);
    icl_buf_puts(f->L, f->o.chat ? "{\"prompt\":[" : "{\"prompt\":");
    icl_json_put_str(f->L, f->sq.data, f->sq.len);
    icl_buf_puts(f->L, f->o.chat ? "],\"response\":[" : ",\"response\":");
    icl_json_put_str(f->L, f->sr.data, f->sr.len);
    if (f->o.chat)
        icl_buf_putc(f->L, ']');
    f->hash_end = f->L->len;
    if (f->o.chat)
        icl_buf_puts(f->L, ",\"chat\":true");
    icl_buf_puts(f->L, ",\"shots\":[");
    for (size_t i = 0; i < k; i++) {
        if (i)
            icl_buf_putc(f->L, ',');
        icl_shots_put_id(f->o.shots, f->pick[i], f->L);
    }
    icl_buf_putc(f->L, ']');
    return !is_dup(f);
}

/* Start a record with single prompt/response texts from the template.
 * Returns 0 if the record is dropped (empty output, duplicate). */
static int start_instr(icl_fmt *f, const icl_tfields *tf, long line)
{
    if (blank(tf->output.s, tf->output.n)) {
        f->st.empty_output++;
        note(f, W_EMPTY_OUT, "%s:%ld: %s output; record dropped", f->name, line,
             tf->output.n ? "whitespace-only" : "empty or missing");
        return 0;
    }
    if (tf->instruction.n == 0) {
        f->st.empty_instruction++;
        note(f, W_EMPTY_INSTR, "%s:%ld: empty or missing instruction", f->name, line);
    }
    if (f->o.collect) {
        icl_shots_add(f->o.collect, tf, f->rec_id, f->st.read - 1);
        return 0;
    }
    if (f->o.shots)
        return start_shots(f, tf, line);
    if (f->o.chat)
        return start_instr_chat(f, tf, line);
    icl_buf_clear(&f->p);
    icl_buf_clear(&f->r);
    int same = icl_template_response_is_output(f->o.tpl);
    icl_template_render(f->o.tpl, tf, 0, &f->p, same ? NULL : &f->r);
    begin(f);
    icl_buf_puts(f->L, "{\"prompt\":");
    icl_json_put_str(f->L, f->p.data, f->p.len);
    icl_buf_puts(f->L, ",\"response\":");
    if (same)
        icl_json_put_str(f->L, tf->output.s, tf->output.n);
    else
        icl_json_put_str(f->L, f->r.data, f->r.len);
    f->hash_end = f->L->len;
    return !is_dup(f);
}

/* why the reader stopped early, in e: a read error, or EFBIG, a line (a
 * record) longer than the reader holds (ICL_READER_MAX: /dev/zero) */
static void read_error_msg(const icl_reader *rd, char *e, size_t n)
{
    if (rd->errnum == EFBIG)
        snprintf(e, n, "%s: a line longer than %zu MiB", rd->name, ICL_READER_MAX >> 20);
    else
        snprintf(e, n, "%s: read error: %s", rd->name, strerror(rd->errnum));
}

/* The input ended: because it could not be read?  Then that is the error. */
static void check_read(icl_fmt *f, const icl_reader *rd)
{
    if (rd->errnum) {
        char e[600];
        read_error_msg(rd, e, sizeof e);
        fatal(f, e);
    }
}

/* ---- CSV / TSV --------------------------------------------------------- */

/* The column of each field (idx[k], -1: none) from the header row; a
 * duplicate name or a --map naming no column stops the conversion. */
static int cmp_names(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* When the format was detected and a column name holds the other
 * delimiter (a TSV header with a comma read as CSV, say): what to add to a
 * message naming the columns. */
static const char *delim_hint(const icl_fmt *f, const icl_csv_row *h, char delim)
{
    if (f->o.format != ICL_FMT_AUTO)
        return "";
    for (size_t i = 0; i < h->nfields; i++)
        if (strchr(h->field[i], delim == ',' ? '\t' : ','))
            return delim == ',' ? "; read as CSV: if it is TSV, give -f tsv" : "; read as TSV: if it is CSV, give -f csv";
    return "";
}

static void csv_columns(icl_fmt *f, const icl_csv_row *h, long idx[ICL_F_N], char delim)
{
    size_t nc = h->nfields;
    if (nc > 1) { /* duplicates: neighbours once sorted (n log n: a header of 100k columns is no longer minutes) */
        const char **sorted = xmalloc(nc * sizeof *sorted);
        memcpy(sorted, h->field, nc * sizeof *sorted);
        qsort(sorted, nc, sizeof *sorted, cmp_names);
        for (size_t i = 1; i < nc; i++)
            if (strcmp(sorted[i], sorted[i - 1]) == 0) {
                const char *dup = sorted[i]; /* h's */
                free(sorted);
                fatalf(f, "%s:%ld: duplicate column name '%s'", f->name, h->line, dup);
            }
        free(sorted);
    }
    for (int k = 0; k < ICL_F_N; k++) {
        idx[k] = -1;
        for (size_t i = 0; i < nc; i++)
            if (strcmp(h->field[i], f->o.map[k]) == 0)
                idx[k] = (long)i;
        for (size_t i = 0; i < nc && k == ICL_F_MESSAGES && f->o.map[k] == icl_fmt_field_names[k]; i++)
            if (idx[k] < 0 && strcmp(h->field[i], SHAREGPT_KEY) == 0)
                idx[k] = (long)i; /* ShareGPT's name for it */
        if (idx[k] < 0 && f->o.map[k] != icl_fmt_field_names[k]) {
            icl_buf_clear(&f->cols);
            for (size_t i = 0; i < nc; i++)
                icl_buf_printf(&f->cols, "%s%s", i ? ", " : "", h->field[i]);
            fatalf(f, "%s:%ld: no column '%s' for --map %s (columns: %s%s)", f->name, h->line, f->o.map[k],
                icl_fmt_field_names[k], f->cols.data, delim_hint(f, h, delim));
        }
    }
}

static void do_csv(icl_fmt *f, icl_reader *rd, char delim)
{
    char err[700];
    icl_csv *c = f->csv = icl_csv_new(rd, delim);
    icl_csv_set_threads(c, f->o.threads); /* parse while we render and write */
    icl_csv_row h, row;
    int rc = icl_csv_header(c, &h, err, sizeof err);
    if (rc < 0)
        fatal(f, err);
    if (rc == 0) {
        check_read(f, rd);
        say(f, "%s: empty input, no records", f->name);
        icl_csv_free(c);
        f->csv = NULL;
        return;
    }
    size_t nc = h.nfields;
    long idx[ICL_F_N];
    csv_columns(f, &h, idx, delim);
    int msgs = f->o.chat && idx[ICL_F_MESSAGES] >= 0; /* a column of JSON arrays */
    int instr = !msgs && (idx[ICL_F_INSTRUCTION] >= 0 || idx[ICL_F_OUTPUT] >= 0);
    int pr = !msgs && !instr && idx[ICL_F_PROMPT] >= 0 && idx[ICL_F_RESPONSE] >= 0;
    if (!msgs && (f->o.map[ICL_F_MESSAGES] != icl_fmt_field_names[ICL_F_MESSAGES] ||
                  (!instr && !pr && idx[ICL_F_MESSAGES] >= 0)))
        fatalf(f, "%s: chat messages (column '%s') are read from CSV only with --chat-template MODEL", f->name,
            f->o.map[ICL_F_MESSAGES]);
    if (!msgs && (instr ? idx[ICL_F_OUTPUT] < 0 : !pr)) { /* every row would be dropped or refused */
        icl_buf_clear(&f->cols);
        for (size_t i = 0; i < nc; i++)
            icl_buf_printf(&f->cols, "%s%s", i ? ", " : "", h.field[i]);
        if (instr) {
            int resp = 0; /* a column named as the other scheme's answer: the likely one */
            for (size_t i = 0; i < nc && !resp; i++)
                resp = !strcmp(h.field[i], "response");
            fatalf(f, "%s:%ld: no column '%s' for the answers (columns: %s%s); name it with --map output=%s",
                f->name, h.line, f->o.map[ICL_F_OUTPUT], f->cols.data, delim_hint(f, &h, delim),
                resp ? "response" : "COL");
        }
        fatalf(f, "%s:%ld: no instruction/output or prompt/response columns (columns: %s%s); name them with --map "
            "instruction=COL,output=COL", f->name, h.line, f->cols.data, delim_hint(f, &h, delim));
    }
    char *used = f->used = icl_xcalloc(nc, 1);
    for (int k = instr ? ICL_F_INSTRUCTION : ICL_F_PROMPT; k <= (instr ? ICL_F_SYSTEM : ICL_F_RESPONSE);
         k++)
        if (!msgs && k != ICL_F_MESSAGES && idx[k] >= 0)
            used[idx[k]] = 1;
    if (msgs) {
        used[idx[ICL_F_MESSAGES]] = 1;
        if (idx[ICL_F_SYSTEM] >= 0)
            used[idx[ICL_F_SYSTEM]] = 1;
    }
    for (size_t i = 0; i < nc; i++)
        if (!used[i] && (strcmp(h.field[i], "prompt") == 0 || strcmp(h.field[i], "response") == 0)) {
            int p = h.field[i][0] == 'p', k = p ? ICL_F_INSTRUCTION : ICL_F_OUTPUT; /* the role it resembles */
            if (instr && idx[k] >= 0) /* that role has its column already: one of the two is extra */
                fatalf(f, "%s:%ld: column '%s' would be overwritten by the rendered record, and column '%s' is "
                    "the %s already: drop one of them, or --map %s=%s to read '%s' as the %s instead",
                    f->name, h.line, h.field[i], f->o.map[k], p ? "instruction" : "answer", p ? "instruction" : "output",
                    h.field[i], h.field[i], p ? "instruction" : "answer");
            fatalf(f, "%s:%ld: column '%s' would be overwritten by the rendered record; use --map (%s)",
                f->name, h.line, h.field[i], !instr ? "--map prompt=COL,response=COL"
                : p ? "--map instruction=prompt reads it as the instruction"
                : "--map output=response reads it as the answer");
        }
    /* JSON text of the passed-through column names, made once. */
    icl_buf *keys = &f->keys;
    icl_buf_clear(keys);
    size_t *koff = f->koff = icl_xcalloc(nc + 1, sizeof *koff);
    for (size_t i = 0; i < nc; i++) {
        koff[i] = keys->len;
        if (!used[i]) {
            icl_buf_putc(keys, ',');
            icl_json_put_str(keys, h.field[i], h.len[i]);
            icl_buf_putc(keys, ':');
        }
    }
    koff[nc] = keys->len;
    long nrows = 0, idcol = -1;
    for (size_t i = 0; i < nc; i++)
        if (strcmp(h.field[i], "id") == 0)
            idcol = (long)i;
    while ((rc = icl_csv_next(c, &row, err, sizeof err)) != 0) {
        f->st.read++;
        nrows++;
        if (rc < 0) {
            bad(f, err);
            continue;
        }
#define COL(k) (idx[k] >= 0 ? (icl_str){row.field[idx[k]], row.len[idx[k]]} : (icl_str){"", 0})
        if (msgs && no_shots(f, row.line))
            continue;
        if (msgs) {
            json_error_t je;
            json_t *m = json_loadb(row.field[idx[ICL_F_MESSAGES]], row.len[idx[ICL_F_MESSAGES]], 0, &je);
            if (!m) {
                badf(f, row.line, "column '%s': not a JSON array of messages (%s)", f->o.map[ICL_F_MESSAGES],
                     je.text);
                continue;
            }
            int ok = start_chat_tpl(f, m, COL(ICL_F_SYSTEM), row.line);
            json_decref(m);
            if (!ok)
                continue;
        } else if (instr) {
            icl_tfields tf = {COL(ICL_F_SYSTEM), COL(ICL_F_INSTRUCTION), COL(ICL_F_INPUT),
                              COL(ICL_F_OUTPUT)};
            if (f->o.collect && idcol >= 0)
                f->rec_id = json_stringn(row.field[idcol], row.len[idcol]);
            int ok = start_instr(f, &tf, row.line);
            json_decref(f->rec_id);
            f->rec_id = NULL;
            if (!ok)
                continue;
        } else {
            if (no_shots(f, row.line) || no_chat_passthrough(f, row.line, 0))
                continue;
            icl_str p = COL(ICL_F_PROMPT), r = COL(ICL_F_RESPONSE);
            if (blank(r.s, r.n)) {
                f->st.empty_output++;
                note(f, W_EMPTY_OUT, "%s:%ld: %s response; record dropped", f->name, row.line, empty_word(r.n));
                continue;
            }
            begin(f);
            icl_buf_puts(f->L, "{\"prompt\":");
            icl_json_put_str(f->L, p.s, p.n);
            icl_buf_puts(f->L, ",\"response\":");
            icl_json_put_str(f->L, r.s, r.n);
            f->hash_end = f->L->len;
            if (is_dup(f))
                continue;
        }
#undef COL
        for (size_t i = 0; i < nc; i++)
            if (!used[i]) {
                icl_buf_append(f->L, keys->data + koff[i], koff[i + 1] - koff[i]);
                icl_json_put_str(f->L, row.field[i], row.len[i]);
            }
        emit(f);
    }
    check_read(f, rd);
    if (nrows == 0)
        say(f, "%s: header only, no records", f->name);
    free(koff);
    free(used);
    f->koff = NULL;
    f->used = NULL;
    icl_csv_free(c);
    f->csv = NULL;
}

/* ---- JSON objects ------------------------------------------------------ */

/* Look up src in o: the key itself, else a path "a.b[0].c" / "a.b.0.c". */
static json_t *get_path(json_t *o, const char *src)
{
    json_t *v = json_object_get(o, src);
    if (v || (!strchr(src, '.') && !strchr(src, '[')))
        return v;
    v = o;
    const char *s = src;
    char seg[256];
    while (*s && v) {
        size_t n = strcspn(s, ".[]");
        if (n >= sizeof seg)
            return NULL;
        memcpy(seg, s, n);
        seg[n] = '\0';
        s += n;
        if (*s == ']')
            s++;
        if (*s == '.' || *s == '[')
            s++;
        if (n == 0)
            continue;
        if (json_is_object(v))
            v = json_object_get(v, seg);
        else if (json_is_array(v)) {
            long i;
            if (icl_parse_long(seg, &i) < 0 || i < 0)
                return NULL;
            v = json_array_get(v, (size_t)i);
        } else
            return NULL;
    }
    return v;
}

/* Length of the first key of a path ("instances" of "instances[0].x"). */
static size_t root_len(const char *src)
{
    return strcspn(src, ".[");
}

/* A field value as text: 1 ok (s may be empty), 0 missing/null, -1 wrong type. */
static int field_str(icl_fmt *f, int k, json_t *v, icl_str *out)
{
    *out = (icl_str){"", 0};
    if (!v || json_is_null(v))
        return 0;
    if (json_is_string(v)) {
        *out = (icl_str){json_string_value(v), json_string_length(v)};
        return 1;
    }
    if (json_is_number(v) || json_is_boolean(v)) {
        icl_buf_clear(&f->num[k]);
        icl_record_dump(&f->num[k], v);
        *out = (icl_str){f->num[k].data, f->num[k].len};
        return 1;
    }
    return -1;
}

static const char *type_name(json_t *v)
{
    return json_is_object(v) ? "an object" : json_is_array(v) ? "an array" : "not a string";
}

static int is_used(const char *key, const char *used[], size_t nused)
{
    for (size_t i = 0; i < nused; i++) {
        size_t n = root_len(used[i]);
        if (strcmp(key, used[i]) == 0 || (strlen(key) == n && strncmp(key, used[i], n) == 0))
            return 1;
    }
    return 0;
}

static int chat_turns(icl_fmt *f, json_t *m, icl_str sys, const char *key, long line);

/* Chat record: messages (OpenAI or ShareGPT, from the key or column key)
 * -> arrays.  Returns 0 if dropped or bad. */
static int start_chat(icl_fmt *f, json_t *m, icl_str sys, const char *key, long line)
{
    if (no_shots(f, line))
        return 0;
    if (f->o.chat)
        return start_chat_tpl(f, m, sys, line);
    if (!json_is_array(m) || json_array_size(m) == 0) {
        badf(f, line, "'%s' must be a non-empty array of {role, content} or {from, value}", key);
        return 0;
    }
    /* ShareGPT {from, value} turns become {role, content} (chat.h) */
    char err[700];
    json_t *norm = icl_chat_messages(m, err, sizeof err);
    if (!norm) {
        badf(f, line, "%s", err);
        return 0;
    }
    f->msgs = norm; /* freed by cleanup if a bad record stops the run */
    int ok = chat_turns(f, norm, sys, key, line);
    f->msgs = NULL;
    json_decref(norm);
    return ok;
}

/* The exchanges of the {role, content} messages m rendered by the template
 * into a record.  Returns 0 if dropped or bad. */
static int chat_turns(icl_fmt *f, json_t *m, icl_str sys, const char *key, long line)
{
    size_t n = json_array_size(m);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(m, i);
        if (!json_is_object(e) || !json_is_string(json_object_get(e, "role")) ||
            !json_is_string(json_object_get(e, "content"))) {
            badf(f, line, "message %zu: want an object with string \"role\" and \"content\" (or ShareGPT "
                 "\"from\" and \"value\")", i + 1);
            return 0;
        }
    }
#define ROLE(i) json_string_value(json_object_get(json_array_get(m, i), "role"))
#define CONTENT(i) ((icl_str){json_string_value(json_object_get(json_array_get(m, i), "content")), \
                              json_string_length(json_object_get(json_array_get(m, i), "content"))})
    size_t i = 0;
    if (strcmp(ROLE(0), "system") == 0) {
        sys = CONTENT(0);
        i = 1;
    }
    icl_buf_clear(&f->pj);
    icl_buf_clear(&f->rj);
    icl_buf_clear(&f->carry);
    int turn = 0, kept = 0, kind0 = 0;
    size_t nblank = 0, k0 = 0;
    for (; i < n; i += 2, turn++) {
        if (strcmp(ROLE(i), "user") != 0) {
            badf(f, line, "message %zu: role '%s' where 'user' was expected (a system message "
                 "first, then user and assistant alternating)", i + 1, ROLE(i));
            return 0;
        }
        if (i + 1 == n) {
            badf(f, line, "the conversation ends with a user message that has no answer");
            return 0;
        }
        if (strcmp(ROLE(i + 1), "assistant") != 0) {
            badf(f, line, "message %zu: role '%s' where 'assistant' was expected", i + 2,
                 ROLE(i + 1));
            return 0;
        }
        icl_tfields tf = {sys, CONTENT(i), {"", 0}, CONTENT(i + 1)};
        int bl = blank(tf.output.s, tf.output.n);
        if (bl && !nblank++) {
            k0 = i + 2;
            kind0 = tf.output.n > 0;
        }
        if (tf.instruction.n == 0) {
            f->st.empty_instruction++;
            note(f, W_EMPTY_INSTR, "%s:%ld: empty user message %zu", f->name, line, i + 1);
        }
        icl_buf_clear(&f->p);
        icl_buf_clear(&f->r);
        icl_template_render(f->o.tpl, &tf, turn, &f->p, &f->r);
        if (bl) { /* no target (fold_blank): context of the next exchange */
            icl_buf_append(&f->carry, f->p.data, f->p.len);
            icl_buf_append(&f->carry, f->r.data, f->r.len);
            continue;
        }
        icl_buf_putc(&f->pj, kept ? ',' : '[');
        icl_buf_putc(&f->rj, kept ? ',' : '[');
        if (f->carry.len) {
            icl_buf_append(&f->carry, f->p.data, f->p.len);
            icl_json_put_str(&f->pj, f->carry.data, f->carry.len);
            icl_buf_clear(&f->carry);
        } else
            icl_json_put_str(&f->pj, f->p.data, f->p.len);
        icl_json_put_str(&f->rj, f->r.data, f->r.len);
        kept++;
    }
#undef ROLE
#undef CONTENT
    if (turn == 0) {
        badf(f, line, "no user/assistant exchange in '%s'", key);
        return 0;
    }
    if (!kept) {
        f->st.empty_output++;
        note(f, W_EMPTY_OUT, "%s:%ld: %s assistant message %zu; record dropped%s", f->name, line,
             kind0 ? "whitespace-only" : "empty", k0, turn > 1 ? " (no answer to train on)" : "");
        return 0;
    }
    if (nblank) {
        f->st.empty_turns++;
        note(f, W_EMPTY_TURN, "%s:%ld: %s assistant message %zu%s: not trained on (%s); the record's other answers "
             "are", f->name, line, kind0 ? "whitespace-only" : "empty", k0, nblank > 1 ? " and others" : "",
             k0 == n ? "the last exchange, left out" : "context of the next turn");
    }
    icl_buf_putc(&f->pj, ']');
    icl_buf_putc(&f->rj, ']');
    begin(f);
    icl_buf_puts(f->L, "{\"prompt\":");
    icl_buf_append(f->L, f->pj.data, f->pj.len);
    icl_buf_puts(f->L, ",\"response\":");
    icl_buf_append(f->L, f->rj.data, f->rj.len);
    f->hash_end = f->L->len;
    return !is_dup(f);
}

/* A prompt/response value given as is: a string, or an array of strings.
 * *empty: 1 if it (or one of them) is empty, 2 if whitespace-only. */
static int check_pr(json_t *v, size_t *n, int *empty)
{
    if (json_is_string(v)) {
        *n = 0;
        *empty = blank(json_string_value(v), json_string_length(v)) ? 1 + (json_string_length(v) > 0) : 0;
        return 1;
    }
    if (!json_is_array(v) || json_array_size(v) == 0)
        return 0;
    *n = json_array_size(v);
    *empty = 0;
    for (size_t i = 0; i < *n; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e))
            return 0;
        if (blank(json_string_value(e), json_string_length(e)) && !*empty)
            *empty = 1 + (json_string_length(e) > 0);
    }
    return 1;
}

static void do_obj(icl_fmt *f, json_t *o, long line)
{
    const char **map = f->o.map;
    json_t *v[ICL_F_N];
    if (f->nobj++ == 0 && json_is_object(o)) { /* named if no record turns out to hold an answer */
        const char *key;
        json_t *val;
        icl_buf_clear(&f->keys1);
        json_object_foreach(o, key, val)
            icl_buf_printf(&f->keys1, "%s%s", f->keys1.len ? ", " : "", key);
    }
    for (int k = 0; k < ICL_F_N; k++)
        if ((v[k] = get_path(o, map[k])))
            f->key_seen[k]++;
    const char *msgkey = map[ICL_F_MESSAGES];
    if (!v[ICL_F_MESSAGES] && msgkey == icl_fmt_field_names[ICL_F_MESSAGES] &&
        json_is_array(json_object_get(o, SHAREGPT_KEY))) {
        v[ICL_F_MESSAGES] = json_object_get(o, SHAREGPT_KEY); /* ShareGPT's name for it */
        msgkey = SHAREGPT_KEY;
    }
    const char *used[4];
    size_t nused = 0;
    icl_str s[ICL_F_N];
    for (int k = ICL_F_INSTRUCTION; k <= ICL_F_SYSTEM; k++)
        if (field_str(f, k, v[k], &s[k]) < 0) {
            badf(f, line, "'%s' is %s", map[k], type_name(v[k]));
            return;
        }
    if (v[ICL_F_MESSAGES] && !json_is_null(v[ICL_F_MESSAGES])) {
        used[nused++] = msgkey;
        if (v[ICL_F_SYSTEM])
            used[nused++] = map[ICL_F_SYSTEM];
        if (!start_chat(f, v[ICL_F_MESSAGES], s[ICL_F_SYSTEM], msgkey, line))
            return;
    } else if ((v[ICL_F_INSTRUCTION] && !json_is_null(v[ICL_F_INSTRUCTION])) ||
               (v[ICL_F_OUTPUT] && !json_is_null(v[ICL_F_OUTPUT]))) {
        for (int k = ICL_F_INSTRUCTION; k <= ICL_F_SYSTEM; k++)
            if (v[k])
                used[nused++] = map[k];
        icl_tfields tf = {s[ICL_F_SYSTEM], s[ICL_F_INSTRUCTION], s[ICL_F_INPUT], s[ICL_F_OUTPUT]};
        if (f->o.collect)
            f->rec_id = json_incref(json_object_get(o, "id"));
        int ok = start_instr(f, &tf, line);
        json_decref(f->rec_id);
        f->rec_id = NULL;
        if (!ok)
            return;
    } else if (v[ICL_F_PROMPT] && v[ICL_F_RESPONSE]) {
        if (no_shots(f, line) || no_chat_passthrough(f, line, json_is_true(json_object_get(o, "chat"))))
            return;
        size_t np, nr;
        int ep, er;
        if (!check_pr(v[ICL_F_PROMPT], &np, &ep) || !check_pr(v[ICL_F_RESPONSE], &nr, &er) ||
            np != nr) {
            badf(f, line, "'%s' and '%s' must be two strings or two arrays of strings of equal "
                 "length", map[ICL_F_PROMPT], map[ICL_F_RESPONSE]);
            return;
        }
        json_t *P = v[ICL_F_PROMPT], *R = v[ICL_F_RESPONSE], *cP = NULL, *cR = NULL;
        if (er && nr) { /* arrays: the exchanges with a blank response become context (fold_blank) */
            int *bl = xcalloc(nr, sizeof *bl);
            for (size_t k = 0; k < nr; k++) {
                json_t *e = json_array_get(R, k);
                bl[k] = blank(json_string_value(e), json_string_length(e)) ? 1 + (json_string_length(e) > 0) : 0;
            }
            P = cP = json_copy(P);
            R = cR = json_copy(R);
            size_t kept = fold_blank(f, line, P, R, bl, "response", NULL);
            free(bl);
            if (!kept) {
                json_decref(cP);
                json_decref(cR);
                return;
            }
        } else if (er) {
            f->st.empty_output++;
            note(f, W_EMPTY_OUT, "%s:%ld: %s response; record dropped", f->name, line, er == 2 ? "whitespace-only" : "empty");
            return;
        }
        used[nused++] = map[ICL_F_PROMPT];
        used[nused++] = map[ICL_F_RESPONSE];
        begin(f);
        icl_buf_puts(f->L, "{\"prompt\":");
        icl_json_put_value(f->L, P);
        icl_buf_puts(f->L, ",\"response\":");
        icl_json_put_value(f->L, R);
        json_decref(cP);
        json_decref(cR);
        f->hash_end = f->L->len;
        if (is_dup(f))
            return;
    } else {
        if (v[ICL_F_PROMPT] || v[ICL_F_RESPONSE]) {
            /* OpenAI's legacy fine-tuning data is {"prompt", "completion"} */
            int compl = v[ICL_F_PROMPT] && map[ICL_F_RESPONSE] == icl_fmt_field_names[ICL_F_RESPONSE] &&
                        json_is_string(json_object_get(o, "completion"));
            badf(f, line, "a record with '%s' needs '%s' too%s", v[ICL_F_PROMPT] ? map[ICL_F_PROMPT] :
                 map[ICL_F_RESPONSE], v[ICL_F_PROMPT] ? map[ICL_F_RESPONSE] : map[ICL_F_PROMPT],
                 compl ? " (prompt/completion data, as OpenAI's: --map response=completion)" : "");
        } else {
            /* name the keys, and a key holding the records themselves ({"data": [...]}) */
            char keys[300] = "", nest[400] = "";
            size_t kl = 0;
            const char *key;
            json_t *val;
            json_object_foreach(o, key, val) {
                if (kl < sizeof keys - 1) {
                    int w = snprintf(keys + kl, sizeof keys - kl, "%s%.100s", kl ? ", " : "", key);
                    kl = w < 0 ? kl : kl + (size_t)w;
                }
                if (!nest[0] && json_is_array(val) && json_is_object(json_array_get(val, 0)))
                    snprintf(nest, sizeof nest, "; '%.100s' holds an array of objects: if they are the records, "
                             "give icl-fmt that array (jq '.%.100s' FILE > rows.json)", key, key);
            }
            if (kl >= sizeof keys - 1)
                memcpy(keys + sizeof keys - 4, "...", 4);
            badf(f, line, "no instruction/output, messages (or ShareGPT conversations) or "
                 "prompt/response keys (keys: %s%s); name them with --map", keys, nest);
        }
        return;
    }
    const char *key;
    json_t *val;
    json_object_foreach(o, key, val) {
        if (is_used(key, used, nused))
            continue;
        if (strcmp(key, "prompt") == 0 || strcmp(key, "response") == 0) {
            drop(f);
            badf(f, line, "key '%s' would be overwritten by the rendered record; use --map", key);
            return;
        }
        icl_buf_putc(f->L, ',');
        icl_json_put_str(f->L, key, strlen(key));
        icl_buf_putc(f->L, ':');
        icl_json_put_value(f->L, val);
    }
    emit(f);
}

static void do_json(icl_fmt *f, icl_reader *rd, int array)
{
    char err[700];
    json_t *o;
    long line, n = 0;
    int rc;
    icl_jarr *a = NULL; /* on the heap: a fatal error's longjmp leaves this frame, cleanup frees it */
    if (array) {
        a = xcalloc(1, sizeof *a);
        icl_jarr_init(a, rd);
        f->jarr = a;
    }
    else
        icl_reader_skip_bom(rd);
    for (;;) {
        rc = array ? icl_jarr_next(a, &o, &line, err, sizeof err)
                   : icl_jsonl_next(rd, &o, &line, err, sizeof err);
        if (rc == 0)
            break;
        n++;
        f->st.read++;
        if (rc < 0 && !array && n == 1 && f->open_brace_line) {
            /* valid JSON, but one object pretty-printed: not JSON Lines */
            char e2[900];
            snprintf(e2, sizeof e2, "%s:1: a JSON object over several lines, not JSON Lines (one object a line) "
                     "nor a JSON array of objects: if it holds the records in a key ({\"data\": [...]}), give "
                     "icl-fmt that array (jq '.data' FILE > rows.json); pretty-printed objects one after another: "
                     "jq -c . FILE > rows.jsonl",
                     f->name);
            fatal(f, e2);
        }
        if (rc == -2)
            fatal(f, err);
        if (rc < 0) {
            bad(f, err);
            continue;
        }
        f->obj = o;
        f->elem = array ? a->count : 0;
        do_obj(f, o, line);
        f->elem = 0;
        f->obj = NULL;
        json_decref(o);
    }
    if (array) {
        icl_jarr_free(a);
        free(a);
        f->jarr = NULL;
    }
    check_read(f, rd);
    if (n == 0)
        say(f, "%s: empty input, no records", f->name);
}

/* ---- driver ------------------------------------------------------------ */

/* After a failure: free what the failed input left open. */
static void cleanup(icl_fmt *f)
{
    if (f->csv)
        icl_csv_free(f->csv);
    if (f->jarr) {
        icl_jarr_free(f->jarr);
        free(f->jarr);
    }
    if (f->obj)
        json_decref(f->obj);
    json_decref(f->msgs);
    f->msgs = NULL;
    f->csv = NULL;
    f->jarr = NULL;
    f->obj = NULL;
    f->elem = 0;
    json_decref(f->rec_id);
    f->rec_id = NULL;
    icl_reader_close(&f->rd);
    free(f->used);
    free(f->koff);
    f->used = NULL;
    f->koff = NULL;
}

int icl_fmt_file(icl_fmt *f, const char *path, char *err, size_t errsz)
{
    icl_reader *rd = &f->rd;
    memset(rd, 0, sizeof *rd);
    if (setjmp(f->jb)) {
        if (rd->errnum) /* the input ended early because it could not be read */
            read_error_msg(rd, err, errsz);
        else
            icl_seterr(err, errsz, "%s", f->errmsg);
        cleanup(f);
        return -1;
    }
    flush_out(f, f->o.out, &f->out); /* the records so far stay written if this input fails */
    char oerr[600];
    if (icl_reader_open(rd, path, oerr, sizeof oerr) != 0)
        fail(f, oerr);
    f->name = rd->name;
    int fmt = f->o.format;
    if (fmt == ICL_FMT_AUTO) {
        const char *p;
        size_t n = icl_reader_peek(rd, 65536, &p);
        fmt = icl_fmt_detect(p, n);
    }
    f->open_brace_line = 0;
    if (fmt == ICL_FMT_JSONL) { /* a lone "{" first: no JSON Lines record is that */
        const char *p;
        size_t n = icl_reader_peek(rd, 65536, &p), i = 0;
        if (n >= 3 && !memcmp(p, "\xEF\xBB\xBF", 3))
            i = 3;
        while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
            i++;
        if (i < n && p[i] == '{') {
            i++;
            while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r'))
                i++;
            f->open_brace_line = i < n && p[i] == '\n';
        }
    }
    switch (fmt) {
    case ICL_FMT_TSV: do_csv(f, rd, '\t'); break;
    case ICL_FMT_JSONL: do_json(f, rd, 0); break;
    case ICL_FMT_JSON: do_json(f, rd, 1); break;
    default: do_csv(f, rd, ','); break;
    }
    if (rd->errnum) {
        char e[600];
        read_error_msg(rd, e, sizeof e);
        fatal(f, e);
    }
    icl_reader_close(rd);
    return 0;
}

static void put_held(icl_fmt *f, icl_buf *b, FILE *to, size_t i)
{
    icl_buf_append(b, f->store.data + f->off[i], f->off[i + 1] - f->off[i]);
    if (b->len >= OUT_FLUSH)
        flush_out(f, to, b);
}

int icl_fmt_finish(icl_fmt *f, icl_fmt_stats *st, char *err, size_t errsz)
{
    if (setjmp(f->jb)) {
        icl_buf_free(&f->side);
        free(f->perm);
        free(f->used);
        f->perm = NULL;
        f->used = NULL;
        icl_seterr(err, errsz, "%s", f->errmsg);
        return -1;
    }
    /* a --map key that no JSON record has is a mistake (a typo, the wrong
     * file), not records to pass on with an empty field (CSV: the header
     * check says so at once); input and system may be absent everywhere */
    for (int k = 0; k < ICL_F_N && f->nobj; k++)
        if (k != ICL_F_INPUT && k != ICL_F_SYSTEM && f->o.map[k] != icl_fmt_field_names[k] && !f->key_seen[k]) {
            char e[600];
            snprintf(e, sizeof e, "--map %s=%s: no record has the key '%s'", icl_fmt_field_names[k], f->o.map[k],
                     f->o.map[k]);
            fail(f, e);
        }
    /* instruction records and not one answer: the answers' key is named
     * otherwise (every record was dropped) */
    if (f->key_seen[ICL_F_INSTRUCTION] && !f->key_seen[ICL_F_OUTPUT] && f->st.empty_output >= f->nobj &&
        !f->o.collect) {
        char e[900];
        snprintf(e, sizeof e, "no record has the key '%s' for the answers (the first record's keys: %.600s); name "
                 "it with --map output=KEY", f->o.map[ICL_F_OUTPUT], f->keys1.data ? f->keys1.data : "");
        fail(f, e);
    }
    if (f->o.shuffle || f->o.split > 0) {
        size_t n = f->n;
        if (f->off)
            f->off[n] = f->store.len;
        f->perm = icl_xmalloc((n + 1) * sizeof *f->perm);
        for (size_t i = 0; i < n; i++)
            f->perm[i] = i;
        icl_rng rng;
        icl_rng_seed(&rng, f->o.seed, 0);
        icl_rng_shuffle(&rng, f->perm, n);
        size_t k = n;
        if (f->o.split > 0)
            k = (size_t)floor(f->o.split * (double)n + 0.5);
        if (f->o.shuffle) {
            for (size_t i = 0; i < n; i++)
                put_held(f, i < k ? &f->out : &f->side, i < k ? f->o.out : f->o.split_out, f->perm[i]);
        } else {
            /* A seeded random subset of k records; both parts keep input order. */
            char *mainp = f->used = icl_xcalloc(n + 1, 1);
            for (size_t i = 0; i < k; i++)
                mainp[f->perm[i]] = 1;
            for (size_t i = 0; i < n; i++)
                put_held(f, mainp[i] ? &f->out : &f->side, mainp[i] ? f->o.out : f->o.split_out, i);
            free(mainp);
            f->used = NULL;
        }
        f->st.written = (long)k;
        f->st.split_written = (long)(n - k);
        if (f->o.split_out)
            flush_out(f, f->o.split_out, &f->side);
        icl_buf_free(&f->side);
        free(f->perm);
        f->perm = NULL;
    }
    flush_out(f, f->o.out, &f->out);
    if (fflush(f->o.out) != 0) {
        char e[600];
        snprintf(e, sizeof e, "%s: write error: %s", f->o.out_name ? f->o.out_name : "<stdout>", strerror(errno));
        fail(f, e);
    }
    if (f->st.bad)
        say(f, "%ld bad record%s skipped", f->st.bad, f->st.bad == 1 ? "" : "s");
    if (f->st.empty_output)
        say(f, "%ld record%s with an empty, whitespace-only or missing output dropped", f->st.empty_output,
            f->st.empty_output == 1 ? "" : "s");
    if (f->st.empty_instruction)
        say(f, "%ld record%s with an empty or missing instruction", f->st.empty_instruction,
            f->st.empty_instruction == 1 ? "" : "s");
    if (f->st.empty_turns)
        say(f, "%ld multi-turn record%s with an empty or whitespace-only answer among others kept: those answers "
            "are not trained on", f->st.empty_turns, f->st.empty_turns == 1 ? "" : "s");
    if (f->st.duplicates)
        say(f, "%ld duplicate record%s dropped", f->st.duplicates, f->st.duplicates == 1 ? "" : "s");
    /* a split that rounds to an empty part (few records): said, not silent
     * (--split 1 asks for an empty --split-out) */
    long nsplit = f->st.written + f->st.split_written;
    if (f->o.split > 0 && nsplit > 0 && (f->st.written == 0 || (f->st.split_written == 0 && f->o.split < 1)))
        say(f, "--split %g of %ld record%s leaves %s empty: round(%g x %ld) = %ld to the output, %ld to %s",
            f->o.split, nsplit, nsplit == 1 ? "" : "s",
            f->st.written == 0 ? (f->o.out_name ? f->o.out_name : "the output")
                               : (f->o.split_name ? f->o.split_name : "--split-out"),
            f->o.split, nsplit, f->st.written, f->st.split_written, f->o.split_name ? f->o.split_name : "--split-out");
    if (st)
        *st = f->st;
    return 0;
}
