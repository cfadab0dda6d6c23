/* rng.h - a small, fast, seedable random number generator with streams.
 *
 * Generator: xoshiro256** 1.0 (Blackman and Vigna, "Scrambled linear
 * pseudorandom number generators", 2018; reference code at prng.di.unimi.it),
 * period 2^256 - 1.  Its 256-bit state is filled from splitmix64 (Steele,
 * Lea and Flood, "Fast splittable pseudorandom number generators", 2014), as
 * the xoshiro authors recommend.
 *
 * Streams: icl_rng_seed(r, seed, stream) gives independent-looking sequences
 * for each (seed, stream) pair, e.g. one stream per prompt index, so that what
 * sequence i draws does not depend on how many other sequences run beside it
 * (reproducible regardless of batch size or thread count).
 *
 * Seeding, exactly:  splitmix64 state x = mix(seed) ^ mix(stream ^ K) where
 * mix is splitmix64's output function applied to (v + 0x9E3779B97F4A7C15) and
 * K = 0xD1B54A32D192ED03; s[0..3] = the next four splitmix64 outputs from x.
 * (An all-zero state, which xoshiro cannot leave, is replaced by s[0] = 1.)
 *
 * The state is plain data: save and restore it by copying the struct (e.g.
 * into trainer_state.json as four unsigned 64-bit integers).
 */
#ifndef ICL_RNG_H
#define ICL_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} icl_rng;

/* Seed r for (seed, stream).  Deterministic; any values allowed. */
void icl_rng_seed(icl_rng *r, uint64_t seed, uint64_t stream);

/* Next 64 uniformly distributed bits (xoshiro256**). */
uint64_t icl_rng_next_u64(icl_rng *r);

/* Uniform double in [0, 1): the top 53 bits of one draw times 2^-53
 * (never returns 1.0; every multiple of 2^-53 equally likely). */
double icl_rng_uniform(icl_rng *r);

/* Uniform integer in [0, n), without modulo bias (Lemire, "Fast random
 * integer generation in an interval", 2019: multiply and reject).
 * n must be > 0; n == 0 returns 0 and draws nothing. */
uint64_t icl_rng_below(icl_rng *r, uint64_t n);

/* Standard normal N(0, 1) by the Box-Muller transform (one value per call;
 * two uniforms consumed, the first mapped to (0, 1] so log() is finite). */
double icl_rng_normal(icl_rng *r);

/* Shuffle a[0..n) in place: Fisher-Yates (Durstenfeld), i from n-1 down to 1
 * swapping a[i] with a[icl_rng_below(r, i + 1)].  Same seed, same order. */
void icl_rng_shuffle(icl_rng *r, size_t *a, size_t n);

/* One splitmix64 step: advance *state by the golden gamma and return the
 * mixed output.  Exposed for deriving seeds (e.g. per-worker). */
uint64_t icl_splitmix64(uint64_t *state);

#endif
