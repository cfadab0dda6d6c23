/* tok_internal.h - data structures shared by tokenizer.c, bpe.c, pretok.c,
 * bpe_train.c.  Not a public interface: use tokenizer.h. */
#ifndef ICL_TOK_INTERNAL_H
#define ICL_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "hashtab.h"
#include "tokenizer.h"
#include "utf8.h"

/* ---- normalizers, pre-tokenizers, decoders ---- */

enum norm_type { N_NFC, N_NFKC, N_NFD, N_NFKD, N_PREPEND, N_REPLACE, N_LOWER, N_STRIP, N_SEQ };
typedef struct tok_norm {
    enum norm_type type;
    char *s1, *s2;         /* Prepend: s1; Replace: s1 pattern (String), s2 content */
    pcre2_code *re;        /* Replace with a Regex pattern */
    int left, right;       /* Strip */
    struct tok_norm *sub;  /* Sequence */
    int nsub;
} tok_norm;

enum pre_type { P_BYTELEVEL, P_SPLIT, P_DIGITS, P_METASPACE, P_SEQ };
enum split_behavior { B_REMOVED, B_ISOLATED, B_PREV, B_NEXT, B_CONTIGUOUS };
typedef struct tok_pre {
    enum pre_type type;
    int add_prefix_space, use_regex; /* ByteLevel */
    pcre2_code *re;                  /* Split (String patterns compiled literal); ByteLevel: GPT-2 regex */
    enum split_behavior behavior;
    int invert;
    int individual_digits;           /* Digits */
    char rep[8];                     /* Metaspace replacement (UTF-8) */
    int rep_len;
    int prepend;                     /* Metaspace: 0 never, 1 always, 2 first */
    int split;                       /* Metaspace */
    struct tok_pre *sub;
    int nsub;
} tok_pre;

enum dec_type { D_BYTELEVEL, D_METASPACE, D_BYTEFALLBACK, D_FUSE, D_STRIP, D_REPLACE, D_SEQ };
typedef struct tok_dec {
    enum dec_type type;
    char *s1, *s2;        /* Replace: pattern (String), content; Strip: s1 content char */
    pcre2_code *re;
    int start, stop;      /* Strip */
    char rep[8];          /* Metaspace */
    int rep_len, prepend;
    struct tok_dec *sub;
    int nsub;
} tok_dec;

typedef struct {
    char *content;      /* as in the file */
    char *match;        /* what is matched: content, normalized if `normalized` */
    size_t match_len;
    int32_t id;
    int special, lstrip, rstrip, single_word, normalized;
} tok_added;

/* Trie over added-token bytes: node<<8|byte -> child in a u64map. */
typedef struct {
    icl_u64map edges;     /* key (node<<8|byte) -> a = child node */
    int32_t *term;        /* node -> added index or -1 */
    int32_t nnodes, cap;
    uint8_t first[256];   /* bytes that can start a token */
    int any;
} tok_trie;

struct icl_tokenizer {
    /* pieces: id -> string (model vocab and added tokens) */
    char *arena;
    size_t arena_len;
    uint32_t *poff, *plen;
    uint8_t *has;         /* id assigned */
    int32_t nids;         /* vocab size */
    icl_strmap vocab;     /* model vocab string -> id */
    icl_u64map merges;    /* (a<<32|b) -> a=rank, b=new id */
    icl_u64map pairs;     /* adjacent units (bytes if byte_level, else code points)
                             found inside some vocab token: key u1<<32|u2 */
    size_t max_piece_len; /* longest vocab token, bytes */
    int32_t unk_id;
    int fuse_unk, byte_fallback, ignore_merges;
    int unknown_is_error;          /* a character with no token, no byte-fallback token and no unk_id
                                      fails the encode (icl_bpe_dropped) instead of being dropped as
                                      tokenizers drops it: GGUF tokenizers (icl_tok_from_gguf), as
                                      llama.cpp never drops one */
    int32_t byte_fallback_id[256]; /* <0xNN> ids or -1 */
    /* byte level */
    int byte_level;                /* pre-tokenizer ends with ByteLevel: words are raw bytes mapped by byte_sym */
    int32_t byte_sym[256];         /* id of the byte-level char of each byte, -1 if absent */
    int32_t ascii_sym[128];        /* id of each ASCII char as a one-char token, -1 */
    tok_norm *norm;
    tok_pre *pre;
    tok_dec *dec;
    int dec_bytefallback;          /* a ByteFallback in dec (icl_tok_stream_put holds runs of byte tokens) */
    int dec_whole;                 /* a decoder that works on the text a ByteLevel or Fuse joined (not a
                                      Fuse or a start Strip): the stream holds every id until the flush
                                      (dec_kinds) */
    tok_added *added;
    int nadded;
    tok_trie trie_raw, trie_norm;
    int8_t *is_special;            /* per id */
    int32_t *added_of_id;          /* per id: index in added or -1 */
    icl_tok_specials sp;
    int bos_named, eos_named;      /* tokenizer_config.json has the key (maybe null) */
    uint64_t fingerprint;
    int has_pcre;                  /* any regex in use */
    char *chat_template;           /* tokenizer_config.json / tokenizer.chat_template, or NULL */
    char *src;                     /* the tokenizer.json icl_tok_load read (errors name it), or NULL */
};

/* Ids are below this (tokenizer.json vocab and GGUF token counts). */
#define ICL_TOK_MAX_IDS (1L << 24)
/* Load from a parsed tokenizer.json (root: borrowed).  cfg (may be NULL): a
 * tokenizer_config.json object applied after the files beside it in dir
 * (may be NULL).  Errors as icl_tok_load_mem. */
struct json_t;
icl_tokenizer *icl_tok_load_json(struct json_t *root, struct json_t *cfg, const char *dir,
                                 char *err, size_t errsz);
/* byte <-> GPT-2 byte-level char (code point) */
extern uint32_t icl_byte_to_cp[256];
int icl_cp_to_byte(uint32_t cp); /* -1 if not a byte-level char */
void icl_bytelevel_init(void);

/* A list of pieces: [off, off+len) into a byte buffer. */
typedef struct {
    size_t *off, *len;
    int *cont;   /* 1: the piece starts at offset 0 of the input */
    size_t n, cap;
} piece_list;
void icl_pl_push(piece_list *p, size_t off, size_t len, int cont);
void icl_pl_free(piece_list *p);

/* pretok.c: compile helpers and pipeline steps used by tokenizer.c */
pcre2_code *icl_re_compile(const char *pat, size_t len, int literal, char *err, size_t errsz);
/* Normalize s[0..n) into out (replaces out's content).  cont: no Prepend.
 * 0, or -1 with a message in err (a regex that gave up, as at PCRE2's match
 * limit; a normalization utf8proc refused); out then holds partial text. */
int icl_normalize(const tok_norm *nm, pcre2_match_data *md, const char *s, size_t n, int cont,
                  icl_buf *out, char *err, size_t errsz);
/* Pre-tokenize buf[off..off+len) (one segment).  Pieces are appended to out,
 * their bytes to `store` (offsets into store). */
/* first: the segment starts at offset 0 of the input; cont_mode: the input
 * continues a text (ICL_TOK_CONTINUATION).  Frees: *_free free the pointer. */
/* 0, or -1 with a message in err as icl_normalize. */
int icl_pretokenize(const tok_pre *p, pcre2_match_data *md, const char *s, size_t n, int first,
                    int cont_mode, icl_buf *store, piece_list *out, char *err, size_t errsz);
extern const char icl_gpt2_pattern[]; /* GPT-2 split regex */
void icl_norm_free(tok_norm *n);
void icl_pre_free(tok_pre *p);
void icl_dec_free(tok_dec *d);

/* bpe.c */
typedef struct bpe_cache bpe_cache;
bpe_cache *icl_bpe_cache_new(void);
void icl_bpe_cache_free(bpe_cache *c);
/* BPE one word (raw bytes if t->byte_level, else the chars themselves). */
void icl_bpe_word(const icl_tokenizer *t, bpe_cache *c, const char *w, size_t n, icl_ids *out);
/* Characters icl_bpe_word dropped since the last call (no token, no
 * byte-fallback token, no unk_id): their count, and the first one's bytes in
 * ch[0..*len) (a raw byte for byte-level words); resets the count. */
size_t icl_bpe_dropped(bpe_cache *c, char ch[4], size_t *len);

struct icl_tok_state {
    bpe_cache *cache;
    pcre2_match_data *md;
    icl_buf norm, store, tmp;
    piece_list pieces;
    long special_text;       /* special tokens left as text (no PARSE_SPECIAL) */
    int32_t special_text_id; /* the last of them */
    long dropped;            /* characters dropped (icl_tok_state_dropped) */
    uint32_t dropped_cp;     /* the first of them */
};

#endif
