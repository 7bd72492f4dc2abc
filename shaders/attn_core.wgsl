// The attention core every attention kernel includes: the neutral score, the
// score's softcap, the slots a query sees, and the online-softmax update
// (Milakov & Gimelshein), written once.
//
// Per-pipeline options (prelude constants; kernels.rs writes 0, off, for a
// spec that does not set them, so these branches fold away):
//   SOFTCAP: f32, the logit softcap c (Gemma 2): a scaled score s becomes
//     c * tanh(s / c); 0 = none.
//   WINDOW: u32, the sliding window W (Mistral, Gemma 3): the query at slot
//     `at` sees the W most recent slots, its own included:
//     at - W < j <= at; 0 = none (causal only). Slots are positions in
//     order within a call's cache, so this is the position window.

// Stand-in for -inf: exp(NEG - m) == 0 and max() stays free of NaN.
const NEG: f32 = -1.0e30;

// The score the softmax takes for a scaled dot product `s` (scale * q . K).
// Mask after this, not before: a capped NEG would be -c, not -inf.
fn attn_score(s: f32) -> f32 {
    if (SOFTCAP > 0.0) {
        // tanh is +-1 in f32 once |x| > 9.1; the clamp keeps implementations
        // that build tanh from exp (inf / inf past |x| ~ 44) finite.
        return SOFTCAP * tanh(clamp(s / SOFTCAP, -10.0, 10.0));
    }
    return s;
}

// The first slot the query at slot `at` sees (0 without a window, or while
// the window reaches back past slot 0).
fn attn_window_lo(at: u32) -> u32 {
    return select(0u, at + 1u - WINDOW, WINDOW > 0u && at >= WINDOW);
}

// Whether the query at slot `at` sees slot `j`: causal and inside the window.
fn attn_sees(at: u32, j: u32) -> bool {
    return j <= at && j >= attn_window_lo(at);
}

// A running (max m, sum l of exp(s - m)) taking a block whose largest score
// is `s_max`: the new max and the factor `alpha` that rescales everything
// accumulated under the old one.
fn softmax_rescale(m: f32, s_max: f32) -> vec2<f32> {
    let m_new = max(m, s_max);
    return vec2<f32>(m_new, exp(m - m_new));
}

// One more score `s` (ignored unless `live`): the new max and sum, `alpha`
// for the accumulated values and `p`, the weight of the new row.
struct Online { m: f32, l: f32, alpha: f32, p: f32 }

fn online_push(m: f32, l: f32, s: f32, live: bool) -> Online {
    let r = softmax_rescale(m, s);
    let p = select(0.0, exp(s - r.x), live);
    return Online(r.x, l * r.y + p, r.y, p);
}
