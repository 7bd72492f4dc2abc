// radix_select (a fragment): the keep-th largest of n u32 keys, found by a
// workgroup of 256 invocations in four passes over 8-bit digits (most
// significant first): each pass counts, in a shared histogram, the keys that
// match the digits found so far, and the invocation 0 walks the histogram
// from the top to the digit where the count reaches what is still needed.
// The including kernel defines `fn select_key(i: u32) -> u32`; keys
// compare as unsigned integers (the score_key fragment, included before
// this one, orders f32 scores that way).
// Each invocation walks ceil(n / 256) keys per pass.

var<workgroup> rs_hist: array<atomic<u32>, 256>;
var<workgroup> rs_digit: u32;
var<workgroup> rs_need: u32;

// (T, need) for 1 <= keep <= n: T is the keep-th largest key and need =
// keep - #(keys > T) >= 1 of the keys equal to T complete the top keep.
// Call from uniform control flow with uniform n and keep.
fn radix_select(lid: u32, n: u32, keep: u32) -> vec2<u32> {
    var prefix = 0u;
    var need = keep;
    for (var round = 0u; round < 4u; round++) {
        let shift = 24u - 8u * round;
        let mask = select(0u, 0xffffffffu << (shift + 8u), round > 0u);
        atomicStore(&rs_hist[lid], 0u);
        workgroupBarrier();
        for (var i = lid; i < n; i += 256u) {
            let k = select_key(i);
            if ((k & mask) == prefix) {
                atomicAdd(&rs_hist[(k >> shift) & 255u], 1u);
            }
        }
        workgroupBarrier();
        if (lid == 0u) {
            var above = 0u;
            var d = 255u;
            loop {
                let c = atomicLoad(&rs_hist[d]);
                if (above + c >= need || d == 0u) {
                    break;
                }
                above += c;
                d -= 1u;
            }
            rs_digit = d;
            rs_need = need - above;
        }
        let digit = workgroupUniformLoad(&rs_digit);
        need = workgroupUniformLoad(&rs_need);
        prefix |= digit << shift;
    }
    return vec2<u32>(prefix, need);
}
