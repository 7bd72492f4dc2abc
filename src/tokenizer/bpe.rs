//! Byte-pair merging as llama.cpp does it (`llm_tokenizer_bpe`): the text is
//! cut into words by the pre-tokenizer, each word starts as one symbol per
//! byte (GPT-2's byte alphabet) or per character (SentencePiece-style BPE),
//! and the adjacent pair with the lowest merge rank is merged until no pair
//! has a rank; ties go to the leftmost pair.
//!
//! Every merge's two sides and their concatenation must be tokens (checked
//! when the vocabulary is built), so symbols are token ids throughout and the
//! merge table is keyed by id pairs.

use super::pretokenize::{PreRules, PreTokenizer};
use crate::error::{Error, Result};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// GPT-2's byte-to-character alphabet: printable Latin-1 bytes stand for
/// themselves, the other 68 bytes for U+0100 onwards.
pub(crate) fn byte_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut extra = 0u32;
    for b in 0..=255u8 {
        table[b as usize] = if matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF) {
            char::from(b)
        } else {
            extra += 1;
            char::from_u32(255 + extra).unwrap_or('\u{FFFD}')
        };
    }
    table
}

/// The inverse of [`byte_chars`].
pub(crate) fn char_bytes() -> HashMap<char, u8> {
    byte_chars().iter().enumerate().map(|(b, &c)| (c, b as u8)).collect()
}

/// A byte-pair model over a vocabulary's ids.
pub(crate) struct Bpe {
    rules: PreRules,
    pre: PreTokenizer,
    /// (left, right) -> (rank, merged): the first rank a pair is listed at.
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// The token of each byte's alphabet character (`byte_encode`) or of the byte itself as text.
    byte_start: [Option<u32>; 256],
    /// Without `byte_encode`, the `<0xXX>` token a byte of a symbol that is not a token becomes.
    byte_fallback: [Option<u32>; 256],
}

impl Bpe {
    /// `merges` are "left right" strings, best first.
    pub fn new(rules: PreRules, ids: &HashMap<String, u32>, merges: &[String]) -> Result<Bpe> {
        if merges.is_empty() {
            return Err(Error::msg("GGUF byte-pair vocabulary has no tokenizer.ggml.merges"));
        }
        let pre = PreTokenizer::new(&rules)?;
        let mut table = HashMap::with_capacity(merges.len());
        for (rank, m) in merges.iter().enumerate() {
            // The sides split at the first space after the first character (a side may start with a space).
            let first = m.chars().next().map_or(0, char::len_utf8);
            let Some(pos) = m[first..].find(' ').map(|p| p + first) else {
                return Err(Error::msg(format!("malformed GGUF merge #{rank} {m:?} (expected \"left right\")")));
            };
            let (left, right) = (&m[..pos], &m[pos + 1..]);
            let id = |s: &str| ids.get(s).copied();
            let (Some(l), Some(r), Some(lr)) = (id(left), id(right), id(&format!("{left}{right}"))) else {
                return Err(Error::msg(format!("GGUF merges do not fit the vocabulary: merge #{rank} {m:?} names a piece that is not a token")));
            };
            table.entry((l, r)).or_insert((rank as u32, lr));
        }
        let chars = byte_chars();
        let mut byte_start = [None; 256];
        let mut byte_fallback = [None; 256];
        for b in 0..=255u8 {
            let i = b as usize;
            if rules.byte_encode {
                // No fallback: llama.cpp looks up each byte of the symbol's alphabet text as
                // one-byte text, which finds a token only where the alphabet character (the
                // symbol itself) is one already.
                byte_start[i] = ids.get(chars[i].encode_utf8(&mut [0; 4]) as &str).copied();
            } else {
                byte_fallback[i] = ids.get(&format!("<0x{b:02X}>")).copied();
            }
        }
        Ok(Bpe { rules, pre, merges: table, byte_start, byte_fallback })
    }

    /// Appends the tokens of one piece of plain text (no special tokens in it).
    pub fn encode(&self, ids: &HashMap<String, u32>, text: &str, out: &mut Vec<u32>) -> Result<()> {
        let escaped;
        let text = if self.rules.escape_spaces {
            escaped = text.replace(' ', "\u{2581}");
            escaped.as_str()
        } else {
            text
        };
        let chars = byte_chars();
        for word in self.pre.split(text)? {
            if self.rules.byte_encode {
                if self.rules.ignore_merges {
                    let encoded: String = word.bytes().map(|b| chars[b as usize]).collect();
                    if let Some(&id) = ids.get(&encoded) {
                        out.push(id);
                        continue;
                    }
                }
                let syms: Vec<Sym> = (0..word.len()).map(|i| Sym::new(i, 1, self.byte_start[word.as_bytes()[i] as usize])).collect();
                self.merge(word.as_bytes(), syms, out);
            } else {
                let whole = self.rules.ignore_merges || (self.rules.whole_newlines && word.bytes().all(|b| b == b'\n'));
                if whole && let Some(&id) = ids.get(word) {
                    out.push(id);
                    continue;
                }
                let syms: Vec<Sym> = word.char_indices().map(|(i, c)| Sym::new(i, c.len_utf8(), ids.get(&word[i..i + c.len_utf8()]).copied())).collect();
                self.merge(word.as_bytes(), syms, out);
            }
        }
        Ok(())
    }

    /// Merges the symbols of one word and appends what they end as.
    fn merge(&self, word: &[u8], mut syms: Vec<Sym>, out: &mut Vec<u32>) {
        let n = syms.len();
        for (i, s) in syms.iter_mut().enumerate() {
            s.prev = i as i32 - 1;
            s.next = if i + 1 < n { i as i32 + 1 } else { -1 };
        }
        // Smallest rank first, then leftmost.
        let mut heap: BinaryHeap<Reverse<Candidate>> = BinaryHeap::new();
        let pair = |syms: &[Sym], heap: &mut BinaryHeap<_>, l: i32, r: i32| {
            if l < 0 || r < 0 {
                return;
            }
            let (a, b) = (&syms[l as usize], &syms[r as usize]);
            if let (Some(x), Some(y)) = (a.id, b.id)
                && let Some(&(rank, merged)) = self.merges.get(&(x, y))
            {
                heap.push(Reverse(Candidate { rank, left: l as u32, right: r as u32, left_id: x, right_id: y, merged }));
            }
        };
        for i in 1..n {
            pair(&syms, &mut heap, i as i32 - 1, i as i32);
        }
        while let Some(Reverse(Candidate { left: l, right: r, left_id: x, right_id: y, merged, .. })) = heap.pop() {
            let (li, ri) = (l as usize, r as usize);
            // Stale: either side has changed since the pair was queued.
            if syms[li].len == 0 || syms[ri].len == 0 || syms[li].next != r as i32 || syms[li].id != Some(x) || syms[ri].id != Some(y) {
                continue;
            }
            let right = syms[ri];
            syms[li].len += right.len;
            syms[li].id = Some(merged);
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
            match s.id {
                Some(id) => out.push(id),
                // Not a token: its bytes' fallback tokens, where they exist (llama.cpp drops the rest).
                None => out.extend(word[s.start..s.start + s.len].iter().filter_map(|&b| self.byte_fallback[b as usize])),
            }
        }
    }
}

/// A pair of adjacent symbols that a merge applies to, ordered by rank, then position.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    rank: u32,
    left: u32,
    right: u32,
    /// The tokens the two sides had when queued (a changed side makes it stale).
    left_id: u32,
    right_id: u32,
    merged: u32,
}

/// One symbol of a word being merged: a byte range and its token.
#[derive(Clone, Copy)]
struct Sym {
    start: usize,
    len: usize,
    id: Option<u32>,
    prev: i32,
    next: i32,
}

impl Sym {
    fn new(start: usize, len: usize, id: Option<u32>) -> Sym {
        Sym { start, len, id, prev: -1, next: -1 }
    }
}
