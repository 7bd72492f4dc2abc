// score_key (a fragment): a u32 that orders like the f32 `s` (NaN lowest;
// -0 below +0, as Rust's total_cmp), so scores compare, and radix_select
// selects them, as unsigned integers.
fn score_key(s: f32) -> u32 {
    let b = bitcast<u32>(s);
    if ((b & 0x7fffffffu) > 0x7f800000u) {
        return 0u;
    }
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}
