/* tokgguf.c - GGUF tokenizer metadata <-> tokenizer.json (see tokgguf.h).
 *
 * The pre-tokenizer regexes are llama.cpp's (src/llama-vocab.cpp,
 * llm_tokenizer_bpe), one Split(Isolated) step each, in its order: llama.cpp
 * splits every piece by each regex in turn, keeping matches and the text
 * between them, which is tokenizers' Split with behavior Isolated.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "record.h"
#include "safetensors.h"
#include "tok_internal.h"
#include "tokgguf.h"
#include "util.h"
#include "gguf.h"

/* ---- the pre-tokenizers of tokenizer.ggml.pre ---- */

#define GPT2_RE "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define LLAMA3_RE                                                                                  \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"  \
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define QWEN2_RE                                                                                   \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"  \
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

typedef struct {
    const char *names;         /* '|'-separated tokenizer.ggml.pre values */
    const char *re[8];         /* NULL-terminated */
    int ignore_merges, add_bos;
} pre_def;

static const pre_def pre_defs[] = {
    {"default", {"[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2_RE, "\\p{N}+", "[0-9][0-9][0-9]", NULL}, 0, 0},
    {"llama-bpe|llama3|llama-v3", {LLAMA3_RE, NULL}, 1, 1},
    {"dbrx|smaug-bpe", {LLAMA3_RE, NULL}, 0, 0},
    {"deepseek-llm", {
      "[\r\n]",
      "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
      "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
      "\\s+$",
      "[一-龥ࠀ-一가-퟿]+",
      "\\p{N}+",
      NULL}, 0, 0},
    {"deepseek-coder", {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}", NULL}, 0, 0},
    {"falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2_RE, "[0-9][0-9][0-9]", NULL}, 0, 0},
    {"starcoder|refact|smollm|command-r|codeshell|exaone|minerva-7b", {"\\p{N}", GPT2_RE, NULL}, 0, 0},
    {"gpt-2|mpt|phi-2|olmo", {GPT2_RE, NULL}, 0, 0},
    {"qwen2|deepseek-r1-qwen|stablelm2", {QWEN2_RE, NULL}, 0, 0},
};
#define NPRE (sizeof pre_defs / sizeof pre_defs[0])

const char *const icl_tok_gguf_pre_names[] = {
    "default", "llama-bpe", "llama3", "llama-v3", "dbrx", "smaug-bpe", "deepseek-llm",
    "deepseek-coder", "falcon", "starcoder", "refact", "smollm", "command-r", "codeshell",
    "exaone", "minerva-7b", "gpt-2", "mpt", "phi-2", "olmo", "qwen2",
    "deepseek-r1-qwen", "stablelm2", NULL};

/* llama.cpp's clean_spaces (transformers' clean_up_tokenization_spaces):
 * true for byte-level BPE unless the pre-tokenizer's entry says otherwise.
 * icl never cleans spaces; this only travels to and from tokenizer_config.json. */
static int clean_spaces(const char *pre)
{
    static const char *const no[] = {"deepseek-llm", "deepseek-coder", "command-r", "qwen2", "deepseek-r1-qwen",
                                     "smollm", NULL};
    for (int i = 0; pre && no[i]; i++)
        if (!strcmp(pre, no[i]))
            return 0;
    return 1;
}

static const pre_def *find_pre(const char *name)
{
    if (!name)
        name = "default";
    size_t n = strlen(name);
    for (size_t i = 0; i < NPRE; i++)
        for (const char *p = pre_defs[i].names; p;) {
            const char *bar = strchr(p, '|');
            size_t l = bar ? (size_t)(bar - p) : strlen(p);
            if (l == n && !memcmp(p, name, n))
                return &pre_defs[i];
            p = bar ? bar + 1 : NULL;
        }
    return NULL;
}

/* ---- the struct ---- */

void icl_tok_gguf_init(icl_tok_gguf *m)
{
    memset(m, 0, sizeof *m);
    m->bos = m->eos = m->eot = m->unk = m->pad = -1;
    m->add_bos = m->add_eos = m->add_space_prefix = -1;
}

void icl_tok_gguf_free(icl_tok_gguf *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_tokens; i++)
        free(m->tokens[i].s);
    for (size_t i = 0; i < m->n_merges; i++)
        free(m->merges[i].s);
    free(m->tokens);
    free(m->merges);
    free(m->scores);
    free(m->types);
    free(m->model);
    free(m->pre);
    free(m->chat_template);
    icl_tok_gguf_init(m);
}

static int ferr(char *err, size_t errsz, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int ferr(char *err, size_t errsz, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
    return -1;
}

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

static int is_llama(const icl_tok_gguf *m) { return m->model && !strcmp(m->model, "llama"); }

static int ttype(const icl_tok_gguf *m, size_t i) { return m->types ? m->types[i] : TT_NORMAL; }

int icl_tok_gguf_check(const icl_tok_gguf *m, char *err, size_t errsz)
{
    if (!m->model)
        return ferr(err, errsz, "no tokenizer.ggml.model");
    if (strcmp(m->model, "gpt2") && strcmp(m->model, "llama"))
        return ferr(err, errsz, "tokenizer.ggml.model \"%s\" is not supported (gpt2 or llama)", m->model);
    if (!is_llama(m) && !find_pre(m->pre)) {
        char list[1024];
        size_t o = 0;
        for (int i = 0; icl_tok_gguf_pre_names[i] && o + 32 < sizeof list; i++)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", icl_tok_gguf_pre_names[i]);
        return ferr(err, errsz, "tokenizer.ggml.pre \"%s\" is not supported (known: %s)", m->pre, list);
    }
    if (!m->tokens || m->n_tokens == 0)
        return ferr(err, errsz, "no tokenizer.ggml.tokens");
    if (m->n_tokens > (size_t)ICL_TOK_MAX_IDS)
        return ferr(err, errsz, "tokenizer.ggml.tokens: %zu tokens, at most %ld", m->n_tokens, (long)ICL_TOK_MAX_IDS);
    if (m->scores && m->n_scores != m->n_tokens)
        return ferr(err, errsz, "tokenizer.ggml.scores has %zu values for %zu tokens", m->n_scores, m->n_tokens);
    if (m->types && m->n_types != m->n_tokens)
        return ferr(err, errsz, "tokenizer.ggml.token_type has %zu values for %zu tokens", m->n_types,
                    m->n_tokens);
    if (is_llama(m) && !m->scores)
        return ferr(err, errsz, "tokenizer.ggml.model llama needs tokenizer.ggml.scores");
    for (size_t i = 0; i < m->n_tokens; i++) {
        const icl_tok_str *t = &m->tokens[i];
        if (t->n == 0)
            return ferr(err, errsz, "tokenizer.ggml.tokens[%zu] is empty", i);
        if (memchr(t->s, 0, t->n))
            return ferr(err, errsz, "tokenizer.ggml.tokens[%zu] contains a NUL byte", i);
        if (icl_utf8_valid(t->s, t->n) != t->n)
            return ferr(err, errsz, "tokenizer.ggml.tokens[%zu] is not valid UTF-8", i);
        int ty = ttype(m, i);
        if (ty < TT_NORMAL || ty > TT_BYTE)
            return ferr(err, errsz, "tokenizer.ggml.token_type[%zu] is %d (1..6 expected)", i, ty);
        if (m->scores && !(m->scores[i] == m->scores[i]))
            return ferr(err, errsz, "tokenizer.ggml.scores[%zu] is NaN", i);
    }
    struct {
        const char *key;
        int64_t v;
    } ids[] = {{"bos", m->bos}, {"eos", m->eos}, {"eot", m->eot}, {"unknown", m->unk}, {"padding", m->pad}};
    for (size_t k = 0; k < sizeof ids / sizeof ids[0]; k++)
        if (ids[k].v < -1 || ids[k].v >= (int64_t)m->n_tokens)
            return ferr(err, errsz, "tokenizer.ggml.%s_token_id %lld is not a token id (0..%zu)", ids[k].key,
                        (long long)ids[k].v, m->n_tokens - 1);
    return 0;
}

/* ---- GGUF -> tokenizer.json ---- */

static json_t *jstrn(const icl_tok_str *s) { return json_stringn(s->s, s->n); }

static json_t *added_entry(const icl_tok_gguf *m, size_t id)
{
    int special = ttype(m, id) == TT_CONTROL || ttype(m, id) == TT_UNKNOWN;
    return json_pack("{s:I, s:o, s:b, s:b, s:b, s:b, s:b}", "id", (json_int_t)id, "content",
                     jstrn(&m->tokens[id]), "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0,
                     "special", special);
}

static int is_added(const icl_tok_gguf *m, size_t id)
{
    int ty = ttype(m, id);
    return ty == TT_CONTROL || ty == TT_UNKNOWN || ty == TT_USER;
}

/* Split a GGUF merge "a b" as llama.cpp does: at the first space after the
 * first byte. */
static int split_merge(const icl_tok_str *mg, size_t *la)
{
    if (mg->n < 3)
        return -1;
    const char *sp = memchr(mg->s + 1, ' ', mg->n - 1);
    if (!sp || (size_t)(sp - mg->s) + 1 >= mg->n)
        return -1;
    *la = (size_t)(sp - mg->s);
    return 0;
}

typedef struct {
    size_t id;
    float score;
} scored;

static int cmp_scored(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

typedef struct {
    int32_t l, r;
} mpair;

static int cmp_mpair(const void *a, const void *b)
{
    const mpair *x = a, *y = b;
    if (x->l != y->l)
        return x->l < y->l ? -1 : 1;
    return (x->r > y->r) - (x->r < y->r);
}

/* Merges of a SentencePiece vocabulary: every split of a token into two
 * tokens, tokens by descending score (equal scores by id), the splits of one
 * token by the ids of their halves, as transformers' GGUF and
 * SentencePiece converters make them.  Control, unknown and byte tokens
 * take no part: llama.cpp matches them otherwise. */
static json_t *spm_merges(const icl_tok_gguf *m, json_t *vocab)
{
    scored *order = xmalloc(m->n_tokens * sizeof *order);
    size_t n = 0;
    for (size_t i = 0; i < m->n_tokens; i++) {
        int ty = ttype(m, i);
        if (ty == TT_CONTROL || ty == TT_UNKNOWN || ty == TT_BYTE)
            continue;
        order[n].id = i;
        order[n++].score = m->scores[i];
    }
    qsort(order, n, sizeof *order, cmp_scored);
    json_t *merges = json_array();
    mpair *loc = NULL;
    size_t cap = 0;
    for (size_t k = 0; k < n; k++) {
        const icl_tok_str *t = &m->tokens[order[k].id];
        size_t nl = 0, j = 0;
        while (j < t->n) {
            icl_utf8_next(t->s, t->n, &j);
            if (j >= t->n)
                break;
            json_t *a = json_object_getn(vocab, t->s, j), *b = json_object_getn(vocab, t->s + j, t->n - j);
            if (!a || !b)
                continue;
            int32_t ia = (int32_t)json_integer_value(a), ib = (int32_t)json_integer_value(b);
            int ta = ttype(m, (size_t)ia), tb = ttype(m, (size_t)ib);
            if (ta == TT_CONTROL || ta == TT_UNKNOWN || ta == TT_BYTE || tb == TT_CONTROL ||
                tb == TT_UNKNOWN || tb == TT_BYTE)
                continue;
            if (nl == cap) {
                cap = cap ? 2 * cap : 16;
                loc = xrealloc(loc, cap * sizeof *loc);
            }
            loc[nl].l = ia;
            loc[nl++].r = ib;
        }
        if (nl > 1)
            qsort(loc, nl, sizeof *loc, cmp_mpair);
        for (size_t q = 0; q < nl; q++)
            json_array_append_new(merges, json_pack("[o, o]", jstrn(&m->tokens[loc[q].l]),
                                                    jstrn(&m->tokens[loc[q].r])));
    }
    free(loc);
    free(order);
    return merges;
}

static json_t *split_step(const char *re)
{
    return json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex", re, "behavior",
                     "Isolated", "invert", 0);
}

static int default_add_bos(const icl_tok_gguf *m)
{
    if (m->add_bos >= 0)
        return m->add_bos;
    if (is_llama(m))
        return 1;
    const pre_def *p = find_pre(m->pre);
    return p && p->add_bos;
}

/* The tokenizer.json document and the tokenizer_config.json object for m
 * (checked).  Returns 0, or -1 with err (merges naming unknown tokens). */
static int build_hf(const icl_tok_gguf *m, json_t **root_out, json_t **cfg_out, char *err, size_t errsz)
{
    int llama = is_llama(m);
    json_t *vocab = json_object();
    for (size_t i = 0; i < m->n_tokens; i++) {
        if (json_object_getn(vocab, m->tokens[i].s, m->tokens[i].n)) {
            json_decref(vocab);
            return ferr(err, errsz, "tokenizer.ggml.tokens[%zu] \"%s\" is repeated (first at %lld)", i,
                        m->tokens[i].s,
                        (long long)json_integer_value(json_object_getn(vocab, m->tokens[i].s, m->tokens[i].n)));
        }
        json_object_setn_new(vocab, m->tokens[i].s, m->tokens[i].n, json_integer((json_int_t)i));
    }
    json_t *merges;
    if (llama) {
        merges = spm_merges(m, vocab);
    } else {
        merges = json_array();
        for (size_t i = 0; i < m->n_merges; i++) {
            const icl_tok_str *mg = &m->merges[i];
            size_t la;
            if (split_merge(mg, &la)) {
                json_decref(vocab);
                json_decref(merges);
                return ferr(err, errsz, "tokenizer.ggml.merges[%zu] \"%s\" is not two tokens", i, mg->s);
            }
            const char *b = mg->s + la + 1;
            size_t lb = mg->n - la - 1;
            int bad_a = !json_object_getn(vocab, mg->s, la), bad_b = !json_object_getn(vocab, b, lb);
            if (bad_a || bad_b) {
                json_decref(vocab);
                json_decref(merges);
                return ferr(err, errsz, "tokenizer.ggml.merges[%zu]: \"%.*s\" is not a token", i,
                            bad_a ? (int)la : (int)lb, bad_a ? mg->s : b);
            }
            if (memchr(b, ' ', lb))
                json_array_append_new(merges, json_pack("[s%, s%]", mg->s, la, b, lb));
            else
                json_array_append_new(merges, jstrn(mg));
        }
    }
    json_t *added = json_array();
    for (size_t i = 0; i < m->n_tokens; i++)
        if (is_added(m, i))
            json_array_append_new(added, added_entry(m, i));

    json_t *model = json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:o}", "type", "BPE",
                              "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
                              "fuse_unk", llama, "byte_fallback", llama, "ignore_merges", 0, "vocab", vocab,
                              "merges", merges);
    if (llama && m->unk >= 0)
        json_object_set_new(model, "unk_token", jstrn(&m->tokens[m->unk]));
    json_t *norm = json_null(), *pre, *dec;
    int space_prefix = m->add_space_prefix != 0;
    if (llama) {
        json_t *ns = json_array();
        if (space_prefix)
            json_array_append_new(ns, json_pack("{s:s, s:s}", "type", "Prepend", "prepend", "\xe2\x96\x81"));
        json_array_append_new(ns, json_pack("{s:s, s:{s:s}, s:s}", "type", "Replace", "pattern", "String", " ",
                                            "content", "\xe2\x96\x81"));
        norm = json_pack("{s:s, s:o}", "type", "Sequence", "normalizers", ns);
        pre = json_null();
        json_t *ds = json_array();
        json_array_append_new(ds, json_pack("{s:s, s:{s:s}, s:s}", "type", "Replace", "pattern", "String",
                                            "\xe2\x96\x81", "content", " "));
        json_array_append_new(ds, json_pack("{s:s}", "type", "ByteFallback"));
        json_array_append_new(ds, json_pack("{s:s}", "type", "Fuse"));
        if (space_prefix)
            json_array_append_new(ds, json_pack("{s:s, s:s, s:i, s:i}", "type", "Strip", "content", " ", "start",
                                                1, "stop", 0));
        dec = json_pack("{s:s, s:o}", "type", "Sequence", "decoders", ds);
    } else {
        const pre_def *p = find_pre(m->pre);
        json_object_set_new(model, "ignore_merges", json_boolean(p->ignore_merges));
        json_t *ps = json_array();
        for (int k = 0; p->re[k]; k++)
            json_array_append_new(ps, split_step(p->re[k]));
        json_array_append_new(ps, json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                                            "trim_offsets", 1, "use_regex", 0));
        pre = json_pack("{s:s, s:o}", "type", "Sequence", "pretokenizers", ps);
        dec = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 1,
                        "use_regex", 1);
    }
    /* post-processor: BOS/EOS around a sequence, as transformers' fast
     * tokenizers take it from tokenizer.json */
    int add_bos = default_add_bos(m) && m->bos >= 0, add_eos = m->add_eos > 0 && m->eos >= 0;
    json_t *post = json_null();
    if (add_bos || add_eos) {
        json_t *single = json_array(), *pair = json_array(), *st = json_object();
        const char *seq[2] = {"A", "B"};
        for (int s = 0; s < 2; s++) {
            json_t *tmpl = s ? pair : single;
            for (int q = 0; q <= s; q++) {
                if (add_bos)
                    json_array_append_new(tmpl, json_pack("{s:{s:o, s:i}}", "SpecialToken", "id",
                                                          jstrn(&m->tokens[m->bos]), "type_id", q));
                json_array_append_new(tmpl, json_pack("{s:{s:s, s:i}}", "Sequence", "id", seq[q], "type_id", q));
                if (add_eos)
                    json_array_append_new(tmpl, json_pack("{s:{s:o, s:i}}", "SpecialToken", "id",
                                                          jstrn(&m->tokens[m->eos]), "type_id", q));
            }
        }
        int64_t sp[2] = {add_bos ? m->bos : -1, add_eos ? m->eos : -1};
        for (int s = 0; s < 2; s++)
            if (sp[s] >= 0)
                json_object_setn_new(st, m->tokens[sp[s]].s, m->tokens[sp[s]].n,
                                     json_pack("{s:o, s:[I], s:[o]}", "id", jstrn(&m->tokens[sp[s]]), "ids",
                                               (json_int_t)sp[s], "tokens", jstrn(&m->tokens[sp[s]])));
        post = json_pack("{s:s, s:o, s:o, s:o}", "type", "TemplateProcessing", "single", single, "pair", pair,
                         "special_tokens", st);
    }
    json_t *root = json_pack("{s:s, s:n, s:n, s:o, s:o, s:o, s:o, s:o, s:o}", "version", "1.0", "truncation",
                             "padding", "added_tokens", added, "normalizer", norm, "pre_tokenizer", pre,
                             "post_processor", post, "decoder", dec, "model", model);

    json_t *cfg = json_object(), *atd = json_object();
    json_object_set_new(cfg, "add_bos_token", json_boolean(add_bos));
    json_object_set_new(cfg, "add_eos_token", json_boolean(add_eos));
    for (size_t i = 0; i < m->n_tokens; i++)
        if (is_added(m, i)) {
            char key[32];
            snprintf(key, sizeof key, "%zu", i);
            json_t *e = added_entry(m, i);
            json_object_del(e, "id");
            json_object_set_new(atd, key, e);
        }
    json_object_set_new(cfg, "added_tokens_decoder", atd);
    struct {
        const char *key;
        int64_t id;
    } names[] = {{"bos_token", m->bos}, {"eos_token", m->eos}, {"pad_token", m->pad}, {"unk_token", m->unk}};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        json_object_set_new(cfg, names[k].key, names[k].id >= 0 ? jstrn(&m->tokens[names[k].id]) : json_null());
    if (m->chat_template)
        json_object_set_new(cfg, "chat_template", json_string(m->chat_template));
    json_object_set_new(cfg, "clean_up_tokenization_spaces", json_boolean(!llama && clean_spaces(m->pre)));
    json_object_set_new(cfg, "tokenizer_class", json_string("PreTrainedTokenizerFast"));
    *root_out = root;
    *cfg_out = cfg;
    return 0;
}

icl_tokenizer *icl_tok_from_gguf(const icl_tok_gguf *m, char *err, size_t errsz)
{
    if (icl_tok_gguf_check(m, err, errsz))
        return NULL;
    json_t *root, *cfg;
    if (build_hf(m, &root, &cfg, err, errsz))
        return NULL;
    icl_tokenizer *t = icl_tok_load_json(root, cfg, NULL, err, errsz);
    json_decref(root);
    json_decref(cfg);
    if (!t)
        return NULL;
    /* the ids themselves, not their contents looked up again */
    t->sp.bos = (int32_t)m->bos;
    t->sp.eos = (int32_t)m->eos;
    t->sp.pad = (int32_t)m->pad;
    t->sp.eot = (int32_t)m->eot;
    if (m->unk >= 0)
        t->sp.unk = (int32_t)m->unk;
    t->sp.add_bos = default_add_bos(m) && m->bos >= 0;
    t->sp.add_eos = m->add_eos > 0 && m->eos >= 0;
    /* llama.cpp never drops a character (it maps it to its unknown token or
     * fails): no token, no byte token and no tokenizer.ggml.unknown_token_id
     * is an encoding error, not lost text */
    t->unknown_is_error = 1;
    return t;
}

int icl_tok_gguf_to_hf_json(const icl_tok_gguf *m, char **tokenizer_json, char **tokenizer_config, char *err,
                            size_t errsz)
{
    if (icl_tok_gguf_check(m, err, errsz))
        return -1;
    json_t *root, *cfg;
    if (build_hf(m, &root, &cfg, err, errsz))
        return -1;
    if (tokenizer_json)
        *tokenizer_json = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (tokenizer_config)
        *tokenizer_config = json_dumps(cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    json_decref(cfg);
    if ((tokenizer_json && !*tokenizer_json) || (tokenizer_config && !*tokenizer_config)) {
        if (tokenizer_json)
            free(*tokenizer_json);
        if (tokenizer_config)
            free(*tokenizer_config);
        return ferr(err, errsz, "out of memory (JSON text)");
    }
    return 0;
}

static int write_file(const char *dir, const char *name, const char *text, char *err, size_t errsz)
{
    char *path = icl_path_join(dir, name), tmp[ICL_ATOMIC_TMP_MAX];
    int fd = icl_atomic_open(path, tmp, sizeof tmp, err, errsz), rc = -1;
    if (fd >= 0) {
        size_t n = strlen(text), off = 0;
        while (off < n) {
            ssize_t w = write(fd, text + off, n - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                break;
            off += (size_t)w;
        }
        if (off < n || write(fd, "\n", 1) != 1) {
            ferr(err, errsz, "%s: %s", path, strerror(errno));
            icl_atomic_abort(fd, tmp);
        } else {
            rc = icl_atomic_commit(fd, tmp, path, err, errsz);
        }
    }
    free(path);
    return rc;
}

int icl_tok_gguf_write_hf(const icl_tok_gguf *m, const char *dir, char *err, size_t errsz)
{
    char *tj, *tc;
    if (icl_tok_gguf_to_hf_json(m, &tj, &tc, err, errsz))
        return -1;
    int rc = write_file(dir, "tokenizer.json", tj, err, errsz) || write_file(dir, "tokenizer_config.json", tc, err, errsz);
    free(tj);
    free(tc);
    return rc ? -1 : 0;
}

/* ---- GGUF file <-> icl_tok_gguf ---- */

static char *dup_gstr(const icl_gguf_str *s) { return xstrndup(s->p, s->len); }

static int read_strs(const icl_gguf *g, const char *key, icl_tok_str **out, size_t *n, char *err, size_t errsz)
{
    const icl_gguf_kv *kv;
    int r = icl_gguf_get_arr(g, key, ICL_GGUF_STRING, &kv, err, errsz);
    if (r)
        return r < 0 ? -1 : 0;
    *out = xcalloc(kv->n ? kv->n : 1, sizeof **out);
    for (uint64_t i = 0; i < kv->n; i++) {
        (*out)[i].s = dup_gstr(&kv->strs[i]);
        (*out)[i].n = kv->strs[i].len;
    }
    *n = kv->n;
    return 0;
}

static int read_id(const icl_gguf *g, const char *key, int64_t *id, char *err, size_t errsz)
{
    int64_t v;
    int r = icl_gguf_get_int(g, key, &v, err, errsz);
    if (r < 0)
        return -1;
    /* -1 (int32) or 0xFFFFFFFF (uint32): llama.cpp's LLAMA_TOKEN_NULL, "none" */
    if (r == 0 && v != -1 && v != 0xFFFFFFFFLL)
        *id = v < 0 ? -2 : v; /* other negatives: refused by the check, with the key named */
    return 0;
}

static int read_flag(const icl_gguf *g, const char *key, int *f, char *err, size_t errsz)
{
    int v;
    int r = icl_gguf_get_bool(g, key, &v, err, errsz);
    if (r < 0)
        return -1;
    if (r == 0)
        *f = v;
    return 0;
}

int icl_tok_gguf_read(const icl_gguf *g, icl_tok_gguf *m, char *err, size_t errsz)
{
    icl_tok_gguf_init(m);
    const icl_gguf_kv *kv;
    int r;
    if (!(m->model = icl_gguf_get_strdup(g, "tokenizer.ggml.model", err, errsz))) {
        if (icl_gguf_find_kv(g, "tokenizer.ggml.model"))
            goto bad;
        ferr(err, errsz, "%s: no tokenizer (no tokenizer.ggml.model key)", icl_gguf_name(g));
        goto bad;
    }
    m->pre = icl_gguf_get_strdup(g, "tokenizer.ggml.pre", err, errsz);
    if (!m->pre && icl_gguf_find_kv(g, "tokenizer.ggml.pre"))
        goto bad;
    icl_gguf_str ct;
    if ((r = icl_gguf_get_str(g, "tokenizer.chat_template", &ct, err, errsz)) < 0)
        goto bad;
    if (r == 0) {
        if (memchr(ct.p, 0, ct.len) || icl_utf8_valid(ct.p, ct.len) != ct.len) {
            ferr(err, errsz, "%s: tokenizer.chat_template is not valid UTF-8 text (or holds a NUL byte)",
                 icl_gguf_name(g));
            goto bad;
        }
        m->chat_template = dup_gstr(&ct);
    }
    if (read_strs(g, "tokenizer.ggml.tokens", &m->tokens, &m->n_tokens, err, errsz) ||
        read_strs(g, "tokenizer.ggml.merges", &m->merges, &m->n_merges, err, errsz))
        goto bad;
    if ((r = icl_gguf_get_arr(g, "tokenizer.ggml.scores", -1, &kv, err, errsz)) < 0)
        goto bad;
    if (r == 0) {
        if (kv->elem != ICL_GGUF_FLOAT32 && kv->elem != ICL_GGUF_INT32) {
            ferr(err, errsz, "%s: tokenizer.ggml.scores is an array of %s (float32 expected)", icl_gguf_name(g),
                 icl_gguf_type_name(kv->elem));
            goto bad;
        }
        m->scores = xmalloc((kv->n ? kv->n : 1) * sizeof *m->scores);
        for (uint64_t i = 0; i < kv->n; i++)
            m->scores[i] = (float)icl_gguf_arr_float(kv, i);
        m->n_scores = kv->n;
    }
    if ((r = icl_gguf_get_arr(g, "tokenizer.ggml.token_type", ICL_GGUF_INT32, &kv, err, errsz)) < 0)
        goto bad;
    if (r == 0) {
        m->types = xmalloc((kv->n ? kv->n : 1) * sizeof *m->types);
        for (uint64_t i = 0; i < kv->n; i++) {
            int64_t v = icl_gguf_arr_int(kv, i);
            m->types[i] = v < 0 || v > 1000 ? 0 : (int32_t)v; /* 0: refused by the check */
        }
        m->n_types = kv->n;
    }
    if (read_id(g, "tokenizer.ggml.bos_token_id", &m->bos, err, errsz) ||
        read_id(g, "tokenizer.ggml.eos_token_id", &m->eos, err, errsz) ||
        read_id(g, "tokenizer.ggml.eot_token_id", &m->eot, err, errsz) ||
        read_id(g, "tokenizer.ggml.unknown_token_id", &m->unk, err, errsz) ||
        read_id(g, "tokenizer.ggml.padding_token_id", &m->pad, err, errsz) ||
        read_flag(g, "tokenizer.ggml.add_bos_token", &m->add_bos, err, errsz) ||
        read_flag(g, "tokenizer.ggml.add_eos_token", &m->add_eos, err, errsz) ||
        read_flag(g, "tokenizer.ggml.add_space_prefix", &m->add_space_prefix, err, errsz))
        goto bad;
    return 0;
bad:
    icl_tok_gguf_free(m);
    return -1;
}

icl_tokenizer *icl_tok_from_gguf_file(const icl_gguf *g, char *err, size_t errsz)
{
    icl_tok_gguf m;
    icl_tokenizer *t = NULL;
    if (icl_tok_gguf_read(g, &m, err, errsz) == 0) {
        char e2[512];
        t = icl_tok_from_gguf(&m, e2, sizeof e2);
        if (!t)
            ferr(err, errsz, "%s: %s", icl_gguf_name(g), e2);
        icl_tok_gguf_free(&m);
    }
    return t;
}

icl_tokenizer *icl_tok_load_gguf(const char *path, char *err, size_t errsz)
{
    icl_gguf *g = icl_gguf_open(path, err, errsz);
    if (!g)
        return NULL;
    icl_tokenizer *t = icl_tok_from_gguf_file(g, err, errsz);
    icl_gguf_close(g);
    return t;
}

icl_tokenizer *icl_tok_load_gguf_opt(const char *path, int *absent, char *err, size_t errsz)
{
    *absent = 0;
    icl_gguf *g = icl_gguf_open(path, err, errsz);
    if (!g)
        return NULL;
    icl_tokenizer *t = NULL;
    if (!icl_gguf_find_kv(g, "tokenizer.ggml.model")) {
        *absent = 1;
        ferr(err, errsz, "%s: no tokenizer (no tokenizer.ggml.model key)", icl_gguf_name(g));
    } else {
        t = icl_tok_from_gguf_file(g, err, errsz);
    }
    icl_gguf_close(g);
    return t;
}

int icl_tok_gguf_set_kvs(const icl_tok_gguf *m, icl_gguf_writer *w, char *err, size_t errsz)
{
    if (icl_tok_gguf_check(m, err, errsz))
        return -1;
    /* keys m leaves absent must not survive from metadata copied before */
    static const char *const managed[] = {
        "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.scores",
        "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.padding_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
        "tokenizer.ggml.add_space_prefix", "tokenizer.chat_template", NULL};
    for (int k = 0; managed[k]; k++)
        icl_gguf_unset(w, managed[k]);
    icl_gguf_set_str(w, "tokenizer.ggml.model", m->model, strlen(m->model));
    if (m->pre)
        icl_gguf_set_str(w, "tokenizer.ggml.pre", m->pre, strlen(m->pre));
    const char **s = xmalloc((m->n_tokens + m->n_merges + 1) * sizeof *s);
    size_t *l = xmalloc((m->n_tokens + m->n_merges + 1) * sizeof *l);
    for (size_t i = 0; i < m->n_tokens; i++) {
        s[i] = m->tokens[i].s;
        l[i] = m->tokens[i].n;
    }
    icl_gguf_set_arr_str(w, "tokenizer.ggml.tokens", s, l, m->n_tokens);
    if (m->scores)
        icl_gguf_set_arr(w, "tokenizer.ggml.scores", ICL_GGUF_FLOAT32, m->scores, m->n_scores);
    if (m->types)
        icl_gguf_set_arr(w, "tokenizer.ggml.token_type", ICL_GGUF_INT32, m->types, m->n_types);
    if (m->merges) {
        for (size_t i = 0; i < m->n_merges; i++) {
            s[i] = m->merges[i].s;
            l[i] = m->merges[i].n;
        }
        icl_gguf_set_arr_str(w, "tokenizer.ggml.merges", s, l, m->n_merges);
    }
    free(s);
    free(l);
    struct {
        const char *key;
        int64_t v;
    } ids[] = {{"tokenizer.ggml.bos_token_id", m->bos},     {"tokenizer.ggml.eos_token_id", m->eos},
               {"tokenizer.ggml.eot_token_id", m->eot},     {"tokenizer.ggml.unknown_token_id", m->unk},
               {"tokenizer.ggml.padding_token_id", m->pad}};
    for (size_t k = 0; k < sizeof ids / sizeof ids[0]; k++)
        if (ids[k].v >= 0)
            icl_gguf_set_u32(w, ids[k].key, (uint32_t)ids[k].v);
    if (m->add_bos >= 0)
        icl_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", m->add_bos);
    if (m->add_eos >= 0)
        icl_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", m->add_eos);
    if (m->add_space_prefix >= 0)
        icl_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", m->add_space_prefix);
    if (m->chat_template)
        icl_gguf_set_str(w, "tokenizer.chat_template", m->chat_template, strlen(m->chat_template));
    return 0;
}

/* ---- Hugging Face tokenizer -> icl_tok_gguf ---- */

/* What identifies a pre-tokenizer: digits in runs of every length, letters
 * of several scripts, contractions in both cases, whitespace runs and
 * newlines, punctuation runs, Han, emoji (in the spirit of llama.cpp's
 * convert_hf_to_gguf_update.py check text). */
static const char check_text[] =
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅ "
    "🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 12345678901234567890 "
    "កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ ------======= нещо на Български "
    "''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, 'RE you sure? 'M not sure "
    "I'll make it, 'D you like some tea? We'Ve a'lL\r\n\r\n  x=1;\tif (a<=b) {return $x^2|~y;}\n"
    "    1. first\n\t\t2) second  3\n        <option value=\"level1\">Level 1</option> a+=b; x=>(y)\n"
    "Ünïcödé ñandú Ærø ÀÖØ µ ½ months, 3rd of May 2024 –— «quotes» „Zitat“ 100% #hash @at ｆｕｌｌ，。";

/* Encode text (the check text when NULL) with t; ids in out. */
static void check_ids(const icl_tokenizer *t, const icl_buf *text, icl_ids *out)
{
    char err[256];
    out->n = 0;
    const char *s = text ? text->data : check_text;
    size_t n = text ? text->len : sizeof check_text - 1;
    if (icl_tok_encode(t, NULL, s, n, 0, out, err, sizeof err))
        out->n = 0;
}

/* The check text without the characters a byte-level vocabulary cannot
 * spell (some byte's character is not a token): real vocabularies have all
 * 256, cut-down test ones do not, and tokenizers drops the unknown symbols
 * before merging, which the candidate test below cannot mirror. */
static void spellable_text(const icl_tok_gguf *m, icl_buf *out)
{
    uint8_t have[256] = {0};
    for (size_t i = 0; i < m->n_tokens; i++) {
        size_t j = 0;
        uint32_t c = icl_utf8_next(m->tokens[i].s, m->tokens[i].n, &j);
        int b;
        if (j == m->tokens[i].n && (b = icl_cp_to_byte(c)) >= 0)
            have[b] = 1;
    }
    size_t i = 0, n = sizeof check_text - 1;
    while (i < n) {
        size_t j = i;
        icl_utf8_next(check_text, n, &j);
        int ok = 1;
        for (size_t k = i; k < j; k++)
            ok &= have[(uint8_t)check_text[k]];
        if (ok)
            buf_append(out, check_text + i, j - i);
        i = j;
    }
}

static int same_ids(const icl_ids *a, const icl_ids *b)
{
    return a->n == b->n && (a->n == 0 || !memcmp(a->v, b->v, a->n * sizeof *a->v));
}

/* The candidate pre-tokenizers, one name per distinct behaviour. */
static const char *const pre_candidates[] = {"qwen2",          "llama-bpe",    "dbrx",   "starcoder", "gpt-2",
                                             "deepseek-coder", "deepseek-llm", "falcon", "default",   NULL};

/* ids of the check text under m with pre-tokenizer pre, computed on the
 * part of the vocabulary that can occur in it (tokens that are substrings
 * of the byte-level text, and all added ones; see
 * tests/data/tok/gguf/make_vocab_subsets.py for why that is exact), mapped
 * back to m's ids.  -1 if the candidate does not load. */
static int candidate_ids(const icl_tok_gguf *m, const char *pre, const icl_buf *text, icl_ids *out)
{
    icl_buf hay = {0};
    for (size_t i = 0; i < text->len; i++) {
        char u[4];
        int l = icl_utf8_put(icl_byte_to_cp[(uint8_t)text->data[i]], u);
        buf_append(&hay, u, (size_t)l);
    }
    icl_tok_gguf s;
    icl_tok_gguf_init(&s);
    s.model = (char *)"gpt2";
    s.pre = (char *)pre;
    int32_t *orig = xmalloc(m->n_tokens * sizeof *orig), *newid = xmalloc(m->n_tokens * sizeof *newid);
    s.tokens = xmalloc(m->n_tokens * sizeof *s.tokens);
    s.types = xmalloc(m->n_tokens * sizeof *s.types);
    json_t *kept = json_object();
    for (size_t i = 0; i < m->n_tokens; i++) {
        newid[i] = -1;
        if (ttype(m, i) == TT_NORMAL && !memmem(hay.data, hay.len, m->tokens[i].s, m->tokens[i].n))
            continue;
        newid[i] = (int32_t)s.n_tokens;
        orig[s.n_tokens] = (int32_t)i;
        s.types[s.n_tokens] = ttype(m, i);
        s.tokens[s.n_tokens++] = m->tokens[i];
        json_object_setn_new(kept, m->tokens[i].s, m->tokens[i].n, json_true());
    }
    s.n_types = s.n_tokens;
    s.merges = xmalloc((m->n_merges ? m->n_merges : 1) * sizeof *s.merges);
    icl_buf cat = {0};
    for (size_t i = 0; i < m->n_merges; i++) {
        size_t la;
        if (split_merge(&m->merges[i], &la))
            continue;
        cat.len = 0;
        buf_append(&cat, m->merges[i].s, la);
        buf_append(&cat, m->merges[i].s + la + 1, m->merges[i].n - la - 1);
        if (json_object_getn(kept, m->merges[i].s, la) &&
            json_object_getn(kept, m->merges[i].s + la + 1, m->merges[i].n - la - 1) &&
            json_object_getn(kept, cat.data, cat.len))
            s.merges[s.n_merges++] = m->merges[i];
    }
    char err[256];
    icl_tokenizer *t = icl_tok_from_gguf(&s, err, sizeof err);
    int rc = -1;
    if (t) {
        t->unknown_is_error = 0; /* a cut-down vocabulary: as tokenizers, which it is compared with */
        check_ids(t, text, out);
        for (size_t i = 0; i < out->n; i++)
            out->v[i] = orig[out->v[i]];
        icl_tok_free(t);
        rc = 0;
    }
    json_decref(kept);
    buf_free(&hay);
    buf_free(&cat);
    free(s.tokens);
    free(s.types);
    free(s.merges);
    free(orig);
    free(newid);
    return rc;
}

static icl_tok_str str_of(const char *s, size_t n)
{
    icl_tok_str r = {xstrndup(s, n), n};
    return r;
}

/* The add_prefix_space of the first ByteLevel step of pre-tokenizer p
 * (within Sequences), -1 when it has none. */
static int bytelevel_prefix(const tok_pre *p)
{
    if (!p)
        return -1;
    if (p->type == P_BYTELEVEL)
        return p->add_prefix_space != 0;
    for (int i = 0; p->type == P_SEQ && i < p->nsub; i++) {
        int v = bytelevel_prefix(&p->sub[i]);
        if (v >= 0)
            return v;
    }
    return -1;
}

/* Does the normalizer / pre-tokenizer JSON put "▁" for spaces and one in
 * front?  *space: " " -> "▁" replaced; *prefix: a leading "▁" added. */
static void spm_shape(json_t *v, int *space, int *prefix)
{
    if (!json_is_object(v))
        return;
    const char *ty = json_string_value(json_object_get(v, "type"));
    if (!ty)
        return;
    const char *rep = "\xe2\x96\x81";
    if (!strcmp(ty, "Sequence")) {
        json_t *subs = json_object_get(v, "normalizers");
        if (!subs)
            subs = json_object_get(v, "pretokenizers");
        size_t i;
        json_t *x;
        json_array_foreach(subs, i, x) spm_shape(x, space, prefix);
    } else if (!strcmp(ty, "Prepend")) {
        const char *p = json_string_value(json_object_get(v, "prepend"));
        if (p && !strcmp(p, rep))
            *prefix = 1;
    } else if (!strcmp(ty, "Replace")) {
        const char *p = json_string_value(json_object_get(json_object_get(v, "pattern"), "String"));
        const char *c = json_string_value(json_object_get(v, "content"));
        if (p && c && !strcmp(p, " ") && !strcmp(c, rep))
            *space = 1;
    } else if (!strcmp(ty, "Metaspace")) {
        *space = 1;
        const char *ps = json_string_value(json_object_get(v, "prepend_scheme"));
        json_t *aps = json_object_get(v, "add_prefix_space");
        if ((ps && strcmp(ps, "never")) || json_is_true(aps))
            *prefix = 1;
    }
}

int icl_tok_gguf_from_hf(const char *path, icl_tok_gguf *m, char *err, size_t errsz)
{
    icl_tok_gguf_init(m);
    struct stat st;
    char *file;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        file = icl_path_join(path, "tokenizer.json");
    } else {
        file = xstrdup(path);
    }
    char e2[512];
    icl_tokenizer *t = icl_tok_load(path, e2, sizeof e2);
    json_error_t je;
    json_t *root = t ? json_load_file(file, 0, &je) : NULL;
    icl_ids want = {0}, got = {0};
    icl_buf text = {0}; /* before the first goto out, which frees it */
    int rc = -1;
    if (!t) {
        ferr(err, errsz, "%s: %s", path, e2);
        goto out;
    }
    if (!root) {
        ferr(err, errsz, "%s: line %d: %s", file, je.line, je.text);
        goto out;
    }
    json_t *model = json_object_get(root, "model");
    int32_t n = icl_tok_vocab_size(t);
    m->tokens = xcalloc((size_t)n + 1, sizeof *m->tokens);
    m->types = xcalloc((size_t)n + 1, sizeof *m->types);
    for (int32_t i = 0; i < n; i++) {
        size_t l;
        const char *s;
        int ty = TT_NORMAL;
        if (t->added_of_id[i] >= 0) {
            const tok_added *a = &t->added[t->added_of_id[i]];
            s = a->content;
            l = strlen(s);
            /* a special added token CONTROL, as llama.cpp's
             * convert_hf_to_gguf.py types a byte-level vocabulary's (its
             * unk_token too: SmolLM2's <|endoftext|>); a SentencePiece-like
             * vocabulary's unk UNKNOWN, as sentencepiece's model types it
             * (and the Llama 2 GGUFs have it; newer converters write CONTROL,
             * which icl reads alike) */
            ty = a->special ? (i == t->sp.unk && !t->byte_level ? TT_UNKNOWN : TT_CONTROL) : TT_USER;
        } else if (!(s = icl_tok_piece(t, i, &l))) {
            ferr(err, errsz, "%s: id %d has no token (GGUF needs ids 0..%d without holes)", file, i, n - 1);
            goto out;
        }
        if (ty == TT_NORMAL && t->byte_fallback && l == 6 && !strncmp(s, "<0x", 3) && s[5] == '>')
            ty = TT_BYTE;
        m->tokens[i] = str_of(s, l);
        m->types[i] = ty;
        m->n_tokens = m->n_types = (size_t)i + 1;
    }
    m->bos = t->sp.bos;
    m->eos = t->sp.eos;
    m->pad = t->sp.pad;
    m->unk = t->sp.unk;
    m->add_bos = t->sp.add_bos;
    m->add_eos = t->sp.add_eos;
    if (t->chat_template)
        m->chat_template = xstrdup(t->chat_template);
    int clean = -1; /* tokenizer_config.json's clean_up_tokenization_spaces */
    {
        char *cp = xmalloc(strlen(file) + 32);
        const char *sl = strrchr(file, '/');
        sprintf(cp, "%.*s/tokenizer_config.json", sl ? (int)(sl - file) : 1, sl ? file : ".");
        json_t *c = json_load_file(cp, JSON_DECODE_INT_AS_REAL, &je);
        json_t *v = json_object_get(c, "clean_up_tokenization_spaces");
        if (json_is_boolean(v))
            clean = json_is_true(v);
        json_decref(c);
        free(cp);
    }
    if (t->byte_level) {
        /* the ByteLevel step's add_prefix_space (false: with true no GGUF
         * pre-tokenizer matches, below), as SmolLM2's GGUF carries the key;
         * llama.cpp reads it for every vocabulary and uses it for
         * SentencePiece's */
        m->add_space_prefix = bytelevel_prefix(t->pre);
        spellable_text(m, &text);
        check_ids(t, &text, &want);
        m->model = xstrdup("gpt2");
        json_t *merges = json_object_get(model, "merges"), *v;
        size_t i, nm = json_array_size(merges);
        m->merges = xcalloc(nm + 1, sizeof *m->merges);
        json_array_foreach(merges, i, v)
        {
            icl_buf b = {0};
            if (json_is_string(v)) {
                buf_append(&b, json_string_value(v), json_string_length(v));
            } else {
                json_t *a = json_array_get(v, 0), *c = json_array_get(v, 1);
                buf_append(&b, json_string_value(a), json_string_length(a));
                buf_append(&b, " ", 1);
                buf_append(&b, json_string_value(c), json_string_length(c));
                if (memchr(json_string_value(a), ' ', json_string_length(a))) {
                    buf_free(&b);
                    ferr(err, errsz, "%s: merges[%zu]: a token with a space cannot be written as a GGUF merge",
                         file, i);
                    goto out;
                }
            }
            m->merges[i] = str_of(b.data, b.len);
            m->n_merges = i + 1;
            buf_free(&b);
        }
        for (int k = 0; pre_candidates[k]; k++) {
            got.n = 0;
            int cr = candidate_ids(m, pre_candidates[k], &text, &got);
            if (cr == 0 && same_ids(&got, &want)) {
                /* the same splits under a name with tokenizer_config.json's
                 * clean_up_tokenization_spaces, when the group has one */
                const char *name = pre_candidates[k];
                if (clean == 0 && !strcmp(name, "starcoder"))
                    name = "smollm";
                if (clean == 1 && !strcmp(name, "qwen2"))
                    name = "stablelm2";
                m->pre = xstrdup(name);
                break;
            }
        }
        if (!m->pre) {
            ferr(err, errsz, "%s: its pre-tokenizer matches none that GGUF can name (tokenizer.ggml.pre: "
                             "qwen2, llama-bpe, dbrx, starcoder, gpt-2, deepseek-coder, deepseek-llm, falcon, default)",
                 file);
            goto out;
        }
    } else if (t->byte_fallback) {
        int space = 0, prefix = 0;
        spm_shape(json_object_get(root, "normalizer"), &space, &prefix);
        spm_shape(json_object_get(root, "pre_tokenizer"), &space, &prefix);
        if (!space) {
            ferr(err, errsz, "%s: neither byte level nor SentencePiece-like (spaces as \"\xe2\x96\x81\"): no GGUF "
                             "tokenizer.ggml.model fits", file);
            goto out;
        }
        m->model = xstrdup("llama");
        m->pre = xstrdup("default");
        m->add_space_prefix = prefix;
        /* a token's score: minus the rank of the first merge making it
         * (earlier merges win, as the highest score does in llama.cpp) */
        m->scores = xmalloc(((size_t)n + 1) * sizeof *m->scores);
        m->n_scores = (size_t)n;
        for (int32_t i = 0; i < n; i++)
            m->scores[i] = -1e9f; /* made by no merge: never a merge result first */
        for (size_t k = 0; k < t->merges.cap; k++) {
            const icl_u64ent *e = &t->merges.e[k];
            if (e->key == UINT64_MAX)
                continue;
            float sc = -(float)e->a - 1.0f;
            if (sc > m->scores[e->b])
                m->scores[e->b] = sc;
        }
        icl_tokenizer *t2 = icl_tok_from_gguf(m, e2, sizeof e2);
        if (!t2) {
            ferr(err, errsz, "%s: %s", file, e2);
            goto out;
        }
        t2->unknown_is_error = 0; /* compared with tokenizers' behaviour on the same vocabulary */
        check_ids(t, NULL, &want);
        check_ids(t2, NULL, &got);
        icl_tok_free(t2);
        if (!same_ids(&got, &want)) {
            ferr(err, errsz, "%s: as a GGUF \"llama\" tokenizer it would tokenize differently", file);
            goto out;
        }
    } else {
        ferr(err, errsz, "%s: neither byte-level BPE nor BPE with byte_fallback: no GGUF tokenizer.ggml.model fits",
             file);
        goto out;
    }
    rc = icl_tok_gguf_check(m, e2, sizeof e2);
    if (rc)
        ferr(err, errsz, "%s: %s", file, e2);
out:
    if (rc)
        icl_tok_gguf_free(m);
    ids_free(&want);
    ids_free(&got);
    buf_free(&text);
    json_decref(root);
    icl_tok_free(t);
    free(file);
    return rc;
}

int icl_tok_gguf_folder_writer(icl_gguf_writer *w, const char *src_dir, char *err, size_t errsz)
{
    if (!src_dir)
        return 0;
    char *p = icl_path_join(src_dir, "tokenizer.json");
    int have = access(p, R_OK) == 0;
    free(p);
    if (!have)
        return 0;
    icl_tok_gguf m;
    if (icl_tok_gguf_from_hf(src_dir, &m, err, errsz))
        return -1;
    int rc = icl_tok_gguf_set_kvs(&m, w, err, errsz);
    icl_tok_gguf_free(&m);
    return rc;
}
