/* bpe_train.h - byte-level BPE training, as Hugging Face tokenizers'
 * BpeTrainer (models/bpe/trainer.rs) does it with
 *   Tokenizer(models.BPE()), pre_tokenizer ByteLevel(add_prefix_space=False),
 *   BpeTrainer(vocab_size, special_tokens, min_frequency,
 *              initial_alphabet=ByteLevel.alphabet()).
 *
 * Words: each text fed is split by GPT-2's regex (the ByteLevel
 * pre-tokenizer) and counted.  Ids: the special tokens first (in the order
 * given), then the 256 byte-level characters sorted by code point, then one
 * id per merge.  Each step merges the most frequent adjacent pair; ties go
 * to the smaller (left id, right id) pair; training stops at vocab_size
 * tokens or when the best count is below min_frequency.  Pair counts live in
 * an XXH3-keyed hash table and are updated incrementally from the words the
 * merge touched (never by recounting the corpus), with a lazy max-heap.
 * Words are linked lists of symbols and every pair keeps the positions where
 * it was formed, so a merge visits its occurrences only: time grows about
 * linearly with a word's length (HF's Word::merge, which this reproduces
 * merge for merge, rescans and shifts the whole word: quadratic).  Memory:
 * about 45 bytes per byte of distinct words.
 */
#ifndef ICL_BPE_TRAIN_H
#define ICL_BPE_TRAIN_H

#include <stddef.h>

#include "util.h"

typedef struct icl_bpe_trainer icl_bpe_trainer;

/* specials: nspecial strings, copied; a repeated one is kept once (at its
 * first position), as BpeTrainer does.  Returns the trainer (free with
 * icl_bpe_trainer_free); dies only when out of memory. */
icl_bpe_trainer *icl_bpe_trainer_new(int vocab_size, long min_frequency, const char *const *specials,
                                     int nspecial);
/* Feed one sequence (HF's train_from_files feeds each line with its '\n').
 * s must be valid UTF-8.  0, or -1 with a message in err (the regex engine
 * gave up, more than 4 GB of distinct words); the trainer stays usable. */
int icl_bpe_trainer_feed(icl_bpe_trainer *tr, const char *s, size_t n, char *err, size_t errsz);
/* Feed a text split into lines, each keeping its line ending; as above. */
int icl_bpe_trainer_feed_lines(icl_bpe_trainer *tr, const char *s, size_t n, char *err, size_t errsz);
/* Train and write the tokenizer.json text into out.  Returns the number of
 * merges (0 when no pair is frequent enough), or -1 with "no training text"
 * in err and out untouched when no word was fed (nothing, or only empty
 * strings: a tokenizer of the byte alphabet alone would be written
 * otherwise, and vocab_size would mean nothing). */
long icl_bpe_trainer_finish(icl_bpe_trainer *tr, icl_buf *out, char *err, size_t errsz);
/* Entries in the vocabulary that finish wrote (specials + 256 byte
 * characters, less specials equal to one, + merges); 0 before finish.
 * Below vocab_size when the corpus runs out of pairs. */
size_t icl_bpe_trainer_vocab(const icl_bpe_trainer *tr);
void icl_bpe_trainer_free(icl_bpe_trainer *tr);

#endif
