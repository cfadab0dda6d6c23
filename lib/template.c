/* template.c - see template.h. */
#include "template.h"

#include "fileio.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "record.h"

/* tatsu-lab/stanford_alpaca, train.py, PROMPT_DICT (the Python string
 * literals concatenated). */
const char icl_alpaca_prompt_input[] =
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:";
const char icl_alpaca_prompt_no_input[] =
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:";

enum { T_ALPACA, T_CHATML, T_LLAMA2, T_PLAIN, T_FILE };

struct icl_template {
    int kind;
    char *name;
    char *prompt, *response; /* T_FILE: the two parts */
};

static icl_template *make(int kind, const char *name)
{
    icl_template *t = icl_xcalloc(1, sizeof *t);
    t->kind = kind;
    t->name = icl_xstrdup(name);
    return t;
}

void icl_template_free(icl_template *t)
{
    if (!t)
        return;
    free(t->name);
    free(t->prompt);
    free(t->response);
    free(t);
}

const char *icl_template_name(const icl_template *t)
{
    return t->name;
}

int icl_template_response_is_output(const icl_template *t)
{
    return t->kind == T_ALPACA || t->kind == T_CHATML || t->kind == T_PLAIN;
}

static int count_sub(const char *s, const char *sub)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, sub)) != NULL; p += strlen(sub))
        n++;
    return n;
}

/* Levenshtein distance of a[0..na) and b[0..nb), both under 32 bytes */
static int edit_distance(const char *a, size_t na, const char *b, size_t nb)
{
    int d[33][33];
    for (size_t i = 0; i <= na; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= nb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= na; i++)
        for (size_t j = 1; j <= nb; j++) {
            int c = d[i - 1][j - 1] + ((a[i - 1] | 32) != (b[j - 1] | 32));
            if (d[i - 1][j] + 1 < c)
                c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c)
                c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[na][nb];
}

/* A word in braces that is one or two letters away from a placeholder
 * ({intruction}, {Input}, {outputs}) is a mistake, not literal text: it
 * would silently drop the field from every prompt.  Other text in braces
 * stays literal.  0, or -1 with "name:LINE: ..." in err. */
static int check_placeholders(const char *text, size_t n, const char *name, char *err, size_t errsz)
{
    static const char *const ph[] = {"system", "instruction", "input", "output"};
    long line = 1;
    for (size_t i = 0; i < n; i++) {
        if (text[i] == '\n')
            line++;
        if (text[i] != '{')
            continue;
        size_t j = i + 1;
        while (j < n && j - i <= 32 && ((text[j] | 32) >= 'a' && (text[j] | 32) <= 'z'))
            j++;
        if (j >= n || text[j] != '}' || j == i + 1 || j - i > 32)
            continue;
        const char *w = text + i + 1;
        size_t wl = j - i - 1;
        int best = 3, k_best = -1;
        for (int k = 0; k < 4; k++) {
            if (wl == strlen(ph[k]) && !memcmp(w, ph[k], wl)) {
                k_best = -1; /* a placeholder */
                best = 0;
                break;
            }
            int dd = edit_distance(w, wl, ph[k], strlen(ph[k]));
            if (dd < best) {
                best = dd;
                k_best = k;
            }
        }
        if (k_best >= 0) {
            snprintf(err, errsz, "%s:%ld: {%.*s} is not a placeholder; did you mean {%s}? (placeholders: "
                     "{system} {instruction} {input} {output})", name, line, (int)wl, w, ph[k_best]);
            return -1;
        }
    }
    return 0;
}

icl_template *icl_template_parse(const char *text, size_t n, const char *name, char *err,
                                 size_t errsz)
{
    if (memchr(text, '\0', n)) {
        snprintf(err, errsz, "%s: template contains a NUL byte", name);
        return NULL;
    }
    size_t bad_at = icl_utf8_valid(text, n);
    if (bad_at != n) { /* its text goes into every record: it must be UTF-8 too */
        long bl = 1;
        size_t ls = 0;
        for (size_t i = 0; i < bad_at; i++)
            if (text[i] == '\n') {
                bl++;
                ls = i + 1;
            }
        snprintf(err, errsz, "%s:%ld: invalid UTF-8 at byte offset %zu", name, bl, bad_at - ls);
        return NULL;
    }
    if (check_placeholders(text, n, name, err, errsz))
        return NULL;
    /* Find the marker line "%%" (a line holding only %%, optionally with CR). */
    const char *marker = NULL, *after = NULL;
    int nmarkers = 0;
    long line = 1, marker_line = 0;
    for (size_t i = 0; i < n;) {
        const char *ls = text + i;
        const char *nl = memchr(ls, '\n', n - i);
        size_t len = nl ? (size_t)(nl - ls) : n - i;
        size_t core = len;
        if (core && ls[core - 1] == '\r')
            core--;
        if (core == 2 && ls[0] == '%' && ls[1] == '%') {
            if (nmarkers++ == 0) {
                marker = ls;
                after = nl ? nl + 1 : text + n;
                marker_line = line;
            }
        }
        i += len + (nl != NULL);
        line++;
    }
    if (nmarkers == 0) {
        snprintf(err, errsz, "%s: no marker line '%%%%' separating prompt and response", name);
        return NULL;
    }
    if (nmarkers > 1) {
        snprintf(err, errsz, "%s: more than one marker line '%%%%' (first on line %ld)", name,
                 marker_line);
        return NULL;
    }
    /* The prompt part ends before the newline (LF or CRLF) preceding the marker. */
    size_t plen = (size_t)(marker - text);
    if (plen && text[plen - 1] == '\n')
        plen--;
    if (plen && text[plen - 1] == '\r')
        plen--;
    size_t rlen = (size_t)(text + n - after);
    if (rlen && after[rlen - 1] == '\n')
        rlen--;
    if (rlen && after[rlen - 1] == '\r')
        rlen--;
    icl_template *t = make(T_FILE, name);
    t->prompt = icl_xstrndup(text, plen);
    t->response = icl_xstrndup(after, rlen);
    const char *bad = NULL;
    if (count_sub(t->prompt, "{output}"))
        bad = "{output} must not appear in the prompt part (before '%%')";
    else if (count_sub(t->response, "{output}") != 1)
        bad = "the response part (after '%%') must contain {output} exactly once";
    if (bad) {
        snprintf(err, errsz, "%s: %s", name, bad);
        icl_template_free(t);
        return NULL;
    }
    return t;
}

icl_template *icl_template_load(const char *name, char *err, size_t errsz)
{
    static const char *names[] = {"alpaca", "chatml", "llama2", "plain"};
    for (int k = 0; k < 4; k++)
        if (strcmp(name, names[k]) == 0)
            return make(k, name);
    struct stat st; /* not fopen: a FIFO would block it */
    if (stat(name, &st) != 0) {
        if (errno == ENOENT && !strchr(name, '/') && !strchr(name, '.'))
            snprintf(err, errsz, "unknown template '%s' (built in: alpaca, chatml, llama2, plain; "
                     "or a template file)", name);
        else
            snprintf(err, errsz, "%s: %s", name, strerror(errno));
        return NULL;
    }
    size_t n;
    char *text = icl_read_file(name, ICL_TEMPLATE_MAX_BYTES, &n, err, errsz);
    if (!text)
        return NULL;
    icl_template *t = icl_template_parse(text, n, name, err, errsz);
    free(text);
    return t;
}

/* Append s with {system} {instruction} {input} {output} substituted. */
static void subst(icl_buf *out, const char *s, const icl_tfields *f, int turn)
{
    static const struct {
        const char *ph;
        size_t n;
        size_t off;
    } ph[] = {
        {"{system}", 8, offsetof(icl_tfields, system)},
        {"{instruction}", 13, offsetof(icl_tfields, instruction)},
        {"{input}", 7, offsetof(icl_tfields, input)},
        {"{output}", 8, offsetof(icl_tfields, output)},
    };
    for (;;) {
        const char *b = strchr(s, '{');
        if (!b) {
            icl_buf_puts(out, s);
            return;
        }
        icl_buf_append(out, s, (size_t)(b - s));
        int k;
        for (k = 0; k < 4; k++)
            if (strncmp(b, ph[k].ph, ph[k].n) == 0)
                break;
        if (k == 4) {
            icl_buf_putc(out, '{');
            s = b + 1;
            continue;
        }
        const icl_str *v = (const icl_str *)((const char *)f + ph[k].off);
        if (v->n && !(k == 0 && turn > 0))
            icl_buf_append(out, v->s, v->n);
        s = b + ph[k].n;
    }
}

static void put(icl_buf *b, icl_str s)
{
    if (s.n)
        icl_buf_append(b, s.s, s.n);
}

/* "user" text: instruction, then a blank line and input if input is not empty. */
static void put_user(icl_buf *b, const icl_tfields *f)
{
    put(b, f->instruction);
    if (f->input.n) {
        icl_buf_append(b, "\n\n", 2);
        put(b, f->input);
    }
}

void icl_template_render(const icl_template *t, const icl_tfields *f, int turn, icl_buf *prompt,
                         icl_buf *response)
{
    int sys = turn == 0 && f->system.n > 0;
    icl_buf_append(prompt, "", 0); /* NUL-terminated even when nothing follows */
    icl_buf dummy = {0};
    if (!response)
        response = &dummy;
    icl_buf_append(response, "", 0);
    switch (t->kind) {
    case T_ALPACA: {
        const char *tpl = f->input.n ? icl_alpaca_prompt_input : icl_alpaca_prompt_no_input;
        const char *body = strstr(tpl, "### Instruction:");
        if (turn > 0) {
            icl_buf_append(prompt, "\n\n", 2);
            tpl = body;
        } else if (sys) {
            put(prompt, f->system);
            icl_buf_append(prompt, "\n\n", 2);
            tpl = body;
        }
        subst(prompt, tpl, f, turn);
        put(response, f->output);
        break;
    }
    case T_CHATML:
        if (turn > 0)
            icl_buf_putc(prompt, '\n');
        if (sys) {
            icl_buf_puts(prompt, "<|im_start|>system\n");
            put(prompt, f->system);
            icl_buf_puts(prompt, "<|im_end|>\n");
        }
        icl_buf_puts(prompt, "<|im_start|>user\n");
        put_user(prompt, f);
        icl_buf_puts(prompt, "<|im_end|>\n<|im_start|>assistant\n");
        put(response, f->output);
        break;
    case T_LLAMA2:
        icl_buf_puts(prompt, "[INST] ");
        if (sys) {
            icl_buf_puts(prompt, "<<SYS>>\n");
            put(prompt, f->system);
            icl_buf_puts(prompt, "\n<</SYS>>\n\n");
        }
        put_user(prompt, f);
        icl_buf_puts(prompt, " [/INST]");
        icl_buf_putc(response, ' ');
        put(response, f->output);
        break;
    case T_PLAIN:
        if (turn > 0)
            icl_buf_putc(prompt, '\n');
        if (sys) {
            put(prompt, f->system);
            icl_buf_append(prompt, "\n\n", 2);
        }
        put_user(prompt, f);
        icl_buf_putc(prompt, '\n');
        put(response, f->output);
        break;
    default:
        subst(prompt, t->prompt, f, turn);
        subst(response, t->response, f, turn);
        break;
    }
    icl_buf_free(&dummy);
}
