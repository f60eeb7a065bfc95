//! The bounded run the normal test suite does: each target over its checked-in corpus, its
//! regression inputs (crash reproducers found by fuzzing), and a deterministic stream of
//! mutated and random inputs.

use std::path::{Path, PathBuf};

/// A small deterministic generator (xorshift64*): the same stream on every run and machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced: xorshift would stay at 0).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 { 0x9E37_79B9_7F4A_7C15 } else { seed })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next_u64() % n as u64) as usize }
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64().to_le_bytes()[0]
    }
}

/// Bytes that often matter to a decoder: zero, sign and varint boundaries, gRPC flags,
/// protobuf tags of the first fields, separators and wildcards.
const INTERESTING: [u8; 16] = [0, 1, 2, 0x7f, 0x80, 0xff, 0x0a, 0x12, 0x1a, 0x08, 0x10, b'/', b'+', b'#', b'$', b'\n'];

/// One mutation of `input` (libFuzzer-like: bit flips, byte sets, inserts, deletes,
/// duplications, truncation, splicing with `other`).
pub fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(3) {
        let len = out.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                out.insert(i, rng.byte());
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(8));
                out.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                let copy = out[i..i + n].to_vec();
                let at = rng.below(len + 1);
                out.splice(at..at, copy);
            }
            5 => out.truncate(rng.below(len + 1)),
            6 if !other.is_empty() => {
                let cut = rng.below(len + 1);
                let from = rng.below(other.len());
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            _ => {
                let i = rng.below(len + 1);
                out.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
            }
        }
    }
    out
}

/// Every file in `dir`, sorted by name (none if it does not exist).
pub fn load_dir(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<(PathBuf, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter_map(|p| std::fs::read(&p).ok().map(|d| (p, d)))
        .collect();
    files.sort();
    files
}

/// `fuzz/regressions/<target>` under `root`: crash reproducers, kept forever.
pub fn regressions_dir(root: &Path, target: &str) -> PathBuf {
    root.join("fuzz/regressions").join(target)
}

/// What one smoke run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmokeReport {
    /// Corpus and regression files run.
    pub files: usize,
    /// Generated inputs run.
    pub generated: usize,
}

/// Runs `target` over its corpus and regressions under `root`, then `generated` inputs:
/// mostly mutations of corpus files, one in eight random bytes. Deterministic per `seed`.
pub fn run(root: &Path, name: &str, target: fn(&[u8]), generated: usize, seed: u64) -> SmokeReport {
    let mut files = load_dir(&crate::seeds::corpus_dir(root, name));
    files.extend(load_dir(&regressions_dir(root, name)));
    for (_, data) in &files {
        target(data);
    }
    let mut rng = Rng::new(seed);
    let empty = Vec::new();
    for _ in 0..generated {
        let input = if files.is_empty() || rng.below(8) == 0 {
            (0..rng.below(64)).map(|_| rng.byte()).collect()
        } else {
            let base = &files[rng.below(files.len())].1;
            let other = files.get(rng.below(files.len())).map_or(&empty, |f| &f.1);
            mutate(&mut rng, base, other)
        };
        target(&input);
    }
    SmokeReport { files: files.len(), generated }
}
