/* toklines.h - token lines (doc/DESIGN.md, stream 2): writer and reader.
 *
 * Format.  A token-line file is UTF-8 text, one example per line:
 *
 *   segments of decimal ids separated by single spaces, segments separated by
 *   single TABs; segments alternate context, target, context, target...
 *   starting with context.  "1 2 3\t4 5 2" = context 1 2 3, target 4 5 2.
 *   A line starting with TAB has an empty first context: all target.
 *   Segments may be empty ("1 2\t" has an empty target).  Ids are in
 *   [0, vocab_size).  No other characters: no leading zeros check, but no
 *   signs, no double spaces, no trailing space, no CR.
 *
 * Lines starting with '#' are comments, except the header, which icl-tok
 * encode writes as the first line:
 *
 *   #icl-tokens 1 fingerprint=xxh3:HHHHHHHHHHHHHHHH vocab_size=N bos=ID eos=ID pad=ID source=TEXT
 *
 *   "1"          format version.
 *   fingerprint  icl_tok_fingerprint (XXH3-64 over the tokenizer's vocabulary,
 *                merges, added tokens and components, independent of the
 *                file's formatting), 16 lower-case hex digits.
 *   vocab_size   1 + the largest id of the tokenizer (icl_tok_vocab_size).
 *   bos eos pad  special ids, -1 if the tokenizer has none; bos is the id
 *                put first on each line (-1: none, the tokenizer's
 *                add_bos_token false or icl-tok encode --no-bos; a chat
 *                template's BOS text is not counted), eos the id
 *                appended after each response (-1: none, icl-tok encode
 *                --no-eos), as icl_tok_get_specials gives it (the model
 *                folder's generation_config.json first): icl-train checks
 *                it is one the model stops generating at.
 *   source       the tokenizer's path as given to icl-tok; the rest of the
 *                line (may contain spaces; newlines are written as '?').
 * Fields are space-separated key=value pairs after the version; readers
 * ignore keys they do not know, so fields may be added before source.
 * A file without a header is accepted (ids are then checked against the
 * vocabulary size the caller gives); a second #icl-tokens line (files
 * concatenated) must carry the same fingerprint and vocab_size.
 */
#ifndef ICL_TOKLINES_H
#define ICL_TOKLINES_H

#include <stdint.h>
#include <stdio.h>

#include "record.h"
#include "tokenizer.h"

typedef struct {
    int present;            /* a #icl-tokens line was read */
    uint64_t fingerprint;
    int vocab_size;
    int32_t bos, eos, pad;
    char *source;           /* owned; NULL if absent */
} icl_toklines_header;

/* Fill h from a loaded tokenizer; source is copied.  Free with
 * icl_toklines_header_free. */
void icl_toklines_header_from_tok(icl_toklines_header *h, const icl_tokenizer *t,
                                  const char *source);
void icl_toklines_header_free(icl_toklines_header *h);
/* Write the header line (with '\n').  0, or -1 on a write error (errno set). */
int icl_toklines_write_header(FILE *f, const icl_toklines_header *h);
/* Parse a "#icl-tokens ..." line (len bytes, no '\n') into h.  Returns 0, or
 * -1 with "what is wrong" in err. */
int icl_toklines_parse_header(const char *line, size_t len, icl_toklines_header *h, char *err,
                              size_t errsz);

/* Append one segment's ids to line b, preceded by a TAB unless first. */
void icl_toklines_put_segment(icl_buf *b, const int32_t *ids, size_t n, int first);

/* Reader.  After icl_toklines_next returns 1, the example is:
 *   ids[0..n)          all ids of the line, segments concatenated;
 *   seg_end[0..nseg)   segment k is ids[seg_end[k-1] (0 for k=0) .. seg_end[k]);
 *                      it is a target segment when k is odd;
 *   target[0..n)       1 for ids in target segments, else 0.
 * All arrays are owned by the reader and valid until the next call. */
typedef struct {
    icl_lines lines;
    icl_toklines_header hdr;
    int vocab_size;         /* ids must be below this; 0: take the header's */
    long header_line;       /* line of the first header, 0 if none */
    long examples;          /* examples returned so far */
    int32_t *ids;
    uint8_t *target;
    size_t n, cap;
    size_t *seg_end;
    size_t nseg, segcap;
    char open_err[300];     /* why icl_toklines_open failed, else "" */
    /* set after icl_toklines_open (borrowed, may stay NULL): the first
     * header is checked against this tokenizer (icl_toklines_check) as soon
     * as it is read, before the ids after it, whose bound a header made by
     * another tokenizer would not explain; check_name (may be NULL) is
     * named in the error as " (tokenizer NAME)" */
    const icl_tokenizer *check_tok;
    const char *check_name;
} icl_toklines_reader;

/* Open path ("-" = stdin).  vocab_size > 0 bounds ids (the model's
 * vocabulary); 0 takes the header's when one comes (and then no bound until
 * it does).  A file that cannot be opened is reported by the first
 * icl_toklines_next ("PATH: reason"); close the reader either way. */
void icl_toklines_open(icl_toklines_reader *r, const char *path, int vocab_size);
/* Read the next example.  Returns 1, 0 at end of input, or -1 with
 * "FILE:LINE: what" in err (bad id, id >= vocab size, bad separator,
 * mismatched second header, a header check_tok refuses), "FILE: read error: ..." or the open error. */
int icl_toklines_next(icl_toklines_reader *r, char *err, size_t errsz);
void icl_toklines_close(icl_toklines_reader *r);

/* Check that a header matches a tokenizer (fingerprint and vocab size).
 * Returns 0, or -1 with a message in err. */
int icl_toklines_check(const icl_toklines_header *h, const icl_tokenizer *t, char *err,
                       size_t errsz);

#endif
