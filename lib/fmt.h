/* fmt.h - the engine of icl-fmt: rows and objects in, prompt/response
 * records out (doc/DESIGN.md, stream 1).
 *
 * Input: CSV, TSV (csvin.h), JSON Lines or a JSON array of objects
 * (jsonin.h), detected from the content unless given.  Each input record
 * is read through a field map (instruction, input, output, system,
 * messages, prompt, response -> the record's column/key, or a path such as
 * instances[0].output into nested JSON) and becomes one output line
 *     {"prompt": P, "response": R, <the other columns/keys in input order>}
 * where, by the first rule that applies:
 *   - with a chat template (opts.chat): "messages" (OpenAI or ShareGPT
 *     form; from CSV, a column holding the JSON array) or instruction/input/
 *     output (one user turn, instruction + "\n\n" + input, and the
 *     assistant's output) are rendered by it and split by
 *     icl_chat_segments: P and R are arrays (context before each assistant
 *     turn, the turn through its end marker) and "chat": true is added;
 *   - "messages" (OpenAI chat format, [{role, content}...], or ShareGPT
 *     [{from, value}...] as icl_chat_messages reads it; with the default map
 *     a "conversations" array or column stands for a missing "messages"): P and R are
 *     arrays of equal length, one entry per user/assistant exchange, each
 *     rendered by the template; a leading system message goes into the
 *     first prompt;
 *   - instruction and/or output present: P and R from the template;
 *   - prompt and response present: passed through as they are.
 * Columns used by the map (for a path, its first key) are not passed on.
 *
 * Records with an empty, whitespace-only (ASCII) or missing output are dropped and records with an
 * empty instruction are kept; both are warned about (first few with
 * FILE:LINE, then counts) through the on_warning callback.  Bad records (wrong
 * field count, invalid UTF-8, bad JSON, wrong types...) stop the conversion
 * with "FILE:LINE: what" returned as the error, or with skip_bad are
 * skipped, counted and warned about.  Nothing here prints or exits.
 *
 * --dedup keeps the first of records whose rendered prompt+response are
 * identical (XXH3 64-bit of the JSON text of both).  --shuffle and --split
 * hold the output records (serialised, in one arena) until the end and
 * then permute them with rng.h from the seed.
 */
#ifndef ICL_FMT_H
#define ICL_FMT_H

#include <stdint.h>
#include <stdio.h>

#include "template.h"

enum { ICL_FMT_AUTO, ICL_FMT_CSV, ICL_FMT_TSV, ICL_FMT_JSONL, ICL_FMT_JSON };

/* The fields a map can name, in this order. */
enum { ICL_F_INSTRUCTION, ICL_F_INPUT, ICL_F_OUTPUT, ICL_F_SYSTEM, ICL_F_MESSAGES, ICL_F_PROMPT,
       ICL_F_RESPONSE, ICL_F_N };
extern const char *const icl_fmt_field_names[ICL_F_N];

typedef struct {
    int format;                 /* ICL_FMT_*; AUTO detects per file */
    const icl_template *tpl;    /* not owned */
    const struct icl_chat *chat; /* not owned; when set, messages and instruction
                                 * records are rendered by this chat template
                                 * (chat.h) into {"prompt": [contexts],
                                 * "response": [targets], "chat": true} */
    const char *map[ICL_F_N];   /* source column/key per field; NULL = the field's own name */
    int dedup, shuffle, skip_bad;
    uint64_t seed;
    double split;               /* fraction to out, rest to split_out; 0 = no split */
    FILE *out, *split_out;      /* not owned */
    const char *out_name, *split_name; /* for write errors; NULL = "<stdout>" */
    int quiet;                  /* no warnings or summary */
    /* Warnings and the summary, one message per call (no newline, no
     * program name); NULL: none. */
    void (*on_warning)(void *ctx, const char *msg);
    void *warning_ctx;
    /* k-shot prompts (shots.h; icl-fmt --shots): with shots set, each
     * instruction/input/output record's prompt is preceded by the
     * demonstrations icl_shots_pick chooses (position: the record's 0-based
     * index among the input records read), and the record gains
     * "shots": [pool ids].  Plain template: the demonstrations and the
     * query are turns 0..k of one conversation rendered by tpl, all
     * concatenated into one prompt string (demonstrations' outputs
     * included); the response is the query's.  Chat template: the
     * conversation (system, then per demonstration a user and an assistant
     * message, then the query's) is split by icl_chat_segments and all
     * segments before the query's target are joined into the one context
     * entry: "prompt": [context], "response": [target], so no loss counts a
     * demonstration.  Records of other kinds (messages, prompt/response)
     * are bad records.  With max_prompt_tokens > 0 (needs budget_tok),
     * shots are dropped from the end of the list until the prompt text's
     * token count (icl_tok_encode, special tokens parsed, no BOS) is at
     * most max_prompt_tokens; the query is never cut (0 shots if even
     * that is over). */
    struct icl_shots *shots;    /* not owned */
    long max_prompt_tokens;
    const struct icl_tokenizer *budget_tok; /* not owned */
    /* Pool reading: with collect set, instruction/input/output records are
     * added to it (icl_shots_add, id: the "id" key or column) and nothing
     * is written; other record kinds are bad records. */
    struct icl_shots *collect;  /* not owned */
    int threads;                /* > 1: CSV/TSV parsing runs in a second thread
                                 * (same output); <= 1: one thread */
} icl_fmt_opts;

typedef struct {
    long read;          /* input records seen (bad ones included) */
    long written;       /* records written to out */
    long split_written; /* records written to split_out */
    long bad;           /* bad records skipped */
    long duplicates;    /* dropped by dedup */
    long empty_output;  /* dropped: empty, blank or missing output/response */
    long empty_instruction; /* kept, warned */
    long empty_turns;   /* kept: multi-turn records with some empty or blank answers among
                         * non-empty ones; those exchanges are context, not targets */
} icl_fmt_stats;

typedef struct icl_fmt icl_fmt;

/* Parse "KEY=COLUMN[,KEY=COLUMN...]" into map: each named entry is freed
 * and replaced by a malloc'd copy of COLUMN (so map must start as NULLs or
 * such copies; the caller frees them); others are left as they are.
 * Returns 0, or -1 with a message in err. */
int icl_fmt_parse_map(const char *spec, const char *map[ICL_F_N], char *err, size_t errsz);
/* Parse a format name ("csv", "tsv", "jsonl", "json"); -1 if unknown. */
int icl_fmt_parse_format(const char *name);
/* Guess the format of an input from its first bytes: '[' -> JSON, '{' ->
 * JSONL; a first line that is a JSON value (a string, a number, ...)
 * followed by a line that is a JSON object with a key -> JSONL (a bad
 * first record, not a one-column CSV); else TSV if the first line has more
 * TABs than commas outside quotes, else CSV.  Leading BOM and whitespace
 * are ignored. */
int icl_fmt_detect(const char *p, size_t n);

/* A converter writing to o->out (and o->split_out).  *o is copied, but what
 * it points to (template, map strings, FILEs) is not: it must outlive the
 * converter.  Free with icl_fmt_free (closes nothing). */
icl_fmt *icl_fmt_new(const icl_fmt_opts *o);
/* Convert one input ("-" = stdin).  0, or -1 with the message in err on a
 * bad record (unless skip_bad), unreadable input or a write error; the
 * records before the bad one are written (unless held for shuffle/split).
 * The converter may be used for another file after an error. */
int icl_fmt_file(icl_fmt *f, const char *path, char *err, size_t errsz);
/* Write held records, flush, warn the summary; fills *st if not NULL.
 * 0, or -1 with "OUTPUT: write error: ..." in err. */
int icl_fmt_finish(icl_fmt *f, icl_fmt_stats *st, char *err, size_t errsz);
void icl_fmt_free(icl_fmt *f);

#endif
