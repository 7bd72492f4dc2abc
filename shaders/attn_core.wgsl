// The attention core every attention kernel includes: the neutral score and
// the online-softmax update (Milakov & Gimelshein), written once.

// Stand-in for -inf: exp(NEG - m) == 0 and max() stays free of NaN.
const NEG: f32 = -1.0e30;

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
