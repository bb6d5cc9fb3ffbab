package bench

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"strconv"
)

// Key returns the key of index i, size bytes long (size >= MinKeySize):
// the 8-byte big-endian mix64(i), then i in decimal, zero-padded on the
// left or cut to fill the rest. mix64 is a bijection, so keys of distinct
// indexes differ in their first 8 bytes, and its output is uniform, so
// the first byte of the keys is spread evenly over [0, 256): every shard
// of a key space split on its first bytes gets its share, whatever the
// index distribution.
func Key(dst []byte, i uint64, size int) []byte {
	dst = binary.BigEndian.AppendUint64(dst[:0], mix64(i))
	rest := size - 8
	if rest <= 0 {
		return dst
	}
	var digits [20]byte
	d := strconv.AppendUint(digits[:0], i, 10)
	for n := rest - len(d); n > 0; n-- {
		dst = append(dst, '0')
	}
	if len(d) > rest {
		d = d[len(d)-rest:]
	}
	return append(dst, d...)
}

// mix64 is a bijective 64-bit finaliser (xor-shift and odd-constant
// multiply steps, each invertible), spreading consecutive integers over
// the whole range.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// A Chooser picks key indexes in [0, n). Each client owns one; it is not
// safe for concurrent use.
type Chooser interface {
	Next() uint64
}

type uniform struct {
	rng *rand.Rand
	n   uint64
}

func (u uniform) Next() uint64 { return u.rng.Uint64N(u.n) }

// NewUniform returns a Chooser drawing every index with equal probability.
func NewUniform(rng *rand.Rand, n uint64) Chooser { return uniform{rng, n} }

// Zipf draws ranks in [0, n) with P(rank k) proportional to 1/(k+1)^theta,
// by the inversion method of Gray et al. ("Quickly generating
// billion-record synthetic databases", SIGMOD 1994), which YCSB uses:
// constant time per draw after an O(n) setup. Rank 0 is the hottest; the
// caller hashes ranks into keys (Key), so hot keys are scattered over the
// key space rather than clustered in one shard.
type Zipf struct {
	rng                *rand.Rand
	n                  uint64
	theta, alpha, eta  float64
	zetaN, halfPowTail float64
}

// ZipfConstants holds the O(n) part of a zipfian generator's setup, shared
// by every client of a run.
type ZipfConstants struct {
	n            uint64
	theta, zetaN float64
}

// NewZipfConstants computes zeta(n, theta) = sum over k in [1, n] of
// 1/k^theta.
func NewZipfConstants(n uint64, theta float64) ZipfConstants {
	var z float64
	for k := uint64(1); k <= n; k++ {
		z += 1 / math.Pow(float64(k), theta)
	}
	return ZipfConstants{n: n, theta: theta, zetaN: z}
}

// NewZipf returns a zipfian Chooser over zc's n ranks, drawing from rng.
func NewZipf(rng *rand.Rand, zc ZipfConstants) *Zipf {
	z := &Zipf{rng: rng, n: zc.n, theta: zc.theta, zetaN: zc.zetaN}
	z.alpha = 1 / (1 - z.theta)
	zeta2 := 1 + math.Pow(0.5, z.theta)
	z.eta = (1 - math.Pow(2/float64(z.n), 1-z.theta)) / (1 - zeta2/z.zetaN)
	z.halfPowTail = 1 + math.Pow(0.5, z.theta)
	return z
}

// Next returns the next rank.
func (z *Zipf) Next() uint64 {
	u := z.rng.Float64()
	uz := u * z.zetaN
	if uz < 1 || z.n == 1 {
		return 0
	}
	if uz < z.halfPowTail {
		return 1
	}
	r := uint64(float64(z.n) * math.Pow(z.eta*u-z.eta+1, z.alpha))
	return min(r, z.n-1)
}
