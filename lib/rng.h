/* rng.h - the seeded pseudo-random generator every icl program shares.
 *
 * xoshiro256** 1.0 (Blackman and Vigna, "Scrambled linear pseudorandom
 * number generators", 2018; reference code at prng.di.unimi.it), seeded by
 * running splitmix64 (Steele, Lea, Flood 2014) from a 64-bit seed, as the
 * authors recommend.  Period 2^256 - 1; passes BigCrush.  Not for secrets.
 *
 * The state is four plain words, so a program can save it (trainer_state.json)
 * and restore it to continue a run bit-for-bit.  The same seed gives the same
 * sequence on every machine (only integer arithmetic until the float helpers).
 */
#ifndef ICL_RNG_H
#define ICL_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} icl_rng;

/* Seed from one 64-bit number (any value, 0 included). */
void icl_rng_seed(icl_rng *r, uint64_t seed);
/* Next 64 random bits. */
uint64_t icl_rng_next(icl_rng *r);
/* Uniform integer in [0, n), unbiased (Lemire's multiply-and-reject,
 * "Fast random integer generation in an interval", 2019).  n must be > 0. */
uint64_t icl_rng_below(icl_rng *r, uint64_t n);
/* Uniform double in [0, 1) with 53 random bits. */
double icl_rng_uniform(icl_rng *r);
/* Standard normal N(0, 1) by the Box-Muller transform (one value per call,
 * two uniforms consumed). */
double icl_rng_normal(icl_rng *r);
/* Shuffle a[0..n) in place: Fisher-Yates (Durstenfeld), i from n-1 down to
 * 1 swapping a[i] with a[icl_rng_below(i + 1)]. */
void icl_rng_shuffle(icl_rng *r, size_t *a, size_t n);

/* splitmix64 step: advances *x and returns a well-mixed 64-bit value.
 * Also useful to derive independent seeds (per thread, per purpose). */
uint64_t icl_splitmix64(uint64_t *x);

#endif
