/* icl-gen - generate completions for prompts with a model folder: records in,
 * records with "completion" out (or token lines in and out with --ids), or
 * a chat on standard input (--chat).  See icl-gen(1).  All computing is in
 * lib/generate.c. */
#include <errno.h>
#include <float.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bf16.h"
#include "chat.h"
#include "generate.h"
#include "lora.h"
#include "gguf_model.h"
#include "model.h"
#include "record.h"
#include "sniff.h"
#include "tokenizer.h"
#include "tokgguf.h"
#include "toklines.h"
#include "utf8.h"
#include "tokrec.h"
#include "cli.h"
#include "common/adapt.h"
#include "util.h"

static void usage(FILE *f)
{
    fprintf(f,
"Usage: icl-gen -m MODEL_DIR [OPTION]... [FILE]...\n"
"  or:  icl-gen -m MODEL_DIR --chat [--system TEXT] [OPTION]...\n"
"Generate a completion for the \"prompt\" of each JSON Lines record (FILEs, or\n"
"standard input) and write the record back with \"completion\" added (a record\n"
"that has one already is an error: see --output-key); or chat:\n"
"one message a line of standard input (a line ending in \\ goes on on the\n"
"next), each reply written as it is generated.\n"
"\n"
"  -m, --model DIR            Hugging Face model folder (config.json,\n"
"                             model.safetensors, tokenizer.json), GGUF file, or\n"
"                             PEFT adapter folder (its base_model_name_or_path\n"
"                             is loaded with the adapter)\n"
"      --adapter DIR[:SCALE]  apply the PEFT LoRA adapter folder DIR, its\n"
"                             output times SCALE (default 1); repeatable: the\n"
"                             sum of the adapters; merged into a float32\n"
"                             model, applied unmerged on a quantized GGUF\n"
"      --dequantize           a GGUF model: dequantize every matrix to float32\n"
"                             (default: keep the quantized blocks; the prefill\n"
"                             dequantizes tile by tile, decode steps use\n"
"                             integer dot products, activations in int8)\n"
"  -n, --max-new-tokens N     at most N new tokens per prompt (default:\n"
"                             generation_config.json's, else 256)\n"
"      --temperature F        sample at temperature F (0 = greedy)\n"
"      --top-k N              sample from the N most likely tokens (0 = off)\n"
"      --top-p F              sample from the smallest set of tokens whose\n"
"                             probability reaches F (1 = off, 0 = greedy)\n"
"      --min-p F              drop tokens below F times the top probability\n"
"      --repetition-penalty F divide (multiply if negative) the logits of\n"
"                             tokens already seen by F (1 = off; greedy too)\n"
"      --greedy               argmax decoding, whatever the model folder says\n"
"  -s, --seed N               random seed (default 0); record i always draws\n"
"                             from stream (N, i): same output at any batch size\n"
"      --num-return-sequences N\n"
"                             N samples of each record (default 1), written\n"
"                             one after another with \"sample\": 0..N-1 (a\n"
"                             record with \"sample\" already is an error);\n"
"                             sample j of record i draws from stream\n"
"                             (seed, i + j * 2^32): more samples keep the\n"
"                             earlier ones (for pass@k; needs sampling: with\n"
"                             greedy decoding N > 1 is a usage error)\n"
"      --stop STR             end a completion where STR appears (STR is not\n"
"                             included; taken literally: a newline is\n"
"                             $'\\n' in bash); repeatable\n"
"      --output-key KEY       write each completion under KEY (default\n"
"                             \"completion\"; icl-eval --pred KEY reads it); a\n"
"                             record that has KEY already is an error, not\n"
"                             overwritten\n"
"  -b, --batch-size N         prompts decoded together (default 8)\n"
"      --ids                  read token lines, write token lines: each input\n"
"                             line's segments (less a last target segment, the\n"
"                             reference) then TAB and the generated ids\n"
"      --parse-special        special-token text in prompts becomes special ids\n"
"                             (as icl-tok encode --parse-special; records of\n"
"                             icl-fmt --chat-template always parse it)\n"
"      --chat-template MODEL  render records with \"messages\" (OpenAI or ShareGPT\n"
"                             form) by this chat template (a model folder, a\n"
"                             GGUF file, tokenizer_config.json or .jinja file)\n"
"                             with add_generation_prompt; default: the model's\n"
"                             own template (a folder's or a GGUF's), if any\n"
"      --template-var NAME=VALUE  a chat-template variable (repeatable); VALUE\n"
"                             is JSON if it parses, else a string\n"
"  -i, --chat, --interactive  chat with the model (its chat template, or\n"
"                             --chat-template): each line of standard input\n"
"                             is a user message (a line ending in \\ goes on\n"
"                             on the next); the reply is streamed to\n"
"                             standard output, then a newline.  Lines /reset\n"
"                             (forget the conversation), /exit or /quit (end;\n"
"                             so does end of input), /help.  The keys and\n"
"                             values of each prompt are kept, so a turn\n"
"                             prefills only the last reply and the new\n"
"                             message (a reply may hold newlines); when a\n"
"                             reply of -n tokens would pass the\n"
"                             context, the oldest exchanges are dropped (said\n"
"                             on standard error); a message that cannot be\n"
"                             sent is said there, and the exit status is 1\n"
"      --system TEXT          with --chat: the system message (kept by /reset)\n"
"      --stream               write plain text as it is generated (the default\n"
"                             when standard output is a terminal)\n"
"      --threads N            threads (default: ICL_NUM_THREADS, else all cores\n"
"                             less those other programs keep busy, measured\n"
"                             between batches; a notice names each change;\n"
"                             the output does not depend on the count)\n"
"      --no-adaptive-threads  without --threads: all cores whatever the load\n"
"      --dtype TYPE           f32 or float32 (default), bf16 or bfloat16: the\n"
"                             matrix products with weights and activations\n"
"                             rounded to bfloat16 and float32 sums\n"
"                             (AMX-BF16 or AVX512-BF16, -V says which;\n"
"                             slower portable code on CPUs without them,\n"
"                             said on standard error)\n"
"      --progress / --no-progress   force the progress line on standard error\n"
"                             (count, rate, ETA) on or off (default: on when\n"
"                             it is a terminal, unless text is streamed)\n"
"  -q, --quiet                no progress line, no notice of the thread count\n"
"                             or of how the model is loaded (errors and\n"
"                             warnings still)\n"
"  -h, --help                 show this help and exit\n"
"  -V, --version              show the version and exit\n"
"\n"
"Decoding stops at any eos_token_id of generation_config.json (else\n"
"config.json, else the tokenizer's EOS), at a --stop string, at\n"
"--max-new-tokens, or when the context (max_position_embeddings) is full;\n"
"with a chat template also at its end-of-turn tokens (eos_token, <|im_end|>,\n"
"<|eot_id|>, <end_of_turn>, <|end|>... when they are special tokens).\n"
"Without --temperature, --top-k, --top-p or --min-p, decoding is greedy\n"
"unless generation_config.json sets do_sample;\n"
"any of them turns sampling on, with the other values from\n"
"generation_config.json or transformers' defaults (temperature 1, top-k 50).\n"
"Prompts are tokenized as icl-tok encode does (BOS as the tokenizer adds it);\n"
"a \"prompt\" array is a conversation: turns with the \"response\" array, or\n"
"prompt, response, ..., prompt segments.  A record with \"messages\" (or\n"
"ShareGPT's \"conversations\") and no \"prompt\" is rendered by the chat\n"
"template (special tokens parsed, no BOS added: the template writes it).\n"
"\n"
"Examples:\n"
"  echo '{\"id\":1,\"prompt\":\"Once upon a time\"}' | icl-gen -m run/ -n 32\n"
"  {\"id\":1,\"prompt\":\"Once upon a time\",\"completion\":\" there was ...\"}\n"
"  icl-gen -m tuned.gguf --chat          # then type; Ctrl-D or /exit ends\n"
"\n"
"Exit status: 0 ok, 1 bad data or runtime failure, 2 bad usage.\n");
}

enum { OPT_TEMP = 256, OPT_TOPK, OPT_TOPP, OPT_MINP, OPT_REP, OPT_GREEDY, OPT_STOP, OPT_IDS, OPT_PARSE_SPECIAL,
       OPT_STREAM, OPT_NRET, OPT_THREADS, OPT_CHAT, OPT_TVAR, OPT_ADAPTER, OPT_PROGRESS, OPT_NO_PROGRESS, OPT_DTYPE, OPT_NO_ADAPT,
       OPT_DEQUANTIZE, OPT_SYSTEM, OPT_OUTKEY, OPT_OUTPUT };

static const struct option longopts[] = {
    {"model", required_argument, NULL, 'm'},
    {"adapter", required_argument, NULL, OPT_ADAPTER},
    {"dequantize", no_argument, NULL, OPT_DEQUANTIZE},
    {"max-new-tokens", required_argument, NULL, 'n'},
    {"temperature", required_argument, NULL, OPT_TEMP},
    {"top-k", required_argument, NULL, OPT_TOPK},
    {"top-p", required_argument, NULL, OPT_TOPP},
    {"min-p", required_argument, NULL, OPT_MINP},
    {"repetition-penalty", required_argument, NULL, OPT_REP},
    {"greedy", no_argument, NULL, OPT_GREEDY},
    {"seed", required_argument, NULL, 's'},
    {"stop", required_argument, NULL, OPT_STOP},
    {"batch-size", required_argument, NULL, 'b'},
    {"ids", no_argument, NULL, OPT_IDS},
    {"parse-special", no_argument, NULL, OPT_PARSE_SPECIAL},
    {"stream", no_argument, NULL, OPT_STREAM},
    {"num-return-sequences", required_argument, NULL, OPT_NRET},
    {"output-key", required_argument, NULL, OPT_OUTKEY},
    /* not an option: refused with a hint, so that getopt does not take
     * --output FILE for an abbreviation of --output-key */
    {"output", required_argument, NULL, OPT_OUTPUT},
    {"chat-template", required_argument, NULL, OPT_CHAT},
    {"template-var", required_argument, NULL, OPT_TVAR},
    {"chat", no_argument, NULL, 'i'},
    {"interactive", no_argument, NULL, 'i'},
    {"system", required_argument, NULL, OPT_SYSTEM},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"no-adaptive-threads", no_argument, NULL, OPT_NO_ADAPT},
    {"dtype", required_argument, NULL, OPT_DTYPE},
    {"progress", no_argument, NULL, OPT_PROGRESS},
    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

typedef struct {
    icl_model *m;
    icl_gen_config g;
    icl_tokenizer *tok;
    icl_tok_state *st;
    icl_tokrec_opts to;
    icl_chat *chat;  /* renders "messages" records; NULL: none */
    char chat_why[1024]; /* when chat is NULL: why (the model has none, or its template failed to load) */
    char **stop;
    int n_stop;
    int batch;
    int stream;
    uint64_t index;  /* records seen so far (the RNG stream of the next one) */
    int nret;        /* --num-return-sequences */
    const char *out_key; /* --output-key: the completion's key in text mode */
    uint64_t *streams; /* text mode: the RNG stream of each batch slot */
    int have_hdr;    /* --ids: a #icl-tokens header was seen (in any file) */
    icl_toklines_header hdr; /* the first one (source not kept) */
    icl_progress prog; /* completions (text) or lines (--ids) done */
    icl_adapt adapt;   /* the thread count that follows the load (adapt.on: not fixed) */
    int warned_special; /* the hint about special-token text was given */
} ctx_t;

/* Before a batch after the first: the thread count for it (polled here,
 * not after the last batch, so that the notice never names a completion
 * that does not come). */
static void batch_start(ctx_t *c)
{
    if (c->prog.done == 0)
        return;
    char where[64];
    /* "line 17", "completion 17": prog.what without its plural s */
    snprintf(where, sizeof where, "%.*s %ld", (int)strlen(c->prog.what) - 1, c->prog.what, c->prog.done + 1);
    icl_adapt_poll(&c->adapt, where);
}

/* A prompt must fit the model's context (icl_generate would refuse the
 * whole batch; say which record it is). */
static void check_fits(const ctx_t *c, const char *name, long line, size_t n)
{
    if ((long)n > c->m->cfg.max_position_embeddings)
        icl_die("%s:%ld: the prompt has %zu tokens, more than the model's context (max_position_embeddings %d)", name,
            line, n, c->m->cfg.max_position_embeddings);
}

/* Flush standard output now, so a write error is reported when it happens
 * (with its errno), not after the whole input was generated. */
static void flush_stdout(void)
{
    if (fflush(stdout) == EOF) {
        if (errno == EPIPE) /* a closed pipe with SIGPIPE ignored: quiet, as icl_init's check */
            exit(ICL_EXIT_OK);
        icl_die("<stdout>: write error:");
    }
}

/* ---------------------------------------------------------------- text mode */

typedef struct {
    ctx_t *c;
    icl_gen_seq *seqs;
    icl_gen_text *texts;
    const char **where; /* "file:line" of each record */
} batch_ctx;

static int is_eos(const icl_gen_config *g, int32_t id)
{
    for (int i = 0; i < g->n_eos; i++)
        if (g->eos[i] == id)
            return 1;
    return 0;
}

static int on_token(void *vp, int seq, int32_t id)
{
    batch_ctx *b = vp;
    icl_gen_seq *s = &b->seqs[seq];
    icl_gen_text *t = &b->texts[seq];
    char err[256];
    if (is_eos(&b->c->g, id))
        return 0; /* the eos ends the sequence; its text is not part of the completion */
    int r = icl_gen_text_update(t, s->out.v, s->out.n, err, sizeof err);
    if (r < 0)
        icl_die("%s: decoding the completion: %s", b->where[seq], err);
    if (b->c->stream) {
        size_t len;
        const char *p = icl_gen_text_stream(t, &len);
        if (len && fwrite(p, 1, len, stdout) != len)
            icl_die("write error:");
        flush_stdout();
    }
    return r == 1 && b->c->n_stop > 0;
}

/* Generate the n sequences (prompt, index and cache filled in) and decode
 * their texts into texts[] (initialised here, finished; the caller frees
 * them), streamed to stdout as they grow when c->stream. */
static void generate_texts(ctx_t *c, icl_gen_seq *seqs, icl_gen_text *texts, int n, const char **where)
{
    for (int i = 0; i < n; i++)
        icl_gen_text_init(&texts[i], c->tok, c->stop, c->n_stop);
    batch_ctx b = {c, seqs, texts, where};
    char err[512];
    if (icl_generate(c->m, &c->g, seqs, n, on_token, &b, err, sizeof err) != 0) {
        /* name the first record of the batch that the message may be about */
        icl_die("%s: %s", where[0], err);
    }
    for (int i = 0; i < n; i++) {
        if (icl_gen_text_finish(&texts[i], err, sizeof err) < 0)
            icl_die("%s: decoding the completion: %s", where[i], err);
        if (c->stream) {
            size_t len;
            const char *p = icl_gen_text_stream(&texts[i], &len);
            if (len && fwrite(p, 1, len, stdout) != len)
                icl_die("write error:");
        }
    }
}

static void run_text_batch(ctx_t *c, json_t **recs, icl_ids *prompts, int n, const char **where)
{
    icl_gen_seq *seqs = icl_xcalloc((size_t)n, sizeof *seqs);
    icl_gen_text *texts = icl_xcalloc((size_t)n, sizeof *texts);
    for (int i = 0; i < n; i++) {
        seqs[i].prompt = prompts[i].v;
        seqs[i].n_prompt = prompts[i].n;
        seqs[i].index = c->streams[i];
    }
    generate_texts(c, seqs, texts, n, where);
    for (int i = 0; i < n; i++) {
        if (c->stream) {
            if (fputs("\n\n", stdout) == EOF)
                icl_die("write error:");
            flush_stdout();
        } else {
            if (json_object_set_new(recs[i], c->out_key,
                                    json_stringn(texts[i].text.data ? texts[i].text.data : "", texts[i].text.len)))
                icl_die("%s: the completion could not be added to the record (out of memory?)", where[i]);
            if (icl_record_write(stdout, recs[i]) != 0)
                icl_die("<stdout>: write error:");
        }
        icl_gen_text_free(&texts[i]);
        icl_ids_free(&seqs[i].out);
    }
    flush_stdout();
    free(seqs);
    free(texts);
}

/* The prompt ids of a record: a "messages" (or ShareGPT "conversations")
 * record, and no "prompt", is
 * rendered by the chat template with add_generation_prompt and tokenized
 * with special tokens parsed and no BOS added; others as icl-tok does. */
static int chat_prompt_ids(ctx_t *c, const json_t *rec, icl_ids *out, char *err, size_t errsz)
{
    json_t *msgs = json_object_get(rec, "messages");
    if (!msgs && json_is_array(json_object_get(rec, "conversations")))
        msgs = json_object_get(rec, "conversations"); /* ShareGPT's name for them, as icl-fmt reads it */
    if (!msgs && !json_object_get(rec, "prompt"))
        return snprintf(err, errsz, "no \"prompt\" (nor \"messages\"): icl-gen reads records such as "
                        "icl-fmt writes; icl-fmt makes them from rows such as instruction/output"), -1;
    if (!msgs || json_object_get(rec, "prompt"))
        return icl_gen_prompt_ids(c->tok, c->st, &c->to, rec, out, err, errsz);
    if (!c->chat)
        return snprintf(err, errsz, "a \"messages\" record needs a chat template (%.400s): --chat-template MODEL",
                        c->chat_why), -1;
    json_t *m = icl_chat_messages(msgs, err, errsz);
    if (!m)
        return -1;
    icl_buf text = {0};
    int rc = icl_chat_render(c->chat, m, 1, &text, err, errsz);
    json_decref(m);
    if (rc == 0) {
        icl_tokrec_opts o = {.parse_special = 1};
        rc = icl_tokrec_encode_prompt(c->tok, c->st, &o, text.data ? text.data : "", text.len, out, err, errsz);
    }
    buf_free(&text);
    return rc;
}

/* Once per run: a prompt held special-token text ("<|im_start|>") that was
 * encoded as plain text, as icl-tok encode warns (a template's markers want
 * --parse-special or records of icl-fmt --chat-template). */
static void hint_special_text(ctx_t *c, const char *name, long lineno)
{
    int32_t id = -1;
    if (c->warned_special || c->to.parse_special || icl_tok_state_special_text(c->st, &id) == 0)
        return;
    size_t pl = 0;
    const char *piece = id >= 0 ? icl_tok_piece(c->tok, id, &pl) : NULL;
    icl_warn("%s:%ld: the prompt contains special-token text such as \"%.*s\", encoded as plain text; "
             "if a template wrote it, use --parse-special (this is said once)",
             name, lineno, piece ? (int)pl : 0, piece ? piece : "");
    c->warned_special = 1;
}

/* When the first line of an input is not a JSON record: what the file
 * seems to be instead (sniff.h), as a hint appended to the error ("" if
 * nothing fits).  Token lines want --ids; anything else that does not start
 * as JSON is CSV or text, which icl-fmt makes records of. */
static const char *not_records_hint(const char *p, size_t n)
{
    switch (icl_sniff_line(p, n)) {
    case ICL_KIND_TOKEN_LINES:
        return " (these are token lines, from icl-tok encode: give --ids to generate from token lines)";
    case ICL_KIND_RECORDS: case ICL_KIND_JSON: case ICL_KIND_EMPTY:
        return ""; /* JSON, broken: the error says where */
    default:
        return " (icl-gen reads JSON Lines records, {\"prompt\": ...} or {\"messages\": [...]}, one a line: "
               "icl-fmt makes them from CSV, TSV or JSON data)";
    }
}

/* Dies when record rec (line lineno of name) has the key the completion
 * goes in (or "sample", which --num-return-sequences sets): icl-gen adds
 * keys, it never overwrites the input's. */
static void check_free_keys(const ctx_t *c, json_t *rec, const char *name, long lineno)
{
    if (json_object_get(rec, c->out_key))
        icl_die("%s:%ld: the record has a \"%s\" key already, which the completion would overwrite: write "
                "the completions under another key (--output-key KEY; icl-eval --pred KEY reads them), or "
                "rename that one first%s",
                name, lineno, c->out_key,
                strcmp(c->out_key, "completion") ? ""
                                                 : " (icl-fmt --map response=completion reads {\"prompt\", "
                                                   "\"completion\"} records as prompt and response)");
    if (c->nret > 1 && json_object_get(rec, "sample"))
        icl_die("%s:%ld: the record has a \"sample\" key already, which --num-return-sequences would overwrite "
                "with the sample's number: rename it first",
                name, lineno);
}

/* Before generating from a regular file: its records' keys checked in a
 * quick pass (check_free_keys), so that a conflict near the end of a long
 * file is found before hours of generation, not after.  A record that
 * does not parse is left to the generating pass, which says why. */
static void prescan_keys(const ctx_t *c, const char *path)
{
    struct stat sb;
    icl_lines r;
    char err[512];
    json_t *rec;
    if (c->stream || !strcmp(path, "-") || stat(path, &sb) != 0 || !S_ISREG(sb.st_mode) ||
        icl_lines_open(&r, path, err, sizeof err) != 0)
        return;
    const char *name = icl_display_name(path);
    int st;
    while ((st = icl_record_next(&r, &rec, err, sizeof err)) > 0) {
        int has_prompt = json_object_get(rec, "prompt") || json_object_get(rec, "messages") ||
                         json_object_get(rec, "conversations");
        if (has_prompt) /* else the generating pass says what is missing first */
            check_free_keys(c, rec, name, r.lineno);
        json_decref(rec);
    }
    icl_lines_close(&r);
}

static void gen_text_file(ctx_t *c, const char *path)
{
    icl_lines r;
    char oerr[512];
    prescan_keys(c, path);
    if (icl_lines_open(&r, path, oerr, sizeof oerr) != 0)
        icl_die("%s", oerr);
    const char *name = icl_display_name(path);
    json_t **recs = icl_xcalloc((size_t)c->batch, sizeof *recs);
    icl_ids *prompts = icl_xcalloc((size_t)c->batch, sizeof *prompts);
    char **where = icl_xcalloc((size_t)c->batch, sizeof *where);
    int n = 0, st;
    char err[512];
    json_t *rec;
    long records = 0;
    while ((st = icl_record_next(&r, &rec, err, sizeof err)) != 0) {
        if (st < 0)
            icl_die("%s%s", err, records ? "" : not_records_hint(r.line.data, r.line.len));
        records++;
        for (int j = 0; j < c->nret; j++) { /* sample j of this record */
            prompts[n].n = 0;
            if (chat_prompt_ids(c, rec, &prompts[n], err, sizeof err) != 0)
                icl_die("%s:%ld: %s", name, r.lineno, err);
            if (j == 0 && !c->stream) /* the records written back: nothing of them is lost */
                check_free_keys(c, rec, name, r.lineno);
            hint_special_text(c, name, r.lineno);
            if (prompts[n].n == 0)
                icl_die("%s:%ld: the prompt is empty (no tokens, no BOS)", name, r.lineno);
            check_fits(c, name, r.lineno, prompts[n].n);
            free(where[n]);
            size_t wl = strlen(name) + 32;
            where[n] = icl_xmalloc(wl);
            snprintf(where[n], wl, "%s:%ld", name, r.lineno);
            if (c->nret == 1) {
                recs[n] = json_incref(rec);
            } else {
                recs[n] = json_deep_copy(rec);
                json_object_set_new(recs[n], "sample", json_integer(j));
            }
            c->streams[n] = c->index + ((uint64_t)j << 32);
            n++;
            if (n == c->batch) {
                batch_start(c);
                run_text_batch(c, recs, prompts, n, (const char **)where);
                icl_progress_add(&c->prog, n);
                for (int i = 0; i < n; i++)
                    json_decref(recs[i]);
                n = 0;
            }
        }
        json_decref(rec);
        c->index++;
    }
    if (n > 0) {
        batch_start(c);
        run_text_batch(c, recs, prompts, n, (const char **)where);
        icl_progress_add(&c->prog, n);
    }
    if (!records && !icl_quiet) /* as icl-fmt says it */
        icl_warn("%s: empty input, no records", name);
    for (int i = 0; i < n; i++)
        json_decref(recs[i]);
    for (int i = 0; i < c->batch; i++) {
        icl_ids_free(&prompts[i]);
        free(where[i]);
    }
    free(prompts);
    free(recs);
    free(where);
    icl_lines_close(&r);
}

/* ---------------------------------------------------------------- --chat */

/* A conversation read from standard input, one user turn a line.  Each
 * turn renders the whole history as a "messages" record is rendered
 * (chat_prompt_ids: the same template, variables and tokenization), and
 * the keys and values of the ids the last turn fed stay in kc: only the
 * ids after the longest common prefix with them are prefilled. */
typedef struct {
    json_t *msgs;      /* the history: {role, content} objects */
    size_t n_keep;     /* leading messages never dropped (the --system one) */
    icl_kv_cache *kc;  /* the keys and values of ids */
    icl_ids ids;       /* the ids in kc (kc->len of them) */
    uint64_t turns;    /* turns generated (the RNG stream of the next) */
    int tty;           /* standard input is a terminal: prompt and banner */
} chat_session;

static const char chat_help[] =
    "one line is one message; a line ending in \\ goes on on the next line\n"
    "(the message then has a newline there); commands on a line of their own:\n"
    "  /reset  forget the conversation (the --system message stays)\n"
    "  /exit   end (also /quit, or end of input: Ctrl-D)\n"
    "  /help   this text\n";

/* Drop the oldest exchange after the kept messages: the first user
 * message and everything up to the next user message.  0 when there is
 * nothing to drop but the last message (the turn being answered). */
static int chat_drop_oldest(chat_session *cs)
{
    size_t n = json_array_size(cs->msgs), end = cs->n_keep + 1;
    while (end < n && strcmp(json_string_value(json_object_get(json_array_get(cs->msgs, end), "role")), "user"))
        end++;
    if (end >= n)
        return 0;
    for (size_t i = cs->n_keep; i < end; i++)
        json_array_remove(cs->msgs, cs->n_keep);
    return 1;
}

/* Answer the user message text (len bytes, line lineno): append it,
 * render and tokenize the history, generate the reply (streamed, then a
 * newline), append it.  When the history and a reply of max_new_tokens
 * (at most half the context) would pass the context, the oldest exchanges
 * are dropped first (said on stderr).  A message that cannot be sent (not
 * UTF-8, the template refuses it, longer than the context by itself) is
 * said on stderr and forgotten, the history kept as it was: returns -1.
 * A NUL byte is refused, as a record's \u0000 is. */
static int chat_turn(ctx_t *c, chat_session *cs, const char *text, size_t len, long lineno)
{
    char err[1024], where[64];
    snprintf(where, sizeof where, "<stdin>:%ld", lineno);
    if (memchr(text, 0, len)) {
        icl_warn("%s: the message holds a NUL byte: not sent", where);
        return -1;
    }
    json_t *content = json_stringn(text, len);
    if (!content) {
        icl_warn("%s: the message is not UTF-8 text: not sent", where);
        return -1;
    }
    json_t *msg = json_object();
    json_object_set_new(msg, "role", json_string("user"));
    json_object_set_new(msg, "content", content);
    json_array_append_new(cs->msgs, msg);
    json_t *rec = json_object(), *before = json_copy(cs->msgs); /* the history to go back to */
    json_object_set(rec, "messages", cs->msgs);
    icl_ids prompt = {0};
    long maxpos = c->m->cfg.max_position_embeddings;
    /* room for a whole reply (at most half the context): else the oldest
     * exchanges go, the system message staying */
    long room = c->g.max_new_tokens < maxpos / 2 ? c->g.max_new_tokens : maxpos / 2;
    int dropped = 0, rc = -1;
    for (;;) {
        prompt.n = 0;
        if (chat_prompt_ids(c, rec, &prompt, err, sizeof err) != 0) {
            icl_warn("%s: %s: not sent", where, err);
            goto forget;
        }
        if ((long)prompt.n + room - 1 <= maxpos || !chat_drop_oldest(cs))
            break;
        dropped++;
    }
    if ((long)prompt.n > maxpos) {
        icl_warn("%s: the message has %zu tokens with the template, more than the model's context "
                 "(max_position_embeddings %ld): not sent", where, prompt.n, maxpos);
        goto forget;
    }
    if (dropped)
        icl_warn("%s: the conversation would pass the model's context (max_position_embeddings %ld) with a reply "
                 "of %ld tokens: dropped the %d oldest exchange%s",
                 where, maxpos, room, dropped, dropped > 1 ? "s" : "");
    /* keep the cache's longest common prefix with the new ids */
    size_t keep = 0;
    while (keep < cs->ids.n && keep < prompt.n && cs->ids.v[keep] == prompt.v[keep])
        keep++;
    if (icl_kv_cache_truncate(cs->kc, (int)keep, err, sizeof err) != 0)
        icl_die("%s: %s (a bug)", where, err);
    cs->ids.n = keep;
    batch_start(c);
    icl_gen_seq seq = {.prompt = prompt.v, .n_prompt = prompt.n, .index = cs->turns++, .cache = cs->kc};
    icl_gen_text reply;
    const char *w = where;
    generate_texts(c, &seq, &reply, 1, &w);
    if (fputc('\n', stdout) == EOF)
        icl_die("write error:");
    flush_stdout();
    icl_progress_add(&c->prog, 1);
    /* the cache now holds the prompt and the reply's ids but the last; the
     * reply's keys and values came from decode steps, which on a quantized
     * GGUF run on int8 activations (and elsewhere round differently from a
     * prefill): keep only the prompt's, so that the next turn prefills the
     * reply as the record mode prefills the whole conversation and the
     * replies are the record mode's */
    if ((size_t)cs->kc->len + 1 != prompt.n + (seq.out.n ? seq.out.n : 1))
        icl_die("%s: the KV cache holds %d positions, not %zu (a bug)", where, cs->kc->len,
                prompt.n + (seq.out.n ? seq.out.n : 1) - 1);
    if (icl_kv_cache_truncate(cs->kc, (int)prompt.n, err, sizeof err) != 0)
        icl_die("%s: %s (a bug)", where, err);
    cs->ids.n = 0;
    for (size_t i = 0; i < prompt.n; i++)
        icl_ids_push(&cs->ids, prompt.v[i]);
    msg = json_object();
    json_object_set_new(msg, "role", json_string("assistant"));
    json_object_set_new(msg, "content", json_stringn(reply.text.data ? reply.text.data : "", reply.text.len));
    json_array_append_new(cs->msgs, msg);
    icl_gen_text_free(&reply);
    icl_ids_free(&seq.out);
    rc = 0;
    goto out;
forget: /* the history as it was */
    json_array_clear(cs->msgs);
    json_array_extend(cs->msgs, before);
    json_array_remove(cs->msgs, json_array_size(cs->msgs) - 1);
out:
    icl_ids_free(&prompt);
    json_decref(rec);
    json_decref(before);
    return rc;
}

/* a chat message's line at most: more could not be sent (no model's
 * context holds it; the template's output is capped at 64 MiB) */
#define CHAT_LINE_MAX ((size_t)16 << 20)

/* The chat loop (--chat): returns the exit status, 1 if a message was not
 * sent. */
static int chat_loop(ctx_t *c, const char *model, const char *system, int quiet)
{
    chat_session cs = {.msgs = json_array(), .kc = icl_kv_cache_new(c->m, 1), .tty = isatty(STDIN_FILENO)};
    if (system) {
        json_t *msg = json_object();
        json_t *content = json_string(system);
        if (!content)
            icl_usage_die("--system: the text is not UTF-8");
        json_object_set_new(msg, "role", json_string("system"));
        json_object_set_new(msg, "content", content);
        json_array_append_new(cs.msgs, msg);
        cs.n_keep = 1;
        /* a template that refuses a system message (one that raises on the
         * role) would refuse every turn: said once, before any */
        char err[1024], err2[64];
        icl_ids probe = {0};
        json_t *rec = json_pack("{s:[O,{s:s,s:s}]}", "messages", msg, "role", "user", "content", "Hi");
        json_t *rec2 = json_pack("{s:[{s:s,s:s}]}", "messages", "role", "user", "content", "Hi");
        if (chat_prompt_ids(c, rec, &probe, err, sizeof err) != 0 &&
            (probe.n = 0, chat_prompt_ids(c, rec2, &probe, err2, sizeof err2) == 0))
            icl_die("--system: the chat template refuses a system message (%s)", err);
        json_decref(rec);
        json_decref(rec2);
        icl_ids_free(&probe);
    }
    if (cs.tty && !quiet)
        fprintf(stderr, "%s: chatting with %s: one line a message (\\ at the end: more lines); /help for commands, "
                        "/exit or Ctrl-D to end\n",
                icl_progname, model);
    icl_lines rd;
    icl_lines_init(&rd, stdin, "<stdin>");
    rd.max = CHAT_LINE_MAX;
    int status = ICL_EXIT_OK, eof = 1;
    icl_buf msg = {0}; /* a message of several lines, so far (each continued line's \ made a newline) */
    long first = 0;    /* its first line */
    for (;;) {
        if (cs.tty)
            fputs(first ? "... " : "> ", stderr);
        int got = icl_lines_next(&rd);
        if (got == 0) {
            /* input ended inside a continued message: what was typed is the
             * message, less the newline of the backslash that promised more */
            if (first) {
                if (cs.tty) { /* past the "... " prompt, before the reply */
                    fputc('\n', stderr);
                    eof = 0;
                }
                if (msg.len && msg.data[msg.len - 1] == '\n')
                    msg.data[--msg.len] = '\0';
                if (msg.len > strspn(msg.data, " \t\n") && chat_turn(c, &cs, msg.data, msg.len, first) != 0)
                    status = ICL_EXIT_FAIL;
            }
            break;
        }
        long lineno = rd.lineno;
        if (got < 0 && rd.errnum == EFBIG)
            icl_die("<stdin>:%ld: a line longer than %zu MiB: not a chat message", lineno, CHAT_LINE_MAX >> 20);
        if (got < 0)
            icl_die("<stdin>: read error:");
        char *line = rd.line.data;
        size_t n = rd.line.len;
        while (n > 0 && line[n - 1] == '\r')
            line[--n] = '\0';
        /* a line ending in a backslash goes on on the next one (llama.cpp's
         * interactive mode has the same rule), the backslash a newline */
        int cont = n > 0 && line[n - 1] == '\\';
        if (cont || first) {
            if (!first)
                first = lineno;
            if (msg.len + n > CHAT_LINE_MAX)
                icl_die("<stdin>:%ld: a message longer than %zu MiB (continued from line %ld): not a chat message",
                        lineno, CHAT_LINE_MAX >> 20, first);
            icl_buf_append(&msg, line, cont ? n - 1 : n);
            if (cont) {
                icl_buf_putc(&msg, '\n');
                continue;
            }
            if (msg.len > strspn(msg.data, " \t\n") && chat_turn(c, &cs, msg.data, msg.len, first) != 0)
                status = ICL_EXIT_FAIL; /* (blanks alone: nothing to say, as a blank line) */
            icl_buf_clear(&msg);
            first = 0;
            continue;
        }
        /* a command: one word starting with '/', blanks around it ignored */
        size_t b = strspn(line, " \t"), e = (size_t)n;
        while (e > b && (line[e - 1] == ' ' || line[e - 1] == '\t'))
            e--;
        if (e == b)
            continue; /* a blank line: nothing to say */
        if (line[b] == '/' && !memchr(line + b, ' ', e - b) && !memchr(line + b, '\t', e - b) &&
            !memchr(line + b, 0, e - b)) {
            line[e] = '\0';
            const char *cmd = line + b;
            if (!strcmp(cmd, "/exit") || !strcmp(cmd, "/quit")) {
                eof = 0;
                break;
            }
            if (!strcmp(cmd, "/reset")) {
                while (json_array_size(cs.msgs) > cs.n_keep)
                    json_array_remove(cs.msgs, cs.n_keep);
            } else if (!strcmp(cmd, "/help")) {
                fputs(chat_help, stderr);
            } else {
                icl_warn("<stdin>:%ld: unknown command '%s' (/help lists them): not sent", lineno, cmd);
                status = ICL_EXIT_FAIL;
            }
            continue;
        }
        if (chat_turn(c, &cs, line, n, lineno) != 0)
            status = ICL_EXIT_FAIL;
    }
    if (cs.tty && eof)
        fputc('\n', stderr); /* past the last "> " */
    icl_buf_free(&msg);
    icl_lines_close(&rd);
    json_decref(cs.msgs);
    icl_kv_cache_free(cs.kc);
    icl_ids_free(&cs.ids);
    return status;
}

/* ---------------------------------------------------------------- --ids mode */

typedef struct {
    icl_ids ids;       /* the kept segments, concatenated (the prompt) */
    size_t *seg_end;   /* their ends */
    size_t nseg;
} ids_item;

static void run_ids_batch(ctx_t *c, ids_item *items, int n, const char *where)
{
    icl_gen_seq *seqs = icl_xcalloc((size_t)n, sizeof *seqs);
    for (int i = 0; i < n; i++) {
        seqs[i].prompt = items[i].ids.v;
        seqs[i].n_prompt = items[i].ids.n;
        seqs[i].index = c->index - (uint64_t)n + (uint64_t)i;
    }
    char err[512];
    if (icl_generate(c->m, &c->g, seqs, n, NULL, NULL, err, sizeof err) != 0)
        icl_die("%s: %s", where, err);
    icl_buf line = {0};
    for (int i = 0; i < n; i++) {
        icl_buf_clear(&line);
        size_t b0 = 0;
        for (size_t k = 0; k < items[i].nseg; k++) {
            icl_toklines_put_segment(&line, items[i].ids.v + b0, items[i].seg_end[k] - b0, k == 0);
            b0 = items[i].seg_end[k];
        }
        icl_toklines_put_segment(&line, seqs[i].out.v, seqs[i].out.n, 0);
        icl_buf_putc(&line, '\n');
        if (fwrite(line.data, 1, line.len, stdout) != line.len)
            icl_die("write error:");
        icl_ids_free(&seqs[i].out);
    }
    flush_stdout();
    icl_buf_free(&line);
    free(seqs);
}

static void gen_ids_file(ctx_t *c, const char *path)
{
    icl_toklines_reader r;
    icl_toklines_open(&r, path, c->m->cfg.vocab_size);
    r.check_tok = c->tok; /* the header before the ids (their bound is the model's) */
    const char *name = icl_display_name(path);
    ids_item *items = icl_xcalloc((size_t)c->batch, sizeof *items);
    int n = 0, st, checked = 0;
    char err[512], where[600] = "";
    while ((st = icl_toklines_next(&r, err, sizeof err)) != 0) {
        if (st < 0)
            icl_die("%s", err);
        /* every file's header is checked (the tokenizer, the model, the
         * headers of the files before); the output has the first one */
        if (r.hdr.present && !checked) {
            checked = 1;
            if (c->tok && icl_toklines_check(&r.hdr, c->tok, err, sizeof err) != 0)
                icl_die("%s:%ld: %s", name, r.header_line, err);
            if (r.hdr.vocab_size > c->m->cfg.vocab_size)
                icl_die("%s:%ld: the tokens' vocab_size %d is larger than the model's %d", name, r.header_line,
                    r.hdr.vocab_size, c->m->cfg.vocab_size);
            if (r.hdr.eos >= 0 && c->g.n_eos > 0 && !is_eos(&c->g, r.hdr.eos))
                icl_warn("%s:%ld: the token lines end responses with EOS id %d, which the model does not stop at "
                         "(its generation_config.json / config.json eos_token_id %d%s); re-encode with icl-tok "
                         "encode -t MODEL_DIR",
                         name, r.header_line, r.hdr.eos, c->g.eos[0], c->g.n_eos > 1 ? " ..." : "");
            if (c->have_hdr && (r.hdr.fingerprint != c->hdr.fingerprint || r.hdr.vocab_size != c->hdr.vocab_size))
                icl_die("%s:%ld: tokens made by another tokenizer than the earlier files' (fingerprint xxh3:%016llx, "
                    "vocab_size %d; before: xxh3:%016llx, %d)",
                    name, r.header_line, (unsigned long long)r.hdr.fingerprint, r.hdr.vocab_size,
                    (unsigned long long)c->hdr.fingerprint, c->hdr.vocab_size);
            if (!c->have_hdr && c->index == 0) /* nothing written yet: the output gets it */
                if (icl_toklines_write_header(stdout, &r.hdr) != 0)
                    icl_die("<stdout>: write error:");
            if (!c->have_hdr) {
                c->hdr = r.hdr;
                c->hdr.source = NULL;
                c->have_hdr = 1;
            }
        }
        /* a last target segment is the reference: drop it */
        size_t keep = r.nseg % 2 == 0 ? r.nseg - 1 : r.nseg;
        ids_item *it = &items[n];
        it->ids.n = 0;
        size_t end = keep ? r.seg_end[keep - 1] : 0;
        for (size_t i = 0; i < end; i++)
            icl_ids_push(&it->ids, r.ids[i]);
        it->seg_end = icl_xreallocarray(it->seg_end, keep ? keep : 1, sizeof *it->seg_end);
        memcpy(it->seg_end, r.seg_end, keep * sizeof *it->seg_end);
        it->nseg = keep;
        if (it->ids.n == 0)
            icl_die("%s:%ld: the prompt is empty (nothing before the last target segment)", name, r.lines.lineno);
        check_fits(c, name, r.lines.lineno, it->ids.n);
        if (n == 0)
            snprintf(where, sizeof where, "%s:%ld", name, r.lines.lineno);
        n++;
        c->index++;
        if (n == c->batch) {
            batch_start(c);
            run_ids_batch(c, items, n, where);
            icl_progress_add(&c->prog, n);
            n = 0;
        }
    }
    if (n > 0) {
        batch_start(c);
        run_ids_batch(c, items, n, where);
        icl_progress_add(&c->prog, n);
    }
    for (int i = 0; i < c->batch; i++) {
        icl_ids_free(&items[i].ids);
        free(items[i].seg_end);
    }
    free(items);
    icl_toklines_close(&r);
}

/* ---------------------------------------------------------------- main */

/* The model folder's tokenizer (needed for text; for --ids only when there
 * is one, to check ids and find the EOS). */
static void load_tokenizer(ctx_t *cx, const char *model_dir, int ids_mode, int parse_special, int quiet)
{
    char err[1024];
    size_t pl = strlen(model_dir) + 32;
    char *tokpath = icl_xmalloc(pl);
    char *joined = icl_path_join(model_dir, "tokenizer.json");
    snprintf(tokpath, pl, "%s", joined);
    free(joined);
    int gguf = icl_is_gguf_file(model_dir);
    if (gguf)
        snprintf(tokpath, pl, "%s", model_dir);
    if (gguf && ids_mode) {
        /* a GGUF's own tokenizer (tokenizer.ggml.*), when it has one: to
         * check the token lines' header against */
        int absent;
        if (!(cx->tok = icl_tok_load_gguf_opt(model_dir, &absent, err, sizeof err)) && !absent && !quiet)
            icl_warn("%s: cannot check the tokenizer of the token lines", err);
    } else if (!ids_mode || access(tokpath, F_OK) == 0 || (errno != ENOENT && errno != ENOTDIR)) { /* unreadable is not missing */
        cx->tok = icl_tok_load(model_dir, err, sizeof err);
        if (!cx->tok)
            icl_die("%s%s%s", strncmp(err, tokpath, strlen(tokpath)) ? tokpath : "", strncmp(err, tokpath, strlen(tokpath)) ? ": " : "", err); /* a read error names it already */
    }
    if (cx->tok) {
        if (icl_tok_vocab_size(cx->tok) > cx->m->cfg.vocab_size)
            icl_die("%s: the tokenizer has %d ids but the model's vocab_size is %d", tokpath,
                icl_tok_vocab_size(cx->tok), cx->m->cfg.vocab_size);
        cx->st = icl_tok_state_new(cx->tok);
        const icl_tok_specials *sp = icl_tok_get_specials(cx->tok);
        cx->to.bos = sp->add_bos && sp->bos >= 0;
        cx->to.eos = sp->eos >= 0;
        cx->to.parse_special = parse_special;
        if (cx->g.n_eos == 0 && sp->eos >= 0)
            cx->g.eos[cx->g.n_eos++] = sp->eos; /* neither config names one: the tokenizer's */
        /* a padded vocab_size (Qwen2.5): ids without a token are never generated */
        cx->g.n_sample_ids = icl_tok_vocab_size(cx->tok);
    }
    free(tokpath);
}

/* Any finite number: the sampler check (icl_sampler_check) says which are
 * meaningful, with the field's own words. */
/* The sampler's float parameters, range-checked here so that the message
 * names the option and its range (a value past FLT_MAX would become inf). */
static double num_arg(const char *opt, const char *s, double lo, double hi) { return icl_opt_double(opt, s, lo, hi); }

int main(int argc, char **argv)
{
    icl_init(argc, argv);
    const char *model_dir = NULL;
    long max_new = -1, threads = 0, batch = 8, top_k = -1, nret = 1;
    uint64_t seed = 0;
    double temp = 0, top_p = 0, min_p = 0, rep = 0;
    int has_temp = 0, has_top_p = 0, has_min_p = 0, has_rep = 0, greedy = 0, ids_mode = 0, parse_special = 0, stream = 0, c;
    char **stop = icl_xcalloc((size_t)argc + 1, sizeof *stop);
    int n_stop = 0, n_adapters = 0, progress = -1, bf16 = 0, dequantize = 0, quiet = 0, adaptive = 1;
    static const char *adapters[64];
    const char *chat_path = NULL, *system_msg = NULL, *out_key = NULL;
    int chat_mode = 0;
    char **tvars = icl_xcalloc((size_t)argc + 1, sizeof *tvars);
    int ntvars = 0;
    while ((c = icl_getopt(argc, argv, "m:n:s:b:iqhV", longopts)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case OPT_ADAPTER:
            if (n_adapters == 64)
                icl_usage_die("--adapter: at most 64");
            adapters[n_adapters++] = optarg;
            icl_opt_adapter_spec(optarg);
            break;
        case 'n': max_new = icl_opt_long("--max-new-tokens", optarg, 1, 1L << 30); break;
        case OPT_TEMP: temp = num_arg("--temperature", optarg, 0, FLT_MAX), has_temp = 1; break;
        case OPT_TOPK: top_k = icl_opt_long("--top-k", optarg, 0, 1L << 30); break;
        case OPT_TOPP: top_p = num_arg("--top-p", optarg, 0, 1), has_top_p = 1; break;
        case OPT_MINP: min_p = num_arg("--min-p", optarg, 0, 1), has_min_p = 1; break;
        case OPT_REP: rep = icl_opt_double_gt("--repetition-penalty", optarg, 0, FLT_MAX), has_rep = 1; break;
        case OPT_GREEDY: greedy = 1; break;
        case 's': seed = icl_opt_u64("--seed", optarg); break;
        case OPT_STOP:
            if (!*optarg)
                icl_usage_die("--stop: the string is empty");
            if (icl_utf8_valid(optarg, strlen(optarg)) != strlen(optarg)) /* completions are UTF-8: it could never match */
                icl_usage_die("--stop: the string is not UTF-8 text (completions are, so it would never match)");
            stop[n_stop++] = optarg;
            break;
        case 'b': batch = icl_opt_long("--batch-size", optarg, 1, 4096); break;
        case OPT_CHAT: chat_path = optarg; break;
        case OPT_TVAR: tvars[ntvars++] = optarg; break;
        case 'i': chat_mode = 1; break;
        case OPT_SYSTEM: system_msg = optarg; break;
        case OPT_IDS: ids_mode = 1; break;
        case OPT_PARSE_SPECIAL: parse_special = 1; break;
        case OPT_STREAM: stream = 1; break;
        case OPT_NRET: nret = icl_opt_long("--num-return-sequences", optarg, 1, 1L << 20); break;
        case OPT_OUTKEY: out_key = optarg; break; /* icl_getopt refuses an empty value */
        case OPT_OUTPUT:
            icl_usage_die("--output: icl-gen writes the records to standard output: redirect it (icl-gen ... > "
                          "FILE); --output-key KEY names the completion's key");
        case OPT_THREADS: threads = icl_opt_threads("--threads", optarg); break;
        case OPT_DEQUANTIZE: dequantize = 1; break;
        case OPT_DTYPE: bf16 = icl_opt_bf16("--dtype", optarg); break;
        case OPT_PROGRESS: progress = 1; break;
        case OPT_NO_PROGRESS: progress = 0; break;
        case 'q': progress = 0, quiet = icl_quiet = 1; break;
        case OPT_NO_ADAPT: adaptive = 0; break;
        case 'h': usage(stdout); free(stop); free(tvars); return ICL_EXIT_OK;
        case 'V': free(stop); free(tvars); icl_version_exit();
        default: icl_die("option %d not handled (a bug)", c); /* icl_getopt reported bad ones */
        }
    }
    if (!model_dir)
        icl_usage_die("no model: give -m MODEL_DIR");
    if (ids_mode && n_stop)
        icl_usage_die("--stop needs text: it does not apply to --ids");
    if (ids_mode && stream)
        icl_usage_die("--stream writes text: it does not apply to --ids");
    if (ids_mode && nret > 1)
        icl_usage_die("--num-return-sequences writes records: it does not apply to --ids");
    if ((ids_mode || chat_mode || stream) && out_key)
        icl_usage_die("--output-key names a key of the records: it does not apply to %s",
                      ids_mode ? "--ids" : chat_mode ? "--chat" : "--stream (text, not records)");
    if (out_key) { /* JSON keys are UTF-8 (jansson refuses others) */
        json_t *probe = json_object();
        int bad = json_object_set_new(probe, out_key, json_null()) != 0;
        json_decref(probe);
        if (bad)
            icl_usage_die("--output-key: the key is not UTF-8 text (JSON keys are)");
        /* the keys icl-gen reads: the completion there would be read back as the prompt */
        static const char *const reads[] = {"prompt", "messages", "conversations", "response", "chat"};
        for (size_t i = 0; i < sizeof reads / sizeof *reads; i++)
            if (!strcmp(out_key, reads[i]))
                icl_usage_die("--output-key %s: icl-gen reads \"%s\" from the records; choose another key", out_key,
                              out_key);
    }
    if (nret > 1 && out_key && !strcmp(out_key, "sample"))
        icl_usage_die("--output-key sample: --num-return-sequences numbers the samples in \"sample\"; choose another key");
    if (ids_mode && (chat_path || ntvars))
        icl_usage_die("--chat-template and --template-var render text: they do not apply to --ids");
    if (system_msg && !chat_mode)
        icl_usage_die("--system is the system message of --chat: give --chat too");
    if (chat_mode && ids_mode)
        icl_usage_die("--chat writes text: it does not apply to --ids");
    if (chat_mode && nret > 1)
        icl_usage_die("--chat gives one reply a message: --num-return-sequences does not apply");
    if (chat_mode && optind < argc)
        icl_usage_die("--chat reads the messages from standard input, one a line: no FILE ('%s')", argv[optind]);
    int sampling = has_temp || top_k >= 0 || has_top_p || has_min_p;
    if (greedy && sampling)
        icl_usage_die("--greedy does not mix with --temperature, --top-k, --top-p or --min-p");
    icl_set_threads((int)threads);

    ctx_t cx;
    memset(&cx, 0, sizeof cx);
    char err[1024];
    char *base = NULL;
    /* bf16 weights are made from float32 ones: a GGUF is dequantized then */
    cx.m = icl_lora_load(model_dir, adapters, n_adapters, dequantize || bf16 ? ICL_LOAD_DEQUANTIZE : 0, &base, err,
                         sizeof err);
    if (!cx.m)
        icl_die("%s", err);
    if (!quiet && (n_adapters || icl_is_gguf_file(base))) {
        char note[768];
        icl_lora_describe(cx.m, base, n_adapters + (strcmp(base, model_dir) != 0),
                          ICL_DESCRIBE_BATCHED | ICL_DESCRIBE_DECODE | (bf16 ? ICL_DESCRIBE_BF16 : 0), note, sizeof note);
        fprintf(stderr, "%s: %s\n", icl_progname, note);
    }
    if (bf16) {
        if (!icl_bf16_native())
            icl_warn("--dtype bf16: this CPU lacks AVX512-BF16; using the portable (slower) bf16 kernels");
        if (icl_model_set_bf16(cx.m, err, sizeof err))
            icl_die("%s", err);
    }
    const char *model_arg = model_dir; /* as given (the banner names it) */
    model_dir = base;
    if (icl_gen_config_load(&cx.g, icl_is_gguf_file(model_dir) ? NULL : model_dir, &cx.m->cfg, err, sizeof err) != 0)
        icl_die("%s/%s", model_dir, err);
    if (max_new > 0)
        cx.g.max_new_tokens = max_new;
    if (sampling)
        cx.g.do_sample = 1;
    if (greedy)
        cx.g.do_sample = 0;
    if (has_temp)
        cx.g.sp.temperature = (float)temp;
    if (top_k >= 0)
        cx.g.sp.top_k = (int)top_k;
    if (has_top_p)
        cx.g.sp.top_p = (float)top_p;
    if (has_min_p)
        cx.g.sp.min_p = (float)min_p;
    if (has_rep)
        cx.g.sp.repetition_penalty = (float)rep;
    if (icl_sampler_check(&cx.g.sp, err, sizeof err) != 0)
        icl_usage_die("%s", err);
    /* N greedy copies of the same completion are no samples (pass@k would
     * score one answer N times) */
    if (nret > 1 && (!cx.g.do_sample || icl_sampler_is_greedy(&cx.g.sp)))
        icl_usage_die("--num-return-sequences %ld needs sampling (decoding is greedy%s: every sequence would be the "
                      "same); give --temperature, --top-k, --top-p or --min-p",
                      nret, greedy ? " with --greedy" : sampling ? "" : " by the model's generation_config.json");
    cx.g.seed = seed;
    cx.stop = stop;
    cx.n_stop = n_stop;
    cx.batch = (int)batch;
    cx.nret = (int)nret;
    cx.out_key = out_key ? out_key : "completion";
    cx.streams = icl_xcalloc((size_t)batch, sizeof *cx.streams);
    cx.stream = !ids_mode && (stream || chat_mode || isatty(STDOUT_FILENO));
    if (cx.stream)
        cx.batch = 1; /* one completion at a time on the screen */

    load_tokenizer(&cx, model_dir, ids_mode, parse_special, quiet);
    if (!ids_mode) {
        /* the chat template: given, else the model folder's own if it has one */
        cx.chat = icl_chat_load(chat_path ? chat_path : model_dir, err, sizeof err);
        if (!cx.chat && chat_path)
            icl_die("%s", err);
        if (!cx.chat) { /* the model's own: none ("path: no ..."), or one that cannot be used: say why */
            snprintf(cx.chat_why, sizeof cx.chat_why, "%.1000s", err);
            if (!strstr(err, ": no ") && !quiet)
                icl_warn("the model's chat template cannot be used (\"messages\" records will be refused, and its "
                         "end-of-turn texts are not stop strings): %s", err);
        }
        for (int i = 0; cx.chat && i < ntvars; i++)
            if (icl_chat_set_var(cx.chat, tvars[i], err, sizeof err))
                icl_usage_die("%s", err);
        if (!cx.chat && ntvars)
            icl_usage_die("--template-var: %s", err);
        if (!cx.chat && chat_mode)
            icl_die("--chat needs a chat template (%s): give one with --chat-template MODEL (a model folder, "
                    "GGUF file, tokenizer_config.json or .jinja file)", cx.chat_why);
        /* stop also at the template's end-of-turn tokens */
        for (int k = -1; cx.chat && (k < 0 || icl_chat_end_markers[k]); k++) {
            const char *mk = k < 0 ? icl_chat_eos(cx.chat) : icl_chat_end_markers[k];
            if (!mk)
                continue;
            int32_t id = icl_tok_id(cx.tok, mk, strlen(mk));
            int dup = 0;
            for (int i = 0; i < cx.g.n_eos; i++)
                dup |= cx.g.eos[i] == id;
            if (id >= 0 && icl_tok_is_special(cx.tok, id) && !dup && cx.g.n_eos < 16)
                cx.g.eos[cx.g.n_eos++] = id;
        }
    }

    char *stdin_only[] = {"-"};
    char **files = optind < argc ? argv + optind : stdin_only;
    long total = chat_mode ? 0 : icl_count_lines(argv + optind, argc - optind);
    icl_progress_start(&cx.prog, cx.stream ? 0 : progress, total > 0 && !ids_mode ? total * nret : total,
                       chat_mode ? "turns" : ids_mode ? "lines" : "completions");
    const char *env_threads = getenv("ICL_NUM_THREADS");
    icl_adapt_start(&cx.adapt, adaptive && !threads && !(env_threads && *env_threads), 0, !quiet);
    cx.adapt.line_open = &cx.prog.drawn;
    int status = ICL_EXIT_OK;
    if (chat_mode)
        status = chat_loop(&cx, model_arg, system_msg, quiet);
    for (int i = 0, n = optind < argc ? argc - optind : 1; !chat_mode && i < n; i++)
        (ids_mode ? gen_ids_file : gen_text_file)(&cx, files[i]);
    icl_progress_end(&cx.prog);
    if (cx.st)
        icl_tok_state_free(cx.st);
    if (cx.tok)
        icl_tok_free(cx.tok);
    icl_model_free(cx.m);
    icl_chat_free(cx.chat);
    free(base);
    free(stop);
    free(cx.streams);
    free(tvars);
    return status;
}
