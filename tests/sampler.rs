//! Sampler: distributions against softmax, the cut-offs of top-k / top-p /
//! min-p, the repetition penalty, greedy ties, and seed determinism.

use std::collections::HashMap;
use wgkv::sampler::{Candidate, Sampler, SamplerConfig};

const DRAWS: usize = 20_000;
/// Allowed deviation of an observed frequency, in binomial standard errors
/// (5 sigma: a fixed seed makes the test deterministic, 5 keeps it robust to
/// an RNG change without hiding real errors, which are many sigma off).
const SIGMAS: f64 = 5.0;

/// Ids unrelated to positions, so an index/id mix-up shows.
fn id(i: usize) -> u32 {
    1000 + 37 * i as u32
}

fn cands(logits: &[f32]) -> Vec<Candidate> {
    logits.iter().enumerate().map(|(i, &logit)| Candidate { id: id(i), logit }).collect()
}

/// Only the given knobs; everything else off.
fn cfg(temperature: f32, top_k: usize, top_p: f32, min_p: f32, seed: u64) -> SamplerConfig {
    SamplerConfig { temperature, top_k, top_p, min_p, repeat_penalty: 1.0, repeat_last_n: 64, seed }
}

fn softmax(logits: &[f32], t: f64) -> Vec<f64> {
    let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = logits.iter().map(|&l| ((l as f64 - m) / t).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

fn counts(s: &mut Sampler, c: &[Candidate], n: usize) -> HashMap<u32, usize> {
    let mut h = HashMap::new();
    for _ in 0..n {
        *h.entry(s.sample(c)).or_insert(0) += 1;
    }
    h
}

/// Observed frequencies of id(i) match `probs[i]`; ids with p = 0 never drawn.
fn assert_matches(what: &str, h: &HashMap<u32, usize>, probs: &[f64]) {
    let n = h.values().sum::<usize>() as f64;
    for (i, &p) in probs.iter().enumerate() {
        let got = *h.get(&id(i)).unwrap_or(&0) as f64 / n;
        if p == 0.0 {
            assert_eq!(got, 0.0, "{what}: token {i} has p=0 but was drawn");
            continue;
        }
        let se = (p * (1.0 - p) / n).sqrt();
        assert!((got - p).abs() <= SIGMAS * se + 1e-12, "{what}: token {i} freq {got:.4}, want {p:.4} (±{:.4})", SIGMAS * se);
    }
    for k in h.keys() {
        assert!((0..probs.len()).any(|i| id(i) == *k), "{what}: drew unknown id {k}");
    }
}

/// `probs` restricted to the first `keep` tokens, renormalised.
fn truncated(probs: &[f64], keep: usize) -> Vec<f64> {
    let s: f64 = probs[..keep].iter().sum();
    probs.iter().enumerate().map(|(i, p)| if i < keep { p / s } else { 0.0 }).collect()
}

const LOGITS: [f32; 6] = [2.0, 1.0, 0.5, 0.0, -1.0, -3.0];

#[test]
fn draws_match_softmax() {
    let mut s = Sampler::new(cfg(1.0, 0, 1.0, 0.0, 7));
    let h = counts(&mut s, &cands(&LOGITS), DRAWS);
    assert_matches("T=1", &h, &softmax(&LOGITS, 1.0));
}

#[test]
fn temperature_sharpens_and_flattens() {
    let c = cands(&LOGITS);
    let mut top = Vec::new();
    for t in [0.5f32, 1.0, 2.0] {
        let mut s = Sampler::new(cfg(t, 0, 1.0, 0.0, 11));
        let h = counts(&mut s, &c, DRAWS);
        assert_matches(&format!("T={t}"), &h, &softmax(&LOGITS, t as f64));
        top.push(h[&id(0)]);
    }
    assert!(top[0] > top[1] && top[1] > top[2], "top token share should fall as T rises: {top:?}");
}

#[test]
fn unsorted_candidates_are_fine() {
    let mut c = cands(&LOGITS);
    c.reverse();
    c.swap(1, 4);
    let mut s = Sampler::new(cfg(1.0, 3, 1.0, 0.0, 3));
    let h = counts(&mut s, &c, DRAWS);
    assert_matches("top_k=3 on unsorted input", &h, &truncated(&softmax(&LOGITS, 1.0), 3));
}

#[test]
fn top_k_cuts() {
    let c = cands(&LOGITS);
    let p = softmax(&LOGITS, 1.0);
    for k in [1, 2, 4, 6, 100] {
        let mut s = Sampler::new(cfg(1.0, k, 1.0, 0.0, 5));
        let h = counts(&mut s, &c, DRAWS);
        assert_matches(&format!("top_k={k}"), &h, &truncated(&p, k.min(6)));
    }
    // top_k = 1 is greedy whatever the temperature.
    let mut s = Sampler::new(cfg(50.0, 1, 1.0, 0.0, 5));
    assert!((0..1000).all(|_| s.sample(&c) == id(0)));
}

/// Logits whose temperature-1 probabilities are exactly `p`.
fn logits_for(p: &[f64]) -> Vec<f32> {
    p.iter().map(|x| x.ln() as f32).collect()
}

#[test]
fn top_p_cuts() {
    let p = [0.4, 0.3, 0.2, 0.1];
    let c = cands(&logits_for(&p));
    // (top_p, tokens kept): smallest prefix whose mass reaches top_p, at least one.
    for (top_p, keep) in [(0.05f32, 1), (0.4 - 1e-4, 1), (0.65, 2), (0.85, 3), (0.95, 4), (1.0, 4)] {
        let mut s = Sampler::new(cfg(1.0, 0, top_p, 0.0, 9));
        let h = counts(&mut s, &c, DRAWS);
        assert_matches(&format!("top_p={top_p}"), &h, &truncated(&p, keep));
    }
}

#[test]
fn top_p_and_min_p_ignore_temperature() {
    // llama.cpp order: the cut-offs see T=1 probabilities, temperature then
    // reshapes the survivors. At T=4 the T=1 cut (2 tokens) must not widen.
    let p = [0.4, 0.3, 0.2, 0.1];
    let l = logits_for(&p);
    let c = cands(&l);
    let want = truncated(&softmax(&l, 4.0), 2);
    let mut s = Sampler::new(cfg(4.0, 0, 0.65, 0.0, 13));
    assert_matches("top_p=0.65 at T=4", &counts(&mut s, &c, DRAWS), &want);
    let mut s = Sampler::new(cfg(4.0, 0, 1.0, 0.6, 13)); // cut at 0.24: keeps 0.4, 0.3
    assert_matches("min_p=0.6 at T=4", &counts(&mut s, &c, DRAWS), &want);
}

#[test]
fn min_p_cuts() {
    let p = [0.5, 0.25, 0.15, 0.1];
    let c = cands(&logits_for(&p));
    // Drop tokens with p < min_p * 0.5.
    for (min_p, keep) in [(0.0f32, 4), (0.19, 4), (0.25, 3), (0.45, 2), (0.55, 1), (1.0, 1)] {
        let mut s = Sampler::new(cfg(1.0, 0, 1.0, min_p, 17));
        let h = counts(&mut s, &c, DRAWS);
        assert_matches(&format!("min_p={min_p}"), &h, &truncated(&p, keep));
    }
}

#[test]
fn chain_applies_top_k_then_top_p_then_min_p() {
    // top_k=4 keeps .32 .24 .16 .12 (renormalised: .38 .29 .19 .14); top_p
    // then needs 3 of them to reach 0.85; min_p=0.6 (cut .23) then keeps 2.
    let p6 = [0.32, 0.24, 0.16, 0.08, 0.12, 0.08];
    let mut l = logits_for(&p6);
    l.swap(3, 4); // so the sorted order is 0.32, 0.24, 0.16, 0.12, 0.08, 0.08
    let c = cands(&l);
    let sorted = [0.32, 0.24, 0.16, 0.12];
    let mut s = Sampler::new(cfg(1.0, 4, 0.85, 0.0, 19));
    let h = counts(&mut s, &c, DRAWS);
    assert_matches("top_k=4 + top_p=0.85", &h, &truncated(&[sorted[0], sorted[1], sorted[2], 0.0, 0.0, 0.0], 3));
    let mut s = Sampler::new(cfg(1.0, 4, 0.85, 0.6, 19));
    let h = counts(&mut s, &c, DRAWS);
    assert_matches("top_k=4 + top_p=0.85 + min_p=0.6", &h, &truncated(&[sorted[0], sorted[1], 0.0, 0.0, 0.0, 0.0], 2));
}

fn penalised(repeat_penalty: f32, repeat_last_n: usize) -> Sampler {
    Sampler::new(SamplerConfig { repeat_penalty, repeat_last_n, ..SamplerConfig::greedy() })
}

#[test]
fn repeat_penalty_positive_logits_are_divided() {
    let c = cands(&[2.0, 1.9, -1.0]);
    let mut s = penalised(2.0, 64);
    assert_eq!(s.sample(&c), id(0));
    s.accept(id(0)); // 2.0 -> 1.0, below 1.9
    assert_eq!(s.sample(&c), id(1));
    s.accept(id(1)); // 1.9 -> 0.95, still below 1.0
    assert_eq!(s.sample(&c), id(0));
}

#[test]
fn repeat_penalty_negative_logits_are_multiplied() {
    let c = cands(&[-1.0, -1.5]);
    let mut s = penalised(2.0, 64);
    s.accept(id(0)); // -1.0 -> -2.0: now below -1.5 (dividing would have raised it)
    assert_eq!(s.sample(&c), id(1));
    // Zero counts as non-positive: 0 * 2 = 0, no change.
    let z = cands(&[0.0, -0.1]);
    let mut s = penalised(2.0, 64);
    s.accept(id(0));
    assert_eq!(s.sample(&z), id(0));
}

#[test]
fn repeat_penalty_once_per_token_and_window() {
    let c = cands(&[2.0, 0.9, 0.0, -5.0]);
    let mut s = penalised(2.0, 2);
    s.accept(id(0));
    s.accept(id(0)); // twice: still 2.0 / 2 = 1.0 (not 0.5), above 0.9
    assert_eq!(s.sample(&c), id(0));
    let mut s = penalised(3.0, 2);
    s.accept(id(0));
    assert_eq!(s.sample(&c), id(1)); // 2/3 < 0.9
    s.accept(id(2));
    s.accept(id(3)); // id(0) left the 2-token window
    assert_eq!(s.sample(&c), id(0));
    // repeat_last_n = 0 or penalty 1 disable it.
    for mut s in [penalised(3.0, 0), penalised(1.0, 64)] {
        s.accept(id(0));
        assert_eq!(s.sample(&c), id(0));
    }
    // reset clears the window.
    let mut s = penalised(3.0, 64);
    s.accept(id(0));
    s.reset();
    assert_eq!(s.sample(&c), id(0));
}

#[test]
fn repeat_penalty_shifts_the_distribution() {
    let logits = [1.0f32, 0.5, -0.5, -1.0];
    let c = cands(&logits);
    let mut s = Sampler::new(SamplerConfig { repeat_penalty: 1.5, ..cfg(1.0, 0, 1.0, 0.0, 23) });
    s.accept(id(0));
    s.accept(id(2));
    let want = softmax(&[1.0 / 1.5, 0.5, -0.5 * 1.5, -1.0], 1.0);
    assert_matches("penalty 1.5", &counts(&mut s, &c, DRAWS), &want);
}

#[test]
fn greedy_takes_argmax_with_ties_to_smaller_id() {
    let mut s = Sampler::new(SamplerConfig::greedy());
    assert!(s.is_greedy());
    assert!(Sampler::new(cfg(-1.0, 40, 0.95, 0.05, 1)).is_greedy());
    assert!(!Sampler::new(cfg(0.01, 40, 0.95, 0.05, 1)).is_greedy());
    let tie = [Candidate { id: 9, logit: 3.0 }, Candidate { id: 3, logit: 3.0 }, Candidate { id: 1, logit: 2.0 }];
    assert_eq!(s.sample(&tie), 3);
    let mut rev = tie;
    rev.reverse();
    assert_eq!(s.sample(&rev), 3);
    assert_eq!(s.sample(&cands(&LOGITS)), id(0));
    // top_k=1 with equal logits breaks the tie the same way.
    let mut s1 = Sampler::new(cfg(1.0, 1, 1.0, 0.0, 1));
    assert_eq!(s1.sample(&tie), 3);
}

#[test]
fn odd_inputs_do_not_panic() {
    let mut s = Sampler::new(cfg(1.0, 0, 1.0, 0.0, 29));
    let nan = [Candidate { id: 5, logit: f32::NAN }, Candidate { id: 6, logit: 0.0 }, Candidate { id: 7, logit: f32::NEG_INFINITY }];
    assert!((0..1000).all(|_| s.sample(&nan) == 6), "NaN / -inf logits must never be drawn");
    let all_neg_inf = [Candidate { id: 4, logit: f32::NEG_INFINITY }, Candidate { id: 2, logit: f32::NEG_INFINITY }];
    assert_eq!(s.sample(&all_neg_inf), 2);
    assert_eq!(s.sample(&[]), 0);
    let mut tiny = Sampler::new(cfg(1e-30, 0, 1.0, 0.0, 29));
    assert_eq!(tiny.sample(&cands(&LOGITS)), id(0));
    let mut huge = Sampler::new(cfg(1e30, 0, 1.0, 0.0, 29));
    assert_matches("T=1e30 is uniform", &counts(&mut huge, &cands(&LOGITS), DRAWS), &[1.0 / 6.0; 6]);
}

#[test]
fn same_seed_same_sequence() {
    let c = cands(&LOGITS);
    let run = |seed: u64| {
        let mut s = Sampler::new(cfg(1.0, 0, 1.0, 0.0, seed));
        (0..300).map(|_| s.sample(&c)).collect::<Vec<_>>()
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
    // reset replays from the seed.
    let mut s = Sampler::new(cfg(1.0, 0, 1.0, 0.0, 42));
    let first: Vec<u32> = (0..300).map(|_| s.sample(&c)).collect();
    s.reset();
    let again: Vec<u32> = (0..300).map(|_| s.sample(&c)).collect();
    assert_eq!(first, again);
    assert_eq!(first, run(42));
}

#[test]
fn defaults_and_candidates_needed() {
    let d = SamplerConfig::default();
    assert_eq!((d.temperature, d.top_k, d.top_p, d.min_p, d.repeat_penalty, d.repeat_last_n), (0.8, 40, 0.95, 0.05, 1.0, 64));
    assert!(d.validate().is_ok());
    assert_eq!(Sampler::new(d.clone()).candidates_needed(), 64);
    assert_eq!(Sampler::new(SamplerConfig { top_k: 100, ..d.clone() }).candidates_needed(), 100);
    assert_eq!(Sampler::new(SamplerConfig { top_k: 0, ..d.clone() }).candidates_needed(), 64);
    assert_eq!(Sampler::new(SamplerConfig::greedy()).candidates_needed(), 1);
    // A penalty can demote the argmax, so greedy then needs the wider list.
    assert_eq!(penalised(1.3, 64).candidates_needed(), 64);
    for s in [penalised(1.3, 64), Sampler::new(d.clone())] {
        assert!(s.candidates_needed() >= s.config().top_k);
    }
}

#[test]
fn validate_names_the_flag() {
    let d = SamplerConfig::default();
    let err = |c: SamplerConfig| c.validate().unwrap_err().to_string();
    assert!(err(SamplerConfig { top_p: 0.0, ..d.clone() }).contains("--top-p"));
    assert!(err(SamplerConfig { top_p: 1.5, ..d.clone() }).contains("--top-p"));
    assert!(err(SamplerConfig { min_p: -0.1, ..d.clone() }).contains("--min-p"));
    assert!(err(SamplerConfig { repeat_penalty: 0.0, ..d.clone() }).contains("--repeat-penalty"));
    assert!(err(SamplerConfig { temperature: f32::NAN, ..d.clone() }).contains("--temp"));
    assert!(SamplerConfig { temperature: 0.0, ..d }.validate().is_ok());
}

/// `--ignore-eos`: banned ids are never drawn, greedy or sampled, and the
/// rest keep their softmax shares among themselves.
#[test]
fn banned_ids_are_never_drawn() {
    let logits = [3.0f32, 2.0, 1.0, 0.5];
    let c = cands(&logits);
    let mut greedy = Sampler::new(cfg(0.0, 0, 1.0, 0.0, 1));
    greedy.ban(&[id(0)]);
    assert!(greedy.candidates_needed() > 1, "a ban needs more than the argmax");
    assert_eq!(greedy.sample(&c), id(1));
    let mut s = Sampler::new(cfg(1.0, 0, 1.0, 0.0, 7));
    s.ban(&[id(0), id(2)]);
    let rest = softmax(&[2.0, 0.5], 1.0);
    assert_matches("banned", &counts(&mut s, &c, DRAWS), &[0.0, rest[0], 0.0, rest[1]]);
}

/// `--top-k 0` asks for every logit; a limit, or greedy, does not.
#[test]
fn top_k_zero_wants_every_logit() {
    assert!(Sampler::new(cfg(0.8, 0, 0.95, 0.05, 1)).wants_every_logit());
    assert!(!Sampler::new(cfg(0.8, 40, 0.95, 0.05, 1)).wants_every_logit());
    assert!(!Sampler::new(cfg(0.0, 0, 0.95, 0.05, 1)).wants_every_logit());
}

/// `generate::choose_from` (a batched decode step's draw from read-back
/// logits) takes the candidates `choose` reads from the GPU: the argmax for
/// greedy (the smallest id among ties), the 64 largest logits for top-k
/// sampling, every logit without top-k; the same seed then draws the same ids.
#[test]
fn choose_from_logits_takes_the_candidates_the_gpu_would_send() {
    use wgkv::generate::choose_from;
    let logits: Vec<f32> = (0..1000).map(|i| ((i * 7919 % 1009) as f32 / 100.0).sin() * 4.0).collect();
    let mut tied = logits.clone();
    tied[17] = 9.0;
    tied[500] = 9.0;
    assert_eq!(choose_from(&mut Sampler::new(SamplerConfig::greedy()), &tied), 17);
    let all: Vec<Candidate> = logits.iter().enumerate().map(|(i, &logit)| Candidate { id: i as u32, logit }).collect();
    let mut top = all.clone();
    top.sort_by(|a, b| b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id)));
    top.truncate(wgkv::model::TOPK);
    for (cfg, list) in [
        (SamplerConfig { temperature: 1.5, top_k: 50, top_p: 1.0, min_p: 0.0, seed: 7, ..SamplerConfig::default() }, &top),
        (SamplerConfig { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, seed: 8, ..SamplerConfig::default() }, &all),
    ] {
        let (mut a, mut b) = (Sampler::new(cfg.clone()), Sampler::new(cfg.clone()));
        let drawn: Vec<u32> = (0..200).map(|_| choose_from(&mut a, &logits)).collect();
        let want: Vec<u32> = (0..200).map(|_| b.sample(list)).collect();
        assert_eq!(drawn, want, "{cfg:?}");
        if cfg.top_k > 0 {
            assert!(drawn.iter().all(|id| top.iter().any(|c| c.id == *id)), "a draw outside the top {}", wgkv::model::TOPK);
        }
    }
}
