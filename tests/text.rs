//! Tokenizer and chat template: the real model's ids against llama.cpp's
//! (tests/reference/smollm2-135m), decoding and streaming, pre-tokenizer rules on tiny
//! hand-made vocabularies, the tokenizer.json route, and template rendering.

mod common;
#[path = "common/tiny.rs"]
mod tiny;

use common::{real_model, reference_path};
use wgkv::gguf::Gguf;
use wgkv::template::{ChatTemplate, Message};
use wgkv::tokenizer::*;

fn reference(name: &str) -> serde_json::Value {
    let path = reference_path(&format!("smollm2-135m/{name}"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn real_tokenizer() -> Option<Tokenizer> {
    let path = real_model()?;
    let g = Gguf::open(&path).unwrap();
    Some(Tokenizer::from_gguf(&g).unwrap())
}

/// The SmolLM2-135M-Instruct template, as stored in its GGUF.
const SMOLLM_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const SMOLLM_SYSTEM: &str = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n";

// ---------------------------------------------------------------- real model

#[test]
fn real_model_ids_match_llama_cpp() {
    let Some(tok) = real_tokenizer() else { return };
    let entries = reference("tokenize.json");
    let mut checked = 0;
    for e in entries.as_array().unwrap() {
        let text = e["text"].as_str().unwrap();
        let want = ids_of(&e["ids"]);
        assert_eq!(tok.encode(text, true).unwrap(), want, "ids of {text:?}");
        assert_eq!(tok.decode(&want), text, "decode of {text:?}");
        checked += 1;
    }
    for i in 1..=3 {
        let c = reference(&format!("compare_{i}.json"));
        let prompt = c["prompt"].as_str().unwrap();
        let want = ids_of(&c["prompt_ids"]);
        assert_eq!(tok.encode_prompt(prompt).unwrap(), want, "compare_{i}.json prompt_ids");
        assert_eq!(tok.decode(&want), prompt);
        checked += 1;
    }
    assert!(checked >= 17, "only {checked} reference strings");

    // llama.cpp's count for the perplexity text (reference README: 33,457 tokens).
    let path = reference_path("smollm2-135m/ppl.txt");
    let ppl = std::fs::read_to_string(path).unwrap();
    let ids = tok.encode(&ppl, true).unwrap();
    assert_eq!(ids.len(), 33457);
    assert_eq!(tok.decode(&ids), ppl);
}

#[test]
fn real_model_random_text_round_trips() {
    let Some(tok) = real_tokenizer() else { return };
    let alphabet: Vec<char> = "ab Z09 \n\t.,'!é日本🙂ß\u{0301}<|>_-".chars().collect();
    let mut rng = common::Rng::new(7);
    for _ in 0..300 {
        let n = rng.below(40) as usize;
        let s: String = (0..n).map(|_| alphabet[rng.below(alphabet.len() as u32) as usize]).collect();
        let ids = tok.encode(&s, true).unwrap();
        assert_eq!(tok.decode(&ids), s, "{s:?} -> {ids:?}");
        let mut dec = StreamDecoder::new();
        let streamed: String = ids.iter().map(|&id| dec.push(&tok, id)).collect::<String>() + &dec.finish();
        assert_eq!(streamed, s);
    }
}

#[test]
fn real_model_specials_bos_eog() {
    let Some(tok) = real_tokenizer() else { return };
    assert_eq!(tok.vocab_size(), 49152);
    // The GGUF says add_bos_token = false: llama.cpp adds no BOS, neither do we.
    assert!(!tok.add_bos());
    assert_eq!(tok.bos(), Some(1));
    assert_eq!(tok.eos(), Some(2));
    assert_eq!(tok.bos_text(), "<|im_start|>");
    assert_eq!(tok.eos_text(), "<|im_end|>");
    assert_eq!(tok.encode_prompt("Hello world").unwrap(), tok.encode("Hello world", true).unwrap());
    // eos (<|im_end|>) and <|endoftext|>.
    assert_eq!(tok.eog_ids(), vec![0, 2]);

    for (text, id) in [("<|im_start|>", 1), ("<|im_end|>", 2), ("<|endoftext|>", 0)] {
        assert_eq!(tok.encode(text, true).unwrap(), vec![id], "{text}");
        assert!(tok.is_special(id));
        let plain = tok.encode(text, false).unwrap();
        assert!(plain.len() > 1 && !plain.contains(&id), "{text} without parse_special: {plain:?}");
        assert_eq!(tok.decode(&plain), text);
        assert_eq!(tok.id_to_piece(id), text);
    }
    // Specials glued to text on both sides.
    let ids = tok.encode("a<|im_end|><|im_start|>b", true).unwrap();
    assert_eq!(ids, vec![tok.encode("a", true).unwrap()[0], 2, 1, tok.encode("b", true).unwrap()[0]]);

    assert_eq!(tok.id_to_piece(905), " world");
    assert_eq!(tok.token_text(905), Some("Ġworld"));
    assert_eq!(tok.token_id("Ġworld"), Some(905));
    assert_eq!(tok.token_bytes(1_000_000), Vec::<u8>::new());
}

#[test]
fn real_model_stream_decoder_holds_partial_utf8() {
    let Some(tok) = real_tokenizer() else { return };
    for text in ["日本語のテキスト", "emoji 🙂👍 done", "naïve café résumé", "日本語", "🙂"] {
        let ids = tok.encode(text, true).unwrap();
        let mut dec = StreamDecoder::new();
        let mut out = String::new();
        let mut held = 0;
        for &id in &ids {
            let s = dec.push(&tok, id);
            assert!(!s.contains('\u{FFFD}'), "{text:?}: replacement char after id {id}");
            if s.is_empty() {
                held += 1;
            }
            out.push_str(&s);
        }
        assert_eq!(dec.finish(), "");
        assert_eq!(out, text);
        if text.starts_with('日') || text == "🙂" {
            // These split characters across tokens: some tokens complete nothing.
            assert!(held > 0, "{text:?} never held bytes back: {ids:?}");
        }
    }
}

#[test]
fn real_model_chat_template() {
    let Some(tok) = real_tokenizer() else { return };
    let source = tok.chat_template().expect("GGUF has tokenizer.chat_template");
    let t = ChatTemplate::new(source, tok.bos_text(), tok.eos_text()).unwrap();

    let one = t.render(&[Message::new("user", "What is 2+2?")], true).unwrap();
    let want_one = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
                    <|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n";
    assert_eq!(one, want_one);

    let three = [Message::new("system", "Be brief."), Message::new("user", "Hi"), Message::new("assistant", "Hello!")];
    let want_three = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
                      <|im_start|>assistant\nHello!<|im_end|>\n";
    assert_eq!(t.render(&three, false).unwrap(), want_three);
    assert_eq!(t.render(&three, true).unwrap(), format!("{want_three}<|im_start|>assistant\n"));

    // The rendered prompt tokenizes with its markers as single ids.
    let ids = tok.encode_prompt(&one).unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 3);
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 2);
    assert_eq!(tok.decode(&ids), one);
}

// ---------------------------------------------------------------- streaming

#[test]
fn stream_decoder_bytes() {
    let text = "a日🙂é";
    let bytes = text.as_bytes();
    // Every split point, one byte at a time.
    let mut dec = StreamDecoder::new();
    let mut out = String::new();
    for b in bytes {
        let s = dec.push_bytes(std::slice::from_ref(b));
        assert!(!s.contains('\u{FFFD}'));
        out.push_str(&s);
    }
    assert_eq!(out, text);
    // An invalid byte becomes U+FFFD at once, the rest goes on.
    let mut dec = StreamDecoder::new();
    assert_eq!(dec.push_bytes(&[b'x', 0xFF, b'y']), "x\u{FFFD}y");
    // A truncated character is held, then flushed as U+FFFD.
    assert_eq!(dec.push_bytes(&"日".as_bytes()[..2]), "");
    assert_eq!(dec.finish(), "\u{FFFD}");
}

// ---------------------------------------------------------------- tiny GGUF vocabularies

/// 256 byte tokens, then `extra` tokens; `<|ctl|>` is a control token, `<usr>` user-defined.
fn tiny_vocab(pre: &str, extra: &[&str], merges: &[&str]) -> GgufVocab {
    let mut tokens = vec!["<|ctl|>".to_string(), "<usr>".to_string()];
    tokens.extend(tiny::byte_alphabet());
    tokens.extend(extra.iter().map(|s| s.to_string()));
    let mut token_types = vec![TOKEN_NORMAL; tokens.len()];
    token_types[0] = TOKEN_CONTROL;
    token_types[1] = TOKEN_USER_DEFINED;
    GgufVocab {
        model: "gpt2".into(),
        pre: pre.into(),
        tokens,
        merges: merges.iter().map(|s| s.to_string()).collect(),
        token_types,
        bos: Some(0),
        eos: Some(0),
        chat_template: None,
        ..Default::default()
    }
}

/// Id of a single byte in `tiny_vocab`.
fn byte_id(b: u8) -> u32 {
    2 + b as u32
}

#[test]
fn tiny_smollm_splits_digits_and_specials() {
    let tok = Tokenizer::from_gguf_vocab(tiny_vocab("smollm", &["12", "ab", "Ġab"], &["1 2", "a b", "Ġ ab"])).unwrap();
    let (tab, tsab) = (259, 260);
    // Digits are split one by one before BPE: the "1 2" merge never applies.
    assert_eq!(tok.encode("12", true).unwrap(), vec![byte_id(b'1'), byte_id(b'2')]);
    assert_eq!(tok.encode("ab ab", true).unwrap(), vec![tab, tsab]);
    assert_eq!(tok.encode("ab 1", true).unwrap(), vec![tab, byte_id(b' '), byte_id(b'1')]);
    // Control tokens only with parse_special; user-defined always.
    assert_eq!(tok.encode("ab<|ctl|>ab", true).unwrap(), vec![tab, 0, tab]);
    assert_eq!(tok.encode("<|ctl|>", false).unwrap().len(), 7);
    assert_eq!(tok.encode("ab<usr>ab", false).unwrap(), vec![tab, 1, tab]);
    assert_eq!(tok.decode(&[tab, 1, 0, tsab]), "ab<usr><|ctl|> ab");
    // Non-ASCII goes through the byte alphabet both ways.
    let ids = tok.encode("é€", true).unwrap();
    assert_eq!(ids, "é€".bytes().map(byte_id).collect::<Vec<_>>());
    assert_eq!(tok.decode(&ids), "é€");
    assert_eq!(tok.token_bytes(ids[0]), vec![0xC3]);
    assert_eq!(tok.encode("", true).unwrap(), Vec::<u32>::new());
    // No add_bos_token key: a "smollm" vocabulary adds no BOS.
    assert!(!tok.add_bos());
}

#[test]
fn tiny_gpt2_and_llama_bpe_rules() {
    // Plain GPT-2 split keeps digit runs together, so "1 2" merges.
    let tok = Tokenizer::from_gguf_vocab(tiny_vocab("gpt-2", &["12"], &["1 2"])).unwrap();
    assert_eq!(tok.encode("12", true).unwrap(), vec![258]);

    // Llama 3: a word in the vocabulary is taken whole even without merges,
    // digits group by three, and BOS is added by default.
    let extra = ["abc", "ab", "12", "123"];
    let merges = ["a b", "1 2", "12 3"];
    let tok = Tokenizer::from_gguf_vocab(tiny_vocab("llama-bpe", &extra, &merges)).unwrap();
    assert_eq!(tok.encode("abc", true).unwrap(), vec![258]);
    assert_eq!(tok.encode("abd", true).unwrap(), vec![259, byte_id(b'd')]);
    // "12123" -> "121" + "23".
    assert_eq!(tok.encode("12123", true).unwrap(), vec![260, byte_id(b'1'), byte_id(b'2'), byte_id(b'3')]);
    let gpt2 = Tokenizer::from_gguf_vocab(tiny_vocab("gpt-2", &extra, &merges)).unwrap();
    assert_eq!(gpt2.encode("abc", true).unwrap(), vec![259, byte_id(b'c')]);
    assert_eq!(gpt2.encode("12123", true).unwrap(), vec![260, 261]);
    assert!(tok.add_bos());
    assert_eq!(tok.encode_prompt("abc").unwrap(), vec![0, 258]);
    // ... but not twice when the text starts with it.
    assert_eq!(tok.encode_prompt("<|ctl|>abc").unwrap(), vec![0, 258]);
    let mut v = tiny_vocab("llama-bpe", &extra, &merges);
    v.add_bos = Some(false);
    assert!(!Tokenizer::from_gguf_vocab(v).unwrap().add_bos());
}

#[test]
fn unsupported_gguf_vocabularies_are_refused() {
    let err = |v: GgufVocab| Tokenizer::from_gguf_vocab(v).err().expect("must fail").to_string();
    for (model, named) in [("bert", "'bert' (WordPiece)"), ("t5", "'t5' (Unigram)"), ("rwkv", "'rwkv' (RWKV)"), ("nope", "'nope'")] {
        let mut v = tiny_vocab("smollm", &[], &[]);
        v.model = model.into();
        let e = err(v);
        assert!(e.contains(named) && e.contains("supported: gpt2") && !e.contains('\n'), "{e}");
    }
    // A pre-tokenizer llama.cpp knows but wgkv does not, and one nobody knows: the supported list follows.
    for pre in ["chameleon", "nope"] {
        let e = err(tiny_vocab(pre, &[], &[]));
        assert!(e.contains(&format!("'{pre}'")) && e.contains("smollm") && e.contains("deepseek-coder") && !e.contains('\n'), "{e}");
    }
    let mut v = tiny_vocab("smollm", &[], &[]);
    v.bos = Some(99999);
    assert!(err(v).contains("99999"));
    let v = tiny_vocab("smollm", &["xy"], &["x q"]);
    assert!(err(v).contains("merges"));
    let e = err(tiny_vocab("smollm", &[], &["nospace"]));
    assert!(e.contains("malformed GGUF merge") && e.contains("nospace"), "{e}");
    let mut v = tiny_vocab("smollm", &[], &[]);
    v.merges.clear();
    assert!(err(v).contains("no tokenizer.ggml.merges"));
    let mut v = tiny_vocab("smollm", &["a"], &[]);
    v.tokens[1] = "a".into();
    assert!(err(v).contains("duplicate token"));
    let mut v = tiny_vocab("smollm", &[], &[]);
    v.scores = vec![0.0; 3];
    assert!(err(v).contains("3 scores"));
}

// ---------------------------------------------------------------- tiny SentencePiece vocabularies

/// A SentencePiece vocabulary: <unk>, <s>, </s>, the 256 byte tokens, then
/// `pieces` (text, score).
fn spm_vocab(pieces: &[(&str, f32)]) -> GgufVocab {
    let mut tokens: Vec<String> = ["<unk>", "<s>", "</s>"].map(String::from).to_vec();
    let mut token_types = vec![TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        token_types.push(TOKEN_BYTE);
    }
    let mut scores = vec![0.0; tokens.len()];
    for (t, s) in pieces {
        tokens.push(t.to_string());
        token_types.push(TOKEN_NORMAL);
        scores.push(*s);
    }
    GgufVocab { model: "llama".into(), tokens, scores, token_types, bos: Some(1), eos: Some(2), unk: Some(0), ..Default::default() }
}

/// Id of a piece in `spm_vocab`.
fn spm_id(pieces: &[(&str, f32)], text: &str) -> u32 {
    259 + pieces.iter().position(|p| p.0 == text).unwrap() as u32
}

#[test]
fn tiny_spm_merges_by_score_with_byte_fallback() {
    // "ab" scores above "▁a": the pair merged first decides the split.
    let pieces = [("▁", -1.0), ("a", -1.0), ("b", -1.0), ("ab", -2.0), ("▁a", -3.0)];
    let id = |t| spm_id(&pieces, t);
    let tok = Tokenizer::from_gguf_vocab(spm_vocab(&pieces)).unwrap();
    assert_eq!(tok.encode("ab", false).unwrap(), vec![id("▁"), id("ab")]);
    let swapped = [("▁", -1.0), ("a", -1.0), ("b", -1.0), ("ab", -3.0), ("▁a", -2.0)];
    let tok2 = Tokenizer::from_gguf_vocab(spm_vocab(&swapped)).unwrap();
    assert_eq!(tok2.encode("ab", false).unwrap(), vec![spm_id(&swapped, "▁a"), spm_id(&swapped, "b")]);
    // Equal scores: the leftmost pair first ("▁a" before "ab").
    let tied = [("▁", -1.0), ("a", -1.0), ("b", -1.0), ("ab", -2.0), ("▁a", -2.0)];
    let tok3 = Tokenizer::from_gguf_vocab(spm_vocab(&tied)).unwrap();
    assert_eq!(tok3.encode("ab", false).unwrap(), vec![spm_id(&tied, "▁a"), spm_id(&tied, "b")]);

    // A character with no token becomes its UTF-8 bytes' <0xXX> tokens (3 + byte).
    assert_eq!(tok.encode("é", false).unwrap(), vec![id("▁"), 3 + 0xC3, 3 + 0xA9]);
    // Spaces are ▁; the space prefix comes back on decode, bytes come back whole.
    let ids = tok.encode("ab é", false).unwrap();
    assert_eq!(ids, vec![id("▁"), id("ab"), id("▁"), 3 + 0xC3, 3 + 0xA9]);
    assert_eq!(tok.decode(&ids), " ab é");
    assert_eq!(tok.encode("", false).unwrap(), Vec::<u32>::new());

    // BOS by default; control tokens only with parse_special, and a space follows each.
    assert!(tok.add_bos() && tok.add_space_prefix());
    assert_eq!(tok.encode_prompt("ab").unwrap(), vec![1, id("▁"), id("ab")]);
    assert_eq!(tok.encode("ab</s>ab", true).unwrap(), vec![id("▁"), id("ab"), 2, id("▁"), id("ab")]);
    assert_eq!(tok.encode("</s>", false).unwrap(), vec![id("▁"), 3 + b'<' as u32, 3 + b'/' as u32, 3 + b's' as u32, 3 + b'>' as u32]);
    assert_eq!(tok.decode(&[1, id("ab"), 2]), "<s>ab</s>");
    assert_eq!(tok.eog_ids(), vec![2]);
}

#[test]
fn tiny_spm_flags_and_fallbacks() {
    let pieces = [("▁", -1.0), ("a", -1.0), ("b", -1.0), ("ab", -2.0)];
    let id = |t| spm_id(&pieces, t);
    // Gemma 3's files: no space prefix, not even after a special token.
    let mut v = spm_vocab(&pieces);
    v.add_space_prefix = Some(false);
    v.add_bos = Some(false);
    let tok = Tokenizer::from_gguf_vocab(v).unwrap();
    assert!(!tok.add_space_prefix() && !tok.add_bos());
    assert_eq!(tok.encode_prompt("ab</s>ab").unwrap(), vec![id("ab"), 2, id("ab")]);
    assert_eq!(tok.encode(" ab", false).unwrap(), vec![id("▁"), id("ab")]);
    assert_eq!(tok.decode(&tok.encode("ab ab", false).unwrap()), "ab ab");

    // No byte tokens: a byte without a token becomes <unk>; without <unk> it is an error.
    let mut v = spm_vocab(&pieces);
    v.tokens.truncate(3);
    v.token_types.truncate(3);
    v.scores.truncate(3);
    for (t, s) in pieces {
        v.tokens.push(t.into());
        v.token_types.push(TOKEN_NORMAL);
        v.scores.push(s);
    }
    let tok = Tokenizer::from_gguf_vocab(v.clone()).unwrap();
    assert_eq!(tok.encode("aé", false).unwrap(), vec![3, 4, 0, 0]);
    v.unk = None;
    v.tokens[0] = "<pad>".into();
    v.token_types[0] = TOKEN_CONTROL;
    // No unknown id in the file: llama.cpp's default (0) is still a token here, so bytes map to it.
    let tok = Tokenizer::from_gguf_vocab(v.clone()).unwrap();
    assert_eq!(tok.encode("é", false).unwrap(), vec![3, 0, 0]);

    // Phi-3 (by general.name): spaces after its special tokens are dropped, except after <s>.
    let mut v = spm_vocab(&pieces);
    v.tokens.push("<|user|>".into());
    v.token_types.push(TOKEN_CONTROL);
    v.scores.push(0.0);
    let user = v.tokens.len() as u32 - 1;
    v.name = "Phi-3 Mini".into();
    let tok = Tokenizer::from_gguf_vocab(v.clone()).unwrap();
    assert_eq!(tok.encode("<|user|>\n ab", true).unwrap(), vec![user, id("▁"), id("ab")]);
    assert_eq!(tok.encode("<s> ab", true).unwrap(), vec![1, id("▁"), id("▁"), id("ab")]);
    v.name = "Llama".into();
    let tok = Tokenizer::from_gguf_vocab(v).unwrap();
    assert_eq!(tok.encode("<|user|>\n", true).unwrap(), vec![user, id("▁"), 3 + 10]);
}

#[test]
fn tiny_gemma4_bpe() {
    // SentencePiece-style BPE: ▁ for spaces, UTF-8 symbols, <0xXX> fallback, newline runs whole.
    let mut tokens: Vec<String> = ["<pad>", "<eos>", "<bos>"].map(String::from).to_vec();
    let mut token_types = vec![TOKEN_CONTROL; 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        token_types.push(TOKEN_BYTE);
    }
    let extra = ["▁", "a", "b", "ab", "▁ab", "\n", "\n\n"];
    tokens.extend(extra.map(String::from));
    token_types.extend([TOKEN_NORMAL; 7]);
    let id = |t: &str| 259 + extra.iter().position(|&e| e == t).unwrap() as u32;
    let v = GgufVocab {
        model: "gemma4".into(),
        tokens,
        token_types,
        merges: ["a b", "▁ ab"].map(String::from).to_vec(),
        bos: Some(2),
        eos: Some(1),
        add_bos: Some(false),
        ..Default::default()
    };
    let tok = Tokenizer::from_gguf_vocab(v).unwrap();
    // llama.cpp starts Gemma 4 prompts with BOS whatever the file says.
    assert!(tok.add_bos() && !tok.add_space_prefix());
    assert_eq!(tok.encode("ab ab", false).unwrap(), vec![id("ab"), id("▁ab")]);
    // "\n\n" is one token; "\n\n\n" is not, so it goes through the (absent) merges: three "\n".
    assert_eq!(tok.encode("ab\n\nab", false).unwrap(), vec![id("ab"), id("\n\n"), id("ab")]);
    assert_eq!(tok.encode("\n\n\n", false).unwrap(), vec![id("\n"); 3]);
    let ids = tok.encode_prompt("é ab").unwrap();
    assert_eq!(ids, vec![2, 3 + 0xC3, 3 + 0xA9, id("▁ab")]);
    assert_eq!(tok.decode(&ids), "<bos>é ab");
}

#[test]
fn end_of_generation_texts_are_control_tokens() {
    // A user-defined "<|im_end|>" is treated as a control token, as llama.cpp does.
    let mut v = tiny_vocab("smollm", &["ab", "<|im_end|>"], &["a b"]);
    let im_end = v.tokens.len() as u32 - 1;
    v.token_types[im_end as usize] = TOKEN_USER_DEFINED;
    let tok = Tokenizer::from_gguf_vocab(v).unwrap();
    assert!(tok.is_special(im_end));
    assert_eq!(tok.encode("<|im_end|>", true).unwrap(), vec![im_end]);
    assert_ne!(tok.encode("<|im_end|>", false).unwrap(), vec![im_end]);
    assert_eq!(tok.eog_ids(), vec![0, im_end]);
}

// ---------------------------------------------------------------- tokenizer.json

#[test]
fn hf_tokenizer_json_route() {
    let dir = std::env::temp_dir().join(format!("wgkv-text-hf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let vocab = ["<|im_start|>", "<|im_end|>", "h", "e", "l", "o", "Ġ", "w", "r", "d", "he", "ll", "hell", "hello", "Ġw", "or", "Ġwor", "ld", "Ġworld"];
    let vocab_json: serde_json::Map<String, serde_json::Value> = vocab.iter().enumerate().map(|(i, t)| (t.to_string(), serde_json::json!(i))).collect();
    let added = |id: u32, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                           "rstrip": false, "normalized": false, "special": true})
    };
    let tokenizer_json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [added(0, "<|im_start|>"), added(1, "<|im_end|>")],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "vocab": vocab_json,
                  "merges": ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld"]}
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json.to_string()).unwrap();
    let config = serde_json::json!({
        "bos_token": "<|im_start|>",
        "eos_token": {"content": "<|im_end|>"},
        "add_bos_token": true,
        "chat_template": SMOLLM_TEMPLATE,
    });
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();

    let tok = Tokenizer::from_hf_dir(&dir).unwrap();
    assert_eq!(tok.vocab_size(), vocab.len());
    assert_eq!(tok.encode("hello world", true).unwrap(), vec![13, 18]);
    // Merge order: "h e" before "l d".
    assert_eq!(tok.encode("held", true).unwrap(), vec![10, 17]);
    assert_eq!(tok.encode("<|im_start|>hello<|im_end|>", true).unwrap(), vec![0, 13, 1]);
    assert_ne!(tok.encode("<|im_start|>", false).unwrap(), vec![0]);
    assert_eq!(tok.decode(&[0, 13, 18, 1]), "<|im_start|>hello world<|im_end|>");
    assert_eq!((tok.bos(), tok.eos()), (Some(0), Some(1)));
    assert!(tok.add_bos());
    assert_eq!(tok.encode_prompt("hello").unwrap(), vec![0, 13]);
    assert_eq!(tok.encode_prompt("<|im_start|>hello").unwrap(), vec![0, 13]);
    assert_eq!(tok.eog_ids(), vec![1]);
    assert_eq!(tok.chat_template(), Some(SMOLLM_TEMPLATE));

    // A missing file is one clear line naming it.
    let e = Tokenizer::from_hf_dir(&dir.join("absent")).err().unwrap().to_string();
    assert!(e.contains("tokenizer.json") && !e.contains('\n'), "{e}");
    std::fs::write(dir.join("tokenizer.json"), "{not json").unwrap();
    let e = Tokenizer::from_hf_dir(&dir).err().unwrap().to_string();
    assert!(e.contains("tokenizer.json") && !e.contains('\n'), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------- chat templates

#[test]
fn smollm_template_default_system_and_suffix() {
    let t = ChatTemplate::new(SMOLLM_TEMPLATE, "<|im_start|>", "<|im_end|>").unwrap();
    let got = t.render(&[Message::new("user", "Hi")], true).unwrap();
    assert_eq!(got, format!("{SMOLLM_SYSTEM}<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
    assert_eq!(t.render(&[], true).unwrap(), "<|im_start|>assistant\n");

    let before = vec![Message::new("user", "Hi"), Message::new("assistant", "Hello!")];
    let mut after = before.clone();
    after.push(Message::new("user", "How are you?"));
    let suffix = t.render_suffix(&before, &after, true).unwrap();
    assert_eq!(suffix, "<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n");
    assert_eq!(t.render(&before, false).unwrap() + &suffix, t.render(&after, true).unwrap());
}

#[test]
fn render_suffix_refuses_rewritten_history() {
    // Renders only the last message: history is not a prefix.
    let t = ChatTemplate::new("{{ messages[-1]['content'] }}", "", "").unwrap();
    let before = [Message::new("user", "one")];
    let after = [Message::new("user", "one"), Message::new("user", "two")];
    let e = t.render_suffix(&before, &after, false).err().unwrap().to_string();
    assert!(e.contains("re-fed") && !e.contains('\n'), "{e}");
}

const LLAMA3_TEMPLATE: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

const MISTRAL_TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

#[test]
fn llama3_and_mistral_templates() {
    let t = ChatTemplate::new(LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>").unwrap();
    let msgs = [Message::new("system", "Be nice."), Message::new("user", "  Hi there \n")];
    assert_eq!(
        t.render(&msgs, true).unwrap(),
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe nice.<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );

    let t = ChatTemplate::new(MISTRAL_TEMPLATE, "<s>", "</s>").unwrap();
    let msgs = [Message::new("user", "Hi"), Message::new("assistant", "Hello"), Message::new("user", "Bye")];
    assert_eq!(t.render(&msgs, true).unwrap(), "<s>[INST] Hi [/INST]Hello</s>[INST] Bye [/INST]");
    // raise_exception surfaces the template's own message, on one line.
    let e = t.render(&[Message::new("assistant", "x")], true).err().unwrap().to_string();
    assert!(e.contains("Conversation roles must alternate") && !e.contains('\n'), "{e}");
    let e = t.render(&[Message::new("system", "x")], true).err().unwrap().to_string();
    assert!(e.contains("must alternate"), "{e}");
}

#[test]
fn template_whitespace_control_and_python_methods() {
    // trim_blocks / lstrip_blocks as in Hugging Face's renderer.
    let src = "{% for m in messages %}\n    {% if m.role == 'user' %}\nU:{{ m.content.strip() }}|\n    {% endif %}\n{% endfor %}";
    let t = ChatTemplate::new(src, "", "").unwrap();
    assert_eq!(t.render(&[Message::new("user", "  a  ")], false).unwrap(), "U:a|\n");

    let src = "{{ messages[0].content.startswith('/x') }} {{ messages[0].content.split(' ') | length }} \
               {{ messages[0].content.upper() }} {{ messages[0].content.replace('x', 'y') }} \
               {% for k, v in messages[0].items() %}{{ k }}={{ v }};{% endfor %} {{ messages[0].get('nope', 'dflt') }} \
               {{ 'a-b-c'.split('-', 1) | join('+') }} {{ '  q  '.rstrip() }}!";
    let t = ChatTemplate::new(src, "", "").unwrap();
    assert_eq!(t.render(&[Message::new("user", "/x a b")], false).unwrap(), "True 3 /X A B /y a b role=user;content=/x a b; dflt a+b-c   q!");
}

#[test]
fn bad_templates_are_one_line_errors() {
    for src in ["{% for m in %}", "{{ messages[0] ", "{% if x %}no end", "{% endfor %}"] {
        let e = ChatTemplate::new(src, "", "").err().expect(src).to_string();
        assert!(e.starts_with("chat template") && !e.contains('\n'), "{src}: {e}");
    }
    // Errors while rendering: calling something undefined.
    let t = ChatTemplate::new("{{ nope() }}", "", "").unwrap();
    let e = t.render(&[], false).err().unwrap().to_string();
    assert!(e.starts_with("chat template failed") && !e.contains('\n'), "{e}");
    let t = ChatTemplate::new("{{ 'x'.frobnicate() }}", "", "").unwrap();
    assert!(t.render(&[], false).is_err());
}

#[test]
fn template_sees_tools_as_none() {
    let src = "{% if tools is not none %}T{% endif %}{% if tools is defined %}D{% endif %}{{ messages | length }}";
    let t = ChatTemplate::new(src, "", "").unwrap();
    assert_eq!(t.render(&[Message::new("user", "x")], false).unwrap(), "D1");
}
