/* tokgguf.h - the tokenizer of a GGUF file (its tokenizer.ggml.* metadata)
 * as an icl tokenizer, as a Hugging Face tokenizer.json +
 * tokenizer_config.json, and back.
 *
 * Sources: ggml's docs/gguf.md (key names), llama.cpp's llama-vocab.cpp
 * (how llama.cpp reads them: token types, pre-tokenizer regexes per
 * tokenizer.ggml.pre, ignore_merges, the SentencePiece-style "llama" model).
 *
 * The GGUF metadata is turned into a tokenizer.json that Hugging Face
 * tokenizers would run the same way llama.cpp does, then loaded by
 * tokenizer.c:
 *   model "gpt2"  byte-level BPE: vocab = tokenizer.ggml.tokens by id, merges =
 *                 tokenizer.ggml.merges ("a b", rank = index); pre_tokenizer =
 *                 Sequence of Split(Regex, Isolated) with llama.cpp's regexes
 *                 for tokenizer.ggml.pre, then ByteLevel(use_regex false);
 *                 decoder ByteLevel; ignore_merges for llama-bpe (llama3).
 *   model "llama" SentencePiece BPE by scores: normalizer Prepend("▁") (when
 *                 add_space_prefix, the default) + Replace(" ", "▁"); BPE with
 *                 byte_fallback and fuse_unk, merges made from the vocabulary:
 *                 every split of a token into two tokens, ordered by the score
 *                 of the whole (highest first; equal scores by id), which is
 *                 what llama.cpp's highest-score-first bigram merge does;
 *                 decoder Replace ▁->space, ByteFallback, Fuse, Strip(1 space).
 * Token types (tokenizer.ggml.token_type, llama.cpp's llama_token_type):
 * 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.  Control
 * and unknown tokens become special added tokens (matched in text only with
 * ICL_TOK_PARSE_SPECIAL), user-defined ones non-special added tokens (always
 * matched), as llama.cpp's tokenizer_st_partition does.
 */
#ifndef ICL_TOKGGUF_H
#define ICL_TOKGGUF_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

/* A byte string (GGUF strings are length + bytes; s is also NUL-terminated). */
typedef struct {
    char *s;
    size_t n;
} icl_tok_str;

/* The tokenizer.ggml.* metadata of a GGUF file, owned copies (free with
 * icl_tok_gguf_free).  Absent values: NULL pointers, ids -1, flags -1.
 * Filled from a GGUF file by the GGUF reader, or from a Hugging Face folder
 * by icl_tok_gguf_from_hf; written back by a GGUF writer through
 * icl_tok_gguf_kvs. */
typedef struct {
    char *model;                 /* tokenizer.ggml.model: "gpt2" or "llama" */
    char *pre;                   /* tokenizer.ggml.pre (NULL: "default") */
    icl_tok_str *tokens;         /* tokenizer.ggml.tokens[n_tokens], index = id */
    size_t n_tokens;
    float *scores;               /* tokenizer.ggml.scores[n_scores] */
    size_t n_scores;
    int32_t *types;              /* tokenizer.ggml.token_type[n_types] */
    size_t n_types;
    icl_tok_str *merges;         /* tokenizer.ggml.merges[n_merges], "a b" */
    size_t n_merges;
    /* tokenizer.ggml.{bos,eos,eot,unknown,padding}_token_id */
    int64_t bos, eos, eot, unk, pad;
    /* tokenizer.ggml.add_bos_token, add_eos_token, add_space_prefix */
    int add_bos, add_eos, add_space_prefix;
    char *chat_template;         /* tokenizer.chat_template */
} icl_tok_gguf;

/* An empty icl_tok_gguf (all absent). */
void icl_tok_gguf_init(icl_tok_gguf *m);
void icl_tok_gguf_free(icl_tok_gguf *m);

/* Check the metadata before use: model known; pre-tokenizer known (list in
 * the error); tokens non-empty, valid UTF-8, no NUL, no two equal (llama.cpp
 * refuses those too); scores/types, when present, exactly one per token;
 * types 1..6; special ids in 0..n_tokens-1; "llama" needs scores.  Merges
 * naming unknown tokens are found when the tokenizer is built.  Returns 0,
 * or -1 with the first problem (naming the key and index) in err. */
int icl_tok_gguf_check(const icl_tok_gguf *m, char *err, size_t errsz);

/* The tokenizer of m (checked first).  NULL with the reason in err.
 * Specials come from the ids (bos, eos, eot, pad, unk) and add_bos/add_eos
 * (defaults as llama.cpp: "llama" adds BOS; "gpt2" adds BOS only for
 * llama-bpe); the chat template is kept (icl_tok_chat_template). */
icl_tokenizer *icl_tok_from_gguf(const icl_tok_gguf *m, char *err, size_t errsz);

/* The Hugging Face files for m: tokenizer.json and tokenizer_config.json
 * (bos/eos/pad/unk tokens, add_bos_token/add_eos_token, chat_template,
 * added_tokens_decoder) as JSON text, malloc'd, NUL-terminated; either out
 * pointer may be NULL.  Returns 0 or -1 with err. */
int icl_tok_gguf_to_hf_json(const icl_tok_gguf *m, char **tokenizer_json, char **tokenizer_config,
                            char *err, size_t errsz);
/* Write them into the existing directory dir (atomically, each file). */
int icl_tok_gguf_write_hf(const icl_tok_gguf *m, const char *dir, char *err, size_t errsz);

/* The reverse: GGUF tokenizer metadata from a Hugging Face tokenizer (path:
 * a tokenizer.json or a folder holding one, with tokenizer_config.json beside
 * it).  Byte-level BPE becomes "gpt2", its pre-tokenizer named by trying each
 * known tokenizer.ggml.pre on a check text (as llama.cpp's converter
 * identifies pre-tokenizers by their output); BPE with byte_fallback and ▁
 * becomes "llama" with scores -(rank of the merge making the token), 0 for
 * tokens no merge makes.  Added tokens become control (special) or
 * user-defined (not special) tokens.  Ids must be 0..n-1 without holes.
 * A byte-level tokenizer's normalizer is dropped (GGUF has none for "gpt2";
 * llama.cpp's converter drops Qwen's NFC too): text already in that normal
 * form tokenizes the same.  A "llama" tokenizer is checked to give the same
 * ids on the check text, else refused.  In llama.cpp, merges whose results
 * score the same compete by position; here by their order in the list, as
 * in transformers: the two can differ only when equal scores compete.
 * On success *out (initialised here) owns everything; 0 or -1 with err. */
int icl_tok_gguf_from_hf(const char *path, icl_tok_gguf *out, char *err, size_t errsz);

/* Read the tokenizer.ggml.* keys and tokenizer.chat_template of an open
 * GGUF file into *out (initialised here; free with icl_tok_gguf_free).
 * Wrong value types are errors naming the key; ids may be any integer type;
 * scores FLOAT32 (or integers, as llama.cpp accepts); token_type any
 * integer type.  Not checked beyond types: icl_tok_gguf_check does that. */
struct icl_gguf;
int icl_tok_gguf_read(const struct icl_gguf *g, icl_tok_gguf *out, char *err, size_t errsz);
/* The tokenizer of a GGUF file (path), or NULL with err naming the file.
 * icl_tok_load(path) calls it for any file that starts with "GGUF". */
icl_tokenizer *icl_tok_load_gguf(const char *path, char *err, size_t errsz);
/* As icl_tok_load_gguf, for a GGUF model file that may carry no tokenizer:
 * then NULL with *absent = 1 and err set to "PATH: no tokenizer (...)";
 * any other failure (unreadable file, a tokenizer icl cannot read) is NULL
 * with *absent = 0 and err naming the file. */
icl_tokenizer *icl_tok_load_gguf_opt(const char *path, int *absent, char *err, size_t errsz);
/* The same from a GGUF file already open (g is only read; the tokenizer
 * owns copies, so g may be closed afterwards).  err names the file. */
icl_tokenizer *icl_tok_from_gguf_file(const struct icl_gguf *g, char *err, size_t errsz);
/* Set m's keys (as icl_tok_gguf_read reads them) on a GGUF writer, in the
 * order llama.cpp's converter writes them; those m leaves absent are
 * removed from w (they may have been copied from another file); m is
 * checked first.  0 or -1 with err. */
struct icl_gguf_writer;
int icl_tok_gguf_set_kvs(const icl_tok_gguf *m, struct icl_gguf_writer *w, char *err, size_t errsz);

/* Known values of tokenizer.ggml.pre for model "gpt2" (NULL-terminated). */
extern const char *const icl_tok_gguf_pre_names[];

/* An icl_gguf_tok_writer (gguf_model.h) for icl_gguf_save_model: the
 * tokenizer of the folder src_dir (its tokenizer.json and
 * tokenizer_config.json) as tokenizer.ggml.* keys of w.  A NULL src_dir, or
 * a folder without tokenizer.json, writes nothing and returns 0; a tokenizer
 * GGUF cannot express is -1 with err naming the file. */
struct icl_gguf_writer;
int icl_tok_gguf_folder_writer(struct icl_gguf_writer *w, const char *src_dir, char *err, size_t errsz);

#endif
