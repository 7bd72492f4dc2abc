//! SentencePiece merging as llama.cpp does it (`llm_tokenizer_spm`): the text
//! (spaces already written as U+2581) starts as one symbol per character, and
//! the adjacent pair whose concatenation is the token with the highest score
//! is merged until no pair forms a token; ties go to the leftmost pair. A
//! symbol left that is not a token becomes its bytes' `<0xXX>` tokens.

use crate::error::{Error, Result};
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

pub(crate) struct Spm {
    scores: Vec<f32>,
    /// The token of each byte: `<0xXX>`, else the byte as one-character text.
    bytes: [Option<u32>; 256],
    unk: Option<u32>,
}

/// A score ordered by `total_cmp`, so a NaN in a file cannot break the queue.
#[derive(Clone, Copy, PartialEq)]
struct Score(f32);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[derive(Clone, Copy)]
struct Sym {
    start: usize,
    len: usize,
    prev: i32,
    next: i32,
}

impl Spm {
    /// `scores` has one entry per token (zeros when the file has none).
    pub fn new(ids: &HashMap<String, u32>, scores: Vec<f32>, unk: Option<u32>) -> Spm {
        let mut bytes = [None; 256];
        for b in 0..=255u8 {
            let hex = ids.get(&format!("<0x{b:02X}>")).copied();
            bytes[b as usize] = hex.or_else(|| if b.is_ascii() { ids.get(char::from(b).encode_utf8(&mut [0; 4]) as &str).copied() } else { None });
        }
        Spm { scores, bytes, unk }
    }

    /// Appends the tokens of `text` (already escaped: U+2581 for spaces).
    pub fn encode(&self, ids: &HashMap<String, u32>, text: &str, out: &mut Vec<u32>) -> Result<()> {
        let mut syms: Vec<Sym> = text.char_indices().map(|(i, c)| Sym { start: i, len: c.len_utf8(), prev: 0, next: 0 }).collect();
        let n = syms.len();
        for (i, s) in syms.iter_mut().enumerate() {
            s.prev = i as i32 - 1;
            s.next = if i + 1 < n { i as i32 + 1 } else { -1 };
        }
        // (score, leftmost first, right, byte size); highest score first.
        let mut heap: BinaryHeap<(Score, Reverse<u32>, u32, usize)> = BinaryHeap::new();
        let pair = |syms: &[Sym], heap: &mut BinaryHeap<_>, l: i32, r: i32| {
            if l < 0 || r < 0 {
                return;
            }
            let (a, b) = (syms[l as usize], syms[r as usize]);
            let size = a.len + b.len;
            if let Some(&id) = ids.get(&text[a.start..a.start + size]) {
                let score = self.scores.get(id as usize).copied().unwrap_or(0.0);
                heap.push((Score(score), Reverse(l as u32), r as u32, size));
            }
        };
        for i in 1..n {
            pair(&syms, &mut heap, i as i32 - 1, i as i32);
        }
        while let Some((_, Reverse(l), r, size)) = heap.pop() {
            let (li, ri) = (l as usize, r as usize);
            // Stale: a side was merged away or grew since the pair was queued.
            if syms[li].len == 0 || syms[ri].len == 0 || syms[li].len + syms[ri].len != size {
                continue;
            }
            let right = syms[ri];
            syms[li].len += right.len;
            syms[li].next = right.next;
            syms[ri].len = 0;
            if right.next >= 0 {
                syms[right.next as usize].prev = l as i32;
            }
            let (prev, next) = (syms[li].prev, syms[li].next);
            pair(&syms, &mut heap, prev, l as i32);
            pair(&syms, &mut heap, l as i32, next);
        }
        for s in syms.iter().filter(|s| s.len > 0) {
            let piece = &text[s.start..s.start + s.len];
            if let Some(&id) = ids.get(piece) {
                out.push(id);
                continue;
            }
            for &b in piece.as_bytes() {
                match self.bytes[b as usize].or(self.unk) {
                    Some(id) => out.push(id),
                    None => return Err(Error::msg(format!("the vocabulary has no token for byte 0x{b:02X} (no <0x{b:02X}> token and no unknown token)"))),
                }
            }
        }
        Ok(())
    }
}
