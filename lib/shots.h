/* shots.h - k-shot demonstrations for in-context learning (Brown et al.
 * 2020): a pool of solved examples and the choice of K of them for each
 * query record (icl-fmt --shots; see icl-fmt(1)).
 *
 * The pool holds instruction/input/output fields (copied) with an id per
 * record: the record's own "id" (JSON key or CSV column) when it has one,
 * else its 0-based index among the pool input's records.  A record whose
 * key (icl_shots_key) repeats an earlier pool record's is not added.
 *
 * Selection for a query record (icl_shots_pick) never returns a pool record
 * with the query's key (the record itself or a duplicate of it):
 *   fixed    the first K pool records;
 *   random   K drawn without replacement by rng.h seeded with (seed,
 *            position of the query), so the same seed gives the same shots;
 *   similar  the K with the highest Okapi BM25 score of the pool record's
 *            instruction + " " + input against the query's, best first
 *            (ties: pool order), exactly as rank_bm25 0.2.2's BM25Okapi
 *            (k1 = 1.5, b = 0.75, epsilon = 0.25): idf = log(N - n + 0.5)
 *            - log(n + 0.5), a negative idf replaced by epsilon times the
 *            mean idf of all terms; score = sum over query tokens (repeats
 *            count) of idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl /
 *            avgdl)).
 *            Tokens: the text lower-cased (Python's str.lower) and split
 *            by icl_bleu_tokenize with the tokenization icl_script_choose
 *            picks from the whole pool (13a, or zh / char for CJK and Thai
 *            text); a term is its XXH3 hash (64-bit collisions ignored).
 * With balance (--balance-labels) the pool is grouped by label (the output,
 * normalised as the key is) and the K shots are taken one per label in
 * turn, in a label order shuffled by the same rng, each label giving its
 * next record in the selection's order (labels with no record left are
 * passed over); the chosen shots are then shuffled by that rng, so the
 * labels are covered as evenly as K allows in a seeded order.
 */
#ifndef ICL_SHOTS_H
#define ICL_SHOTS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "template.h"
#include "util.h"

enum { ICL_SHOTS_RANDOM, ICL_SHOTS_SIMILAR, ICL_SHOTS_FIXED };
extern const char *const icl_shots_selection_names[]; /* "random", "similar", "fixed", NULL */

typedef struct icl_shots icl_shots;

/* A pool for k shots per query (k >= 0), selection ICL_SHOTS_*, seed of
 * random choice and label order, balance: 1 for --balance-labels.  Free
 * with icl_shots_free. */
icl_shots *icl_shots_new(int k, int selection, uint64_t seed, int balance);
void icl_shots_free(icl_shots *s);

/* The key of a record for leakage checks: XXH3-64 of the normalised
 * instruction, a NUL byte and the normalised input, where normalised is
 * Python's str.lower of the text with runs of ASCII white space made one space
 * and leading and trailing white space removed. */
uint64_t icl_shots_key(const icl_tfields *f);

/* Add a pool record (fields copied; the system text is not kept).  id: the
 * record's "id" value (any JSON; copied), or NULL to use index.  Returns 1
 * if added, 0 if its key repeats an earlier pool record's.  Must come
 * before icl_shots_index. */
int icl_shots_add(icl_shots *s, const icl_tfields *f, const json_t *id, long index);
/* Build the BM25 index and label groups after the last add. */
void icl_shots_index(icl_shots *s);
/* The k it was made with. */
size_t icl_shots_k(const icl_shots *s);
/* Pool records added. */
size_t icl_shots_size(const icl_shots *s);

/* Choose the shots for a query at position pos (0-based index of the
 * record in the input): writes up to k pool indices to out (room for k)
 * and returns how many (fewer than k only when the pool has fewer records
 * other than the query's duplicates). */
size_t icl_shots_pick(icl_shots *s, const icl_tfields *query, uint64_t pos, size_t *out);
/* Fields of pool record i (instruction, input, output; system empty). */
const icl_tfields *icl_shots_fields(const icl_shots *s, size_t i);
/* Append the JSON text of pool record i's id to out. */
void icl_shots_put_id(const icl_shots *s, size_t i, icl_buf *out);
/* The BM25 score of pool record i for the query (for tests; the index must
 * be built). */
double icl_shots_bm25(icl_shots *s, const icl_tfields *query, size_t i);

#endif
