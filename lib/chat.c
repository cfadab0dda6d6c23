/* chat.c - chat templates: loading, rendering, assistant spans (see chat.h). */
#define _GNU_SOURCE /* memmem */
#include "chat.h"
#include "fileio.h"
#include "tokenizer.h"
#include "tokgguf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *const icl_chat_end_markers[] = {"<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<end_of_turn>",
                                            "<|end|>", "</s>", "<|endoftext|>", "<|end_of_text|>",
                                            "<｜end▁of▁sentence｜>", NULL};

struct icl_chat {
    icl_jinja *t;
    json_t *vars; /* special tokens and user-set variables */
    icl_jinja_limits lim;
};

/* a chat template or tokenizer_config.json: at most 64 MB; a FIFO never
 * blocks (icl_read_file) */
/* b = DIR/FILE (one slash between, whatever DIR ends with) */
static void buf_join(icl_buf *b, const char *dir, const char *file)
{
    char *j = icl_path_join(dir, file);
    buf_printf(b, "%s", j);
    free(j);
}

static char *read_file(const char *path, size_t *n, char *err, size_t errsz)
{
    return icl_read_file(path, (size_t)64 << 20, n, err, errsz);
}

/* tokenizer_config.json: big integers (model_max_length 1e30) read as reals */
static json_t *load_config(const char *path, char *err, size_t errsz)
{
    json_error_t je;
    size_t n;
    char *text = read_file(path, &n, err, errsz);
    if (!text)
        return NULL;
    json_t *j = json_loadb(text, n, JSON_DECODE_INT_AS_REAL, &je);
    free(text);
    if (!j) {
        icl_seterr(err, errsz, "%s:%d: %s", path, je.line, je.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        icl_seterr(err, errsz, "%s: not a JSON object", path);
        return NULL;
    }
    return j;
}

/* a special token as tokenizer_config.json writes it: "x" or {"content": "x", ...} */
static const char *tok_str(json_t *cfg, const char *key)
{
    json_t *v = json_object_get(cfg, key);
    if (json_is_object(v))
        v = json_object_get(v, "content");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static icl_chat *chat_new(const char *src, size_t n, const char *name, json_t *cfg, char *err, size_t errsz)
{
    icl_jinja *t = icl_jinja_parse(src, n, name, err, errsz);
    if (!t)
        return NULL;
    icl_chat *c = xcalloc(1, sizeof *c);
    c->t = t;
    c->vars = json_object();
    static const char *const toks[] = {"bos_token", "eos_token", "unk_token", "pad_token", NULL};
    for (int k = 0; cfg && toks[k]; k++) {
        const char *s = tok_str(cfg, toks[k]);
        if (s)
            json_object_set_new(c->vars, toks[k], json_string(s));
    }
    return c;
}

icl_chat *icl_chat_from_string(const char *tmpl, size_t n, const char *name, const char *bos, const char *eos,
                               char *err, size_t errsz)
{
    json_t *cfg = json_object();
    if (bos)
        json_object_set_new(cfg, "bos_token", json_string(bos));
    if (eos)
        json_object_set_new(cfg, "eos_token", json_string(eos));
    icl_chat *c = chat_new(tmpl, n, name ? name : "chat_template", cfg, err, errsz);
    json_decref(cfg);
    return c;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* the template text inside a tokenizer_config.json (string, or a list of {name, template}) */
static const char *config_template(json_t *cfg)
{
    json_t *ct = json_object_get(cfg, "chat_template");
    if (json_is_string(ct))
        return json_string_value(ct);
    if (json_is_array(ct)) {
        for (size_t i = 0; i < json_array_size(ct); i++) {
            json_t *e = json_array_get(ct, i);
            if (json_is_string(json_object_get(e, "name")) &&
                !strcmp(json_string_value(json_object_get(e, "name")), "default") &&
                json_is_string(json_object_get(e, "template")))
                return json_string_value(json_object_get(e, "template"));
        }
    }
    return NULL;
}

/* The template of a GGUF file (tokenizer.chat_template), with the BOS and
 * EOS texts of its tokenizer. */
static icl_chat *chat_from_gguf(const char *path, char *err, size_t errsz)
{
    icl_tokenizer *t = icl_tok_load_gguf(path, err, errsz);
    if (!t)
        return NULL;
    icl_chat *c = NULL;
    const char *tmpl = icl_tok_chat_template(t);
    if (!tmpl) {
        icl_seterr(err, errsz, "%s: no tokenizer.chat_template (a base model? give a .jinja file)", path);
    } else {
        const icl_tok_specials *sp = icl_tok_get_specials(t);
        char *tok[2] = {NULL, NULL};
        int32_t ids[2] = {sp->bos, sp->eos};
        for (int k = 0; k < 2; k++) {
            size_t len = 0;
            const char *s = ids[k] >= 0 ? icl_tok_piece(t, ids[k], &len) : NULL;
            if (s)
                tok[k] = icl_xstrndup(s, len);
        }
        c = icl_chat_from_string(tmpl, strlen(tmpl), path, tok[0], tok[1], err, errsz);
        free(tok[0]);
        free(tok[1]);
    }
    icl_tok_free(t);
    return c;
}

/* 1 if path is a regular file that starts with GGUF's magic "GGUF" */
static int gguf_magic(const char *path)
{
    struct stat st;
    char m[4];
    FILE *f = !stat(path, &st) && S_ISREG(st.st_mode) ? fopen(path, "rb") : NULL;
    int yes = f && fread(m, 1, 4, f) == 4 && !memcmp(m, "GGUF", 4);
    if (f)
        fclose(f);
    return yes;
}

/* A loaded template must write the messages: one that renders a user and
 * an assistant message without either text is not a chat template (a data
 * file, a prompt).  One that fails on this conversation (a template that
 * wants a system message, say) is given the benefit of the doubt.  0, or
 * -1 with "path: not a chat template ..." in err. */
static int probe(const icl_chat *c, const char *path, char *err, size_t errsz)
{
    static const char q[] = "icl probe question", a[] = "icl probe answer";
    json_t *m = json_pack("[{s:s, s:s}, {s:s, s:s}]", "role", "user", "content", q, "role", "assistant",
                          "content", a);
    icl_buf out = {0};
    char e[300];
    int bad = m && !icl_chat_render(c, m, 0, &out, e, sizeof e) &&
              !(out.len && (memmem(out.data, out.len, q, strlen(q)) || memmem(out.data, out.len, a, strlen(a))));
    json_decref(m);
    buf_free(&out);
    if (bad)
        icl_seterr(err, errsz, "%s: not a chat template: it renders none of the messages' text", path);
    return bad ? -1 : 0;
}

icl_chat *icl_chat_load(const char *path, char *err, size_t errsz)
{
    struct stat st;
    if (stat(path, &st)) {
        icl_seterr(err, errsz, "%s: %s", path, strerror(errno));
        return NULL;
    }
    icl_buf p = {0};
    json_t *cfg = NULL;
    icl_chat *c = NULL;
    char *src = NULL;
    size_t n = 0;
    if (S_ISDIR(st.st_mode)) {
        buf_join(&p, path, "tokenizer_config.json");
        if (!stat(p.data, &st) && !(cfg = load_config(p.data, err, errsz)))
            goto out;
        buf_clear(&p);
        buf_join(&p, path, "chat_template.jinja");
        if (!stat(p.data, &st)) {
            if (!(src = read_file(p.data, &n, err, errsz)))
                goto out;
            c = chat_new(src, n, p.data, cfg, err, errsz);
            goto out;
        }
        if (!cfg) {
            /* a PEFT adapter folder: its template is its base model's */
            buf_clear(&p);
            buf_join(&p, path, "adapter_config.json");
            json_t *ac = stat(p.data, &st) ? NULL : json_load_file(p.data, 0, NULL);
            const char *base = json_string_value(json_object_get(ac, "base_model_name_or_path"));
            if (base && *base)
                icl_seterr(err, errsz, "%s: no tokenizer_config.json or chat_template.jinja: a LoRA adapter "
                           "folder, whose chat template is its base model's: give the base (%s)", path, base);
            else
                icl_seterr(err, errsz, "%s: no chat template here (no tokenizer_config.json or "
                           "chat_template.jinja; a model trained with --arch has none)", path);
            json_decref(ac);
            goto out;
        }
        buf_clear(&p);
        buf_join(&p, path, "tokenizer_config.json");
    } else if (ends_with(path, ".gguf")) {
        c = chat_from_gguf(path, err, errsz);
        goto out;
    } else if (ends_with(path, ".json")) {
        if (!(cfg = load_config(path, err, errsz)))
            goto out;
        buf_puts(&p, path);
    } else if (gguf_magic(path)) { /* a GGUF file by another name */
        c = chat_from_gguf(path, err, errsz);
        goto out;
    } else {
        if (!(src = read_file(path, &n, err, errsz)))
            goto out;
        if (!ends_with(path, ".jinja") && !memmem(src, n, "{{", 2) && !memmem(src, n, "{%", 2)) {
            icl_seterr(err, errsz, "%s: not a chat template (no Jinja {{ }} or {%% %%} in it): give a model folder, "
                       "a GGUF file, a tokenizer_config.json or a .jinja file", path);
            goto out;
        }
        /* special tokens from a tokenizer_config.json beside the file */
        const char *sl = strrchr(path, '/');
        icl_buf cp = {0};
        if (sl)
            buf_append(&cp, path, (size_t)(sl - path + 1));
        buf_puts(&cp, "tokenizer_config.json");
        if (!stat(cp.data, &st) && !(cfg = load_config(cp.data, err, errsz))) {
            buf_free(&cp);
            goto out;
        }
        buf_free(&cp);
        c = chat_new(src, n, path, cfg, err, errsz);
        goto out;
    }
    {
        const char *t = config_template(cfg);
        if (!t) {
            icl_seterr(err, errsz, "%s: no \"chat_template\" (a base model? give a .jinja file)", p.data);
            goto out;
        }
        c = chat_new(t, strlen(t), p.data, cfg, err, errsz);
    }
out:
    if (c && probe(c, path, err, errsz)) {
        icl_chat_free(c);
        c = NULL;
    }
    free(src);
    json_decref(cfg);
    buf_free(&p);
    return c;
}

void icl_chat_free(icl_chat *c)
{
    if (!c)
        return;
    icl_jinja_free(c->t);
    json_decref(c->vars);
    free(c);
}

int icl_chat_set_var(icl_chat *c, const char *spec, char *err, size_t errsz)
{
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec) {
        icl_seterr(err, errsz, "template variable '%s': want NAME=VALUE", spec);
        return -1;
    }
    char *name = xstrndup(spec, (size_t)(eq - spec));
    json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
    if (!v)
        v = json_string(eq + 1);
    if (!v) {
        free(name);
        icl_seterr(err, errsz, "template variable '%s': value is not valid UTF-8", spec);
        return -1;
    }
    json_object_set_new(c->vars, name, v);
    free(name);
    return 0;
}

const char *icl_chat_bos(const icl_chat *c) { return json_string_value(json_object_get(c->vars, "bos_token")); }
const char *icl_chat_eos(const icl_chat *c) { return json_string_value(json_object_get(c->vars, "eos_token")); }
void icl_chat_set_limits(icl_chat *c, const icl_jinja_limits *lim) { c->lim = *lim; }

json_t *icl_chat_messages(const json_t *msgs, char *err, size_t errsz)
{
    if (!json_is_array(msgs) || !json_array_size(msgs)) {
        icl_seterr(err, errsz, "messages must be a non-empty array");
        return NULL;
    }
    json_t *out = json_array();
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        if (!json_is_object(m)) {
            icl_seterr(err, errsz, "message %zu is not an object", i + 1);
            json_decref(out);
            return NULL;
        }
        json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
        const char *r = NULL;
        if (!role && json_is_string(json_object_get(m, "from"))) { /* ShareGPT */
            const char *f = json_string_value(json_object_get(m, "from"));
            r = !strcmp(f, "human") || !strcmp(f, "user") ? "user"
                : !strcmp(f, "gpt") || !strcmp(f, "assistant") || !strcmp(f, "model") || !strcmp(f, "chatgpt") || !strcmp(f, "bing") || !strcmp(f, "bard") ? "assistant"
                : !strcmp(f, "system") ? "system"
                : !strcmp(f, "tool") || !strcmp(f, "function_response") || !strcmp(f, "observation") ? "tool"
                : NULL;
            if (!r) {
                icl_seterr(err, errsz, "message %zu: unknown ShareGPT speaker \"from\": \"%s\"", i + 1, f);
                json_decref(out);
                return NULL;
            }
            content = json_object_get(m, "value");
        } else if (json_is_string(role)) {
            r = json_string_value(role);
        }
        if (!r || !(json_is_string(content) || json_is_null(content) || json_is_array(content))) {
            icl_seterr(err, errsz, "message %zu: want {\"role\", \"content\"} or {\"from\", \"value\"} with a string", i + 1);
            json_decref(out);
            return NULL;
        }
        json_t *o = json_object();
        json_object_set_new(o, "role", json_string(r));
        json_object_set(o, "content", content);
        const char *k;
        json_t *v;
        json_object_foreach(m, k, v) if (strcmp(k, "role") && strcmp(k, "content") && strcmp(k, "from") &&
                                         strcmp(k, "value")) json_object_set(o, k, v);
        json_array_append_new(out, o);
    }
    return out;
}

static int render_spans(const icl_chat *c, const json_t *messages, int agp, icl_buf *out, icl_jinja_span **spans,
                        size_t *nspans, char *err, size_t errsz)
{
    json_t *v = json_copy(c->vars);
    json_object_set(v, "messages", (json_t *)messages);
    json_object_set_new(v, "add_generation_prompt", json_boolean(agp));
    if (!json_object_get(v, "tools"))
        json_object_set_new(v, "tools", json_null());
    if (!json_object_get(v, "documents"))
        json_object_set_new(v, "documents", json_null());
    int rc = icl_jinja_render(c->t, v, &c->lim, out, spans, nspans, err, errsz);
    json_decref(v);
    return rc;
}

int icl_chat_render(const icl_chat *c, const json_t *messages, int agp, icl_buf *out, char *err, size_t errsz)
{
    return render_spans(c, messages, agp, out, NULL, NULL, err, errsz);
}

/* the first end-of-turn marker in s[from..n): its end offset, or 0; *which
 * (which may be NULL) the marker found, or NULL */
static size_t find_marker_which(const icl_chat *c, const char *s, size_t n, size_t from, const char **which)
{
    const char *best = NULL, *bm = NULL;
    size_t blen = 0;
    const char *eos = icl_chat_eos(c);
    for (int k = -1; k < 0 || icl_chat_end_markers[k]; k++) {
        const char *m = k < 0 ? eos : icl_chat_end_markers[k];
        if (!m || !*m)
            continue;
        const char *f = memmem(s + from, n - from, m, strlen(m));
        if (f && (!best || f < best || (f == best && strlen(m) > blen))) {
            best = f;
            blen = strlen(m);
            bm = m;
        }
    }
    if (which)
        *which = bm;
    return best ? (size_t)(best - s) + blen : 0;
}

static size_t find_marker(const icl_chat *c, const char *s, size_t n, size_t from)
{
    return find_marker_which(c, s, n, from, NULL);
}

int icl_chat_segments(const icl_chat *c, const json_t *messages, json_t **prompts, json_t **responses, char *err,
                      size_t errsz)
{
    *prompts = *responses = NULL;
    icl_buf full = {0}, pre = {0}, turn = {0};
    int rc = -1;
    icl_jinja_span *gs = NULL;
    size_t ngs = 0;
    if (render_spans(c, messages, 0, &full, &gs, &ngs, err, errsz))
        goto out;
    json_t *P = json_array(), *Rs = json_array();
    size_t done = 0; /* end of the last target */
    if (ngs) {
        /* the template marks the targets itself with {% generation %} */
        for (size_t k = 0; k < ngs; k++) {
            if (gs[k].start < done || gs[k].end < gs[k].start) {
                icl_seterr(err, errsz, "{%% generation %%} blocks overlap");
                free(gs);
                goto bad;
            }
            if (gs[k].end == gs[k].start)
                continue;
            json_array_append_new(P, json_stringn(full.data + done, gs[k].start - done));
            json_array_append_new(Rs, json_stringn(full.data + gs[k].start, gs[k].end - gs[k].start));
            done = gs[k].end;
        }
        free(gs);
        if (!json_array_size(P)) {
            icl_seterr(err, errsz, "no assistant message to train on ({%% generation %%} blocks are empty)");
            goto bad;
        }
        *prompts = P;
        *responses = Rs;
        rc = 0;
        goto out;
    }
    size_t nmsg = json_array_size(messages), nth = 0; /* nth: the assistant reply's number, from 1 */
    for (size_t i = 0; i < nmsg; i++) {
        json_t *m = json_array_get(messages, i);
        if (strcmp(json_string_value(json_object_get(m, "role")), "assistant"))
            continue;
        nth++;
        json_t *head = json_array();
        for (size_t j = 0; j < i; j++)
            json_array_append(head, json_array_get(messages, j));
        buf_clear(&pre);
        int r = icl_chat_render(c, head, 1, &pre, err, errsz);
        json_decref(head);
        if (r)
            goto bad;
        /* the generation prompt must be a prefix of the full rendering (some
         * templates end it with whitespace the full rendering lacks) */
        size_t st = pre.len;
        const char *fd = full.data ? full.data : "", *pd = pre.data ? pre.data : "";
        if (st > full.len || memcmp(pd, fd, st)) {
            while (st && (pd[st - 1] == ' ' || pd[st - 1] == '\n' || pd[st - 1] == '\t' || pd[st - 1] == '\r'))
                st--;
            if (st > full.len || memcmp(pd, fd, st)) {
                int user_before = 0;
                for (size_t j = 0; j < i && !user_before; j++)
                    user_before = !strcmp(json_string_value(json_object_get(json_array_get(messages, j), "role")),
                                          "user");
                if (!user_before) /* the usual cause: a greeting before the user's first message */
                    icl_seterr(err, errsz, "cannot locate assistant reply %zu (message %zu of the conversation): it "
                               "comes before any user message, and the template renders the messages before it "
                               "differently on their own (without a user turn), so its span is unknown; start the "
                               "conversation with a user message", nth, i + 1);
                else
                    icl_seterr(err, errsz, "cannot locate assistant reply %zu (message %zu of the conversation): "
                               "the template renders the conversation before it differently when more messages "
                               "follow (it rewrites earlier turns), so its span is unknown; train on one-turn "
                               "records or use another template", nth, i + 1);
                goto bad;
            }
        }
        /* ... and the target starts no later than where a rendering with a
         * different content for this message departs from the real one */
        {
            json_t *alt = json_array(), *am = json_copy(m);
            for (size_t j = 0; j < i; j++)
                json_array_append(alt, json_array_get(messages, j));
            json_object_set_new(am, "content", json_string("\x01"));
            json_array_append_new(alt, am);
            buf_clear(&turn);
            r = icl_chat_render(c, alt, 0, &turn, err, errsz);
            json_decref(alt);
            if (r)
                goto bad;
            size_t cp = 0;
            while (cp < turn.len && cp < full.len && turn.data[cp] == full.data[cp])
                cp++;
            if (cp < st)
                st = cp;
        }
        if (st < done) {
            icl_seterr(err, errsz, "cannot locate assistant reply %zu (message %zu of the conversation): its "
                       "generation prompt ends inside the previous assistant turn", nth, i + 1);
            goto bad;
        }
        /* where the content ends: render through this message and look for
         * the content in the turn's text when it matches the full rendering */
        json_t *upto = json_array();
        for (size_t j = 0; j <= i; j++)
            json_array_append(upto, json_array_get(messages, j));
        buf_clear(&turn);
        r = icl_chat_render(c, upto, 0, &turn, err, errsz);
        json_decref(upto);
        if (r)
            goto bad;
        size_t from = st;
        json_t *content = json_object_get(m, "content");
        if (json_is_string(content)) {
            /* an end-of-turn marker inside the answer would end its turn
             * there: the rest would be lost (or trained as prompt) */
            const char *mark;
            if (find_marker_which(c, json_string_value(content), json_string_length(content), 0, &mark)) {
                icl_seterr(err, errsz, "assistant reply %zu (message %zu of the conversation) has the end-of-turn "
                           "marker %s in its text: its turn would end there and the rest be lost; remove it from the "
                           "data", nth, i + 1, mark);
                goto bad;
            }
        }
        if (json_is_string(content) && turn.len >= st && !memcmp(turn.data, full.data, st)) {
            /* the last occurrence of the (trimmed) content within this turn's text */
            const char *cs = json_string_value(content);
            size_t cn = json_string_length(content);
            while (cn && (*cs == ' ' || *cs == '\n' || *cs == '\t' || *cs == '\r')) {
                cs++;
                cn--;
            }
            while (cn && (cs[cn - 1] == ' ' || cs[cn - 1] == '\n' || cs[cn - 1] == '\t' || cs[cn - 1] == '\r'))
                cn--;
            size_t tend = find_marker(c, turn.data, turn.len, st);
            size_t lim = tend ? tend : turn.len;
            if (cn && lim <= full.len && !memcmp(turn.data + st, full.data + st, lim - st)) {
                const char *f = memmem(turn.data + st, lim - st, cs, cn);
                if (f)
                    from = (size_t)(f - turn.data) + cn;
            }
        }
        size_t end = find_marker(c, full.data, full.len, from);
        /* when the rendering through this message is a prefix of the whole,
         * the turn must end inside it (a template that drops the message
         * would otherwise lend it a later marker) */
        if (end && turn.len <= full.len && !memcmp(turn.data ? turn.data : "", full.data, turn.len) &&
            end > turn.len) {
            icl_seterr(err, errsz, "cannot find the end of assistant reply %zu (message %zu of the conversation): "
                       "no end-of-turn marker in its rendering (does the template write it?)", nth, i + 1);
            goto bad;
        }
        if (!end) {
            icl_seterr(err, errsz, "cannot find the end of assistant reply %zu (message %zu of the conversation): "
                       "no end-of-turn marker (%s or eos_token) after it", nth, i + 1, icl_chat_end_markers[0]);
            goto bad;
        }
        json_array_append_new(P, json_stringn(full.data + done, st - done));
        json_array_append_new(Rs, json_stringn(full.data + st, end - st));
        done = end;
    }
    if (!json_array_size(P)) {
        icl_seterr(err, errsz, "no assistant message to train on");
        goto bad;
    }
    *prompts = P;
    *responses = Rs;
    rc = 0;
    goto out;
bad:
    json_decref(P);
    json_decref(Rs);
out:
    buf_free(&full);
    buf_free(&pre);
    buf_free(&turn);
    return rc;
}
