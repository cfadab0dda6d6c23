/* tokrec.c - see tokrec.h. */
#include <stdlib.h>
#include <string.h>

#include "toklines.h"
#include "tokrec.h"

typedef struct {
    icl_ids ids;
    size_t seg_end[512];
    size_t nseg;
} line_t;

static int encode_part(const icl_tokenizer *t, icl_tok_state *st, const icl_tokrec_opts *o,
                       const char *s, size_t n, int cont, int want_bos, icl_ids *out, char *err,
                       size_t errsz)
{
    int flags = (o->parse_special ? ICL_TOK_PARSE_SPECIAL : 0) | (cont ? ICL_TOK_CONTINUATION : 0);
    if (want_bos) {
        int32_t bos = icl_tok_get_specials(t)->bos;
        size_t bl = 0;
        const char *bt = icl_tok_piece(t, bos, &bl);
        icl_ids_push(out, bos);
        if (bt && bl && n >= bl && !memcmp(s, bt, bl)) { /* the template wrote BOS itself */
            s += bl;
            n -= bl;
        }
    }
    return icl_tok_encode(t, st, s, n, flags, out, err, errsz);
}

int icl_tokrec_encode_prompt(const icl_tokenizer *t, icl_tok_state *st, const icl_tokrec_opts *o,
                             const char *prompt, size_t n, icl_ids *out, char *err, size_t errsz)
{
    if (o->bos && icl_tok_get_specials(t)->bos < 0)
        return snprintf(err, errsz, "the tokenizer has no BOS token"), -1;
    return encode_part(t, st, o, prompt, n, 0, o->bos, out, err, errsz);
}

/* The shape of a record: prompt/response strings (one turn) or arrays of
 * strings (turns), or text.  Sets the members found and the turn count. */
static int record_turns(const json_t *rec, json_t **pp, json_t **rp, json_t **txp, size_t *nturn, int *is_text,
                        char *err, size_t errsz)
{
    json_t *p = *pp = json_object_get(rec, "prompt"), *r = *rp = json_object_get(rec, "response");
    json_t *tx = *txp = json_object_get(rec, "text");
    *is_text = 0;
    if (p || r) {
        if (!p || !r)
            return snprintf(err, errsz, "record has \"%s\" without \"%s\"", p ? "prompt" : "response",
                            p ? "response" : "prompt"), -1;
        if (json_is_string(p) && json_is_string(r)) {
            *nturn = 1;
        } else if (json_is_array(p) && json_is_array(r)) {
            *nturn = json_array_size(p);
            if (*nturn != json_array_size(r))
                return snprintf(err, errsz, "\"prompt\" has %zu turns but \"response\" has %zu",
                                *nturn, json_array_size(r)), -1;
            if (*nturn == 0)
                return snprintf(err, errsz, "\"prompt\" and \"response\" are empty arrays"), -1;
            if (*nturn > 255)
                return snprintf(err, errsz, "more than 255 turns"), -1;
            for (size_t i = 0; i < *nturn; i++)
                if (!json_is_string(json_array_get(p, i)) || !json_is_string(json_array_get(r, i)))
                    return snprintf(err, errsz, "turn %zu of \"prompt\"/\"response\" is not a string",
                                    i + 1), -1;
        } else {
            return snprintf(err, errsz, "\"prompt\" and \"response\" must be both strings or both arrays"), -1;
        }
    } else if (tx) {
        if (!json_is_string(tx))
            return snprintf(err, errsz, "\"text\" is not a string"), -1;
        *is_text = 1;
        *nturn = 1;
    } else {
        return snprintf(err, errsz, "record has neither prompt/response nor text "
                        "(icl-fmt makes such records from rows such as instruction/output)"), -1;
    }
    return 0;
}

/* 1 if s[0..n) is empty or only ASCII white space (icl-fmt's rule). */
static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!s[i] || !strchr(" \t\n\r\v\f", s[i]))
            return 0;
    return 1;
}

/* Say which field (turn: 1-based, 0 for a string field) an encoding error
 * err is about: "\"response\" (turn 2): ...". */
static void field_error(const char *field, size_t turn, char *err, size_t errsz)
{
    if (!err || !errsz)
        return;
    char m[512], tn[32] = "";
    snprintf(m, sizeof m, "%s", err);
    if (turn)
        snprintf(tn, sizeof tn, " (turn %zu)", turn);
    snprintf(err, errsz, "\"%s\"%s: %s", field, tn, m);
}

int icl_tokrec_encode(const icl_tokenizer *t, icl_tok_state *st, const icl_tokrec_opts *o,
                      const json_t *rec, icl_buf *out, char *err, size_t errsz)
{
    const icl_tok_specials *sp = icl_tok_get_specials(t);
    json_t *p, *r, *tx;
    size_t nturn;
    int is_text;
    if (record_turns(rec, &p, &r, &tx, &nturn, &is_text, err, errsz))
        return -1;
    icl_tokrec_opts chat_o;
    if (json_is_true(json_object_get(rec, "chat"))) {
        /* rendered by the model's chat template: it wrote BOS and the
         * end-of-turn markers itself, as special-token text */
        chat_o = *o;
        chat_o.bos = chat_o.eos = 0;
        chat_o.parse_special = 1;
        o = &chat_o;
    }
    if (o->bos && sp->bos < 0)
        return snprintf(err, errsz, "the tokenizer has no BOS token"), -1;
    if (o->eos && sp->eos < 0)
        return snprintf(err, errsz, "the tokenizer has no EOS token"), -1;

    line_t *L = icl_xcalloc(1, sizeof *L);
    int any_text = 0, rc = 0, kind0 = 0;
    size_t nblank = 0, blank0 = 0;
    for (size_t i = 0; i < nturn && rc == 0; i++) {
        json_t *pi = is_text ? NULL : json_is_array(p) ? json_array_get(p, i) : p;
        json_t *ri = is_text ? tx : json_is_array(r) ? json_array_get(r, i) : r;
        /* context segment */
        if (pi) {
            rc = encode_part(t, st, o, json_string_value(pi), json_string_length(pi), any_text,
                             o->bos && i == 0, &L->ids, err, errsz);
            if (rc)
                field_error("prompt", json_is_array(p) ? i + 1 : 0, err, errsz);
            any_text |= json_string_length(pi) > 0;
        } else if (o->bos) {
            /* text record: BOS alone in the context (a BOS text starting the
             * text is skipped below); the text is not a continuation */
            icl_ids_push(&L->ids, sp->bos);
        }
        if (rc)
            break;
        /* target segment */
        const char *s = json_string_value(ri);
        size_t n = json_string_length(ri);
        if (o->drop_blank && blank(s, n)) {
            if (!nblank++) {
                blank0 = i + 1;
                kind0 = n > 0;
            }
            if (!is_text) { /* context: joins the next prompt's segment */
                rc = encode_part(t, st, o, s, n, any_text, 0, &L->ids, err, errsz);
                if (rc)
                    field_error("response", json_is_array(r) ? i + 1 : 0, err, errsz);
                any_text |= n > 0;
            }
            continue;
        }
        L->seg_end[L->nseg++] = L->ids.n;
        if (!pi && o->bos) {
            size_t bl = 0;
            const char *bt = icl_tok_piece(t, sp->bos, &bl);
            if (bt && bl && n >= bl && !memcmp(s, bt, bl)) {
                s += bl;
                n -= bl;
            }
        }
        rc = encode_part(t, st, o, s, n, any_text, 0, &L->ids, err, errsz);
        if (rc)
            field_error(is_text ? "text" : "response", !is_text && json_is_array(r) ? i + 1 : 0, err, errsz);
        any_text |= n > 0;
        if (o->eos)
            icl_ids_push(&L->ids, sp->eos);
        L->seg_end[L->nseg++] = L->ids.n;
    }
    if (rc) {
        icl_ids_free(&L->ids);
        free(L);
        return -1;
    }
    if (nblank) {
        const char *what = is_text ? "text" : "response";
        char num[32] = "";
        if (!is_text && json_is_array(r))
            snprintf(num, sizeof num, " %zu", blank0);
        if (L->nseg == 0) { /* no response to train on */
            snprintf(err, errsz, "%s %s%s", kind0 ? "whitespace-only" : "empty", what, num);
            icl_ids_free(&L->ids);
            free(L);
            return 2;
        }
        snprintf(err, errsz, "%s %s%s%s", kind0 ? "whitespace-only" : "empty", what, num,
                 nblank > 1 ? " and others" : "");
        L->ids.n = L->seg_end[L->nseg - 1]; /* a blank last turn: its context is left out */
    }
    size_t total = L->ids.n, nbos = (o->bos && total && L->ids.v[0] == sp->bos) ? 1 : 0;
    size_t start = 0;
    if (o->max_len > 0 && total > (size_t)o->max_len) {
        size_t last = L->seg_end[L->nseg - 1] - L->seg_end[L->nseg - 2];
        if (last + nbos > (size_t)o->max_len) {
            icl_ids_free(&L->ids);
            free(L);
            return 1;
        }
        size_t drop = total - (size_t)o->max_len;
        /* drop ids [nbos, nbos + drop) */
        memmove(L->ids.v + nbos, L->ids.v + nbos + drop, (total - nbos - drop) * sizeof *L->ids.v);
        L->ids.n -= drop;
        for (size_t k = 0; k < L->nseg; k++)
            if (L->seg_end[k] > nbos)
                L->seg_end[k] = L->seg_end[k] >= nbos + drop ? L->seg_end[k] - drop : nbos;
    }
    for (size_t k = 0; k < L->nseg; k++) {
        size_t e = L->seg_end[k];
        icl_toklines_put_segment(out, L->ids.v + start, e - start, k == 0);
        start = e;
    }
    icl_ids_free(&L->ids);
    free(L);
    return nblank ? 3 : 0;
}

json_t *icl_tokrec_decode(const icl_tokenizer *t, const int32_t *ids, const size_t *seg_end,
                          size_t nseg, int32_t bos, int32_t eos, char *err, size_t errsz)
{
    json_t *prompts = json_array(), *responses = json_array();
    icl_buf b = {0};
    size_t start = 0;
    int any = 0, first_empty = 0;
    for (size_t k = 0; k < nseg; k++) {
        size_t a = start, e = seg_end[k];
        start = e;
        if (k == 0 && e > a && bos >= 0 && ids[a] == bos)
            a++;
        if (k % 2 == 1 && e > a && eos >= 0 && ids[e - 1] == eos)
            e--;
        b.len = 0;
        if (icl_tok_decode(t, ids + a, e - a, 0, any ? ICL_TOK_CONTINUATION : 0, &b, err, errsz)) {
            icl_buf_free(&b);
            json_decref(prompts);
            json_decref(responses);
            return NULL;
        }
        if (k == 0)
            first_empty = e == a;
        any |= e > a;
        json_t *str = json_stringn(b.data ? b.data : "", b.len);
        if (!str) {
            snprintf(err, errsz, "segment %zu does not decode to valid UTF-8", k + 1);
            icl_buf_free(&b);
            json_decref(prompts);
            json_decref(responses);
            return NULL;
        }
        json_array_append_new(k % 2 ? responses : prompts, str);
    }
    icl_buf_free(&b);
    if (json_array_size(responses) < json_array_size(prompts))
        json_array_append_new(responses, json_string(""));
    json_t *rec = json_object();
    if (nseg == 2 && first_empty) {
        json_object_set(rec, "text", json_array_get(responses, 0));
    } else if (json_array_size(prompts) == 1) {
        json_object_set(rec, "prompt", json_array_get(prompts, 0));
        json_object_set(rec, "response", json_array_get(responses, 0));
    } else {
        json_object_set(rec, "prompt", prompts);
        json_object_set(rec, "response", responses);
    }
    json_decref(prompts);
    json_decref(responses);
    return rec;
}
