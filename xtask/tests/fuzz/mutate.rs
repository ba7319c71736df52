//! A small byte mutator in the spirit of libFuzzer's: stacked bit flips, byte edits, inserts,
//! deletions, duplications, splices between corpus entries, interesting values and the
//! target's own tokens. Seeded ChaCha8, so a run is reproducible from its seed.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Values at the edges of the integer types, where length and offset checks go wrong.
const INTERESTING: [u64; 14] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// Mutates inputs; every random choice comes from one seeded generator.
pub struct Mutator {
    rng: ChaCha8Rng,
    max_len: usize,
}

impl Mutator {
    /// A mutator whose outputs are at most `max_len` bytes.
    pub fn new(seed: u64, max_len: usize) -> Self {
        Self { rng: ChaCha8Rng::seed_from_u64(seed), max_len }
    }

    /// A uniform index below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        self.rng.random_range(0..n.max(1))
    }

    /// Applies 1, 2, 4 or 8 mutations to `input`; `corpus` feeds the splices, `tokens` the
    /// dictionary inserts.
    pub fn mutate(&mut self, input: &mut Vec<u8>, corpus: &[Vec<u8>], tokens: &[&[u8]]) {
        let count = 1 << self.below(4);
        for _ in 0..count {
            self.mutate_once(input, corpus, tokens);
        }
        input.truncate(self.max_len);
    }

    fn mutate_once(&mut self, input: &mut Vec<u8>, corpus: &[Vec<u8>], tokens: &[&[u8]]) {
        let len = input.len();
        match self.below(11) {
            0 if len > 0 => {
                let i = self.below(len);
                input[i] ^= 1 << self.below(8);
            }
            1 if len > 0 => {
                let i = self.below(len);
                input[i] = self.rng.random();
            }
            2 if len > 0 => {
                let i = self.below(len);
                let delta = self.below(35) as u8;
                input[i] = if self.rng.random_bool(0.5) {
                    input[i].wrapping_add(delta)
                } else {
                    input[i].wrapping_sub(delta)
                };
            }
            3 => {
                let at = self.below(len + 1);
                let n = 1 + self.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| self.rng.random()).collect();
                input.splice(at..at, bytes);
            }
            4 if len > 0 => {
                let start = self.below(len);
                let n = 1 + self.below((len - start).min(64));
                input.drain(start..start + n);
            }
            5 if len > 0 => {
                let start = self.below(len);
                let n = 1 + self.below((len - start).min(256));
                let chunk = input[start..start + n].to_vec();
                let at = self.below(len + 1);
                input.splice(at..at, chunk);
            }
            6 if !corpus.is_empty() => {
                let other = &corpus[self.below(corpus.len())];
                if other.is_empty() {
                    return;
                }
                let start = self.below(other.len());
                let n = 1 + self.below((other.len() - start).min(512));
                let at = self.below(len + 1);
                if self.rng.random_bool(0.5) {
                    input.splice(at..at, other[start..start + n].iter().copied());
                } else {
                    let end = (at + n).min(len);
                    input.splice(at..end, other[start..start + n].iter().copied());
                }
            }
            7 if len > 0 => {
                let value = INTERESTING[self.below(INTERESTING.len())];
                let width = 1 << self.below(4);
                let bytes = if self.rng.random_bool(0.5) {
                    value.to_le_bytes()[..width].to_vec()
                } else {
                    value.to_be_bytes()[8 - width..].to_vec()
                };
                let at = self.below(len);
                let end = (at + width).min(len);
                input.splice(at..end, bytes);
            }
            8 if !tokens.is_empty() => {
                let token = tokens[self.below(tokens.len())];
                let at = self.below(len + 1);
                if self.rng.random_bool(0.5) || len == 0 {
                    input.splice(at..at, token.iter().copied());
                } else {
                    let end = (at + token.len()).min(len);
                    input.splice(at..end, token.iter().copied());
                }
            }
            // A file cut short: what a killed writer or a full disk leaves.
            9 if len > 0 => input.truncate(self.below(len)),
            10 if len > 1 => {
                let (a, b) = (self.below(len), self.below(len));
                input.swap(a, b);
            }
            _ => {
                let at = self.below(len + 1);
                input.insert(at, self.rng.random());
            }
        }
    }
}

/// Checks, in the replay run of `cargo test`, that a seed fixes the outputs and that lengths
/// stay capped (this binary has no libtest harness, so no `#[test]` here).
pub fn check_determinism() {
    let corpus = vec![b"hello world".to_vec(), vec![0u8; 100]];
    let run = |seed| {
        let mut m = Mutator::new(seed, 64);
        (0..200)
            .map(|i| {
                let mut input = corpus[i % 2].clone();
                m.mutate(&mut input, &corpus, &[b"token"]);
                assert!(input.len() <= 64, "an output of {} bytes, above the cap", input.len());
                input
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7), "the same seed gave other inputs");
    assert_ne!(run(7), run(8), "two seeds gave the same inputs");
}
