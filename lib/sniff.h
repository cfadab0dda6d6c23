/* sniff.h - what a file given in the wrong place looks like.
 *
 * A new user gives a tokenizer.json where a model is wanted, a CSV where
 * records are, token lines where a tokenizer is.  The error then says what
 * the file seems to be and what to give instead (a "wrong-file hint"):
 * these functions do the guessing, from the first bytes, so that every
 * program guesses alike; each caller words its own advice.  A guess is
 * never a check: the real parse still decides what is accepted.
 */
#ifndef ICL_SNIFF_H
#define ICL_SNIFF_H

#include <stddef.h>

typedef enum {
    ICL_KIND_UNKNOWN = 0,       /* nothing recognised (binary, unreadable, missing) */
    ICL_KIND_EMPTY,             /* no bytes, or white space only */
    ICL_KIND_FOLDER,            /* a folder (icl_sniff_file only) */
    ICL_KIND_GGUF,              /* "GGUF" magic */
    ICL_KIND_SAFETENSORS,       /* 8-byte little-endian header length, then '{' */
    ICL_KIND_TOKENIZER_JSON,    /* a JSON object with "model" and "added_tokens" or "vocab" */
    ICL_KIND_MODEL_CONFIG,      /* config.json: "model_type" or "architectures" */
    ICL_KIND_TOKENIZER_CONFIG,  /* tokenizer_config.json: "tokenizer_class", "chat_template"... */
    ICL_KIND_ADAPTER_CONFIG,    /* PEFT adapter_config.json: "peft_type" or "lora_alpha" */
    ICL_KIND_JSON,              /* another JSON document: an array (alpaca_data.json), an object */
    ICL_KIND_RECORDS,           /* JSON Lines: the first line is a whole JSON object */
    ICL_KIND_TOKEN_LINES,       /* a "#icl-tokens" header, or lines of ids and tabs only */
    ICL_KIND_TEXT,              /* anything else that is text: CSV, TSV, prose */
} icl_file_kind;

/* The kind of the n bytes at p, the start of a file (64 KiB are plenty:
 * the JSON kinds are told apart by the keys seen in them). */
icl_file_kind icl_sniff_mem(const char *p, size_t n);

/* The kind of the file at path, from its first 64 KiB; ICL_KIND_FOLDER for
 * a folder, ICL_KIND_UNKNOWN when it cannot be opened or is not a regular
 * file (a FIFO is not read: nothing blocks).  errno is kept. */
icl_file_kind icl_sniff_file(const char *path);

/* The kind of one line, the first of a stream that cannot be read again
 * (standard input): RECORDS for a line that starts a JSON object ('{',
 * then a key or '}'; whole or not), JSON for '[', TOKEN_LINES, EMPTY or
 * TEXT (a template's "{instruction}" too); the file kinds are not told from
 * one line. */
icl_file_kind icl_sniff_line(const char *line, size_t n);

/* A phrase for messages: "token lines (icl-tok encode's output)", "CSV,
 * TSV or plain text", "a model's config.json"...; a static string. */
const char *icl_file_kind_name(icl_file_kind k);

#endif
