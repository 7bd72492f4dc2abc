// quest_select_radix: quest_select's page lists (same layout, same rule,
// same order, ties to the lower page), for keep = budget_pages - 1 <= CAP,
// by one workgroup of 256 per unit instead of one invocation per page.
// quest_select counts every page's rank against the others, so its work
// grows as pages x keep; here the keep-th best full page is found first
// (radix_select over the scores, then over the tied pages' indices: T and
// the last tied page kept), the keep pages at or above it are gathered in
// workgroup memory, and each counts its rank among those keep alone.
// Scores compare as score_key orders them (f32 order; -0 below +0, as the
// reference's total order).
//
// Layout: score [n_units][max_pages] f32; list [n_units][budget_pages] u32.
// Bindings: score (read), list (read_write), params, step (ops::Step).
// Prelude consts: PAGE. Fragments: score_key, radix_select. Workgroup size 256.
// Grid: (1, n_units, 1). Each invocation walks 8 * ceil(n_full / 256) keys
// in the two selections (its lane 0 eight loops of up to 256), one more
// pass to gather, and ceil(keep / 256) * keep ranks: under llvmpipe's 65535
// loop iterations for CAP = 3072 and n_full < ops::quest::MAX_PAGES.

struct Params { max_seq: u32, max_pages: u32, budget_pages: u32, _p0: u32 }

@group(0) @binding(0) var<storage, read> score: array<f32>;
@group(0) @binding(1) var<storage, read_write> list: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<uniform> step: Step;

const CAP: u32 = 3072u;
var<workgroup> chosen: array<u32, CAP>;
var<workgroup> n_chosen: atomic<u32>;

var<private> sb: u32;
// false: rank pages by score; true: rank the pages whose key is `tie` by
// index, lower first (every other page keys 0, below them).
var<private> by_index: bool;
var<private> tie: u32;

fn select_key(i: u32) -> u32 {
    let k = score_key(score[sb + i]);
    if (!by_index) {
        return k;
    }
    return select(0u, 0xffffffffu - i, k == tie);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let lid = lid3.x;
    let u = wid.y;
    let kv_len = min(step.kv_len, p.max_seq);
    let n_pages = (kv_len + PAGE - 1u) / PAGE;
    let base = u * p.budget_pages;
    if (n_pages <= p.budget_pages) {
        for (var i = lid; i < n_pages; i += 256u) {
            list[base + i] = i;
        }
        return;
    }
    let n_full = n_pages - 1u;
    let keep = p.budget_pages - 1u;
    if (lid == 0u) {
        list[base + keep] = n_full; // the current page, always attended
    }
    if (keep == 0u) {
        return;
    }
    sb = u * p.max_pages;
    by_index = false;
    let t = radix_select(lid, n_full, keep);
    tie = t.x;
    by_index = true;
    let cut = 0xffffffffu - radix_select(lid, n_full, t.y).x;
    if (lid == 0u) {
        atomicStore(&n_chosen, 0u);
    }
    workgroupBarrier();
    for (var i = lid; i < n_full; i += 256u) {
        let k = score_key(score[sb + i]);
        if (k > tie || (k == tie && i <= cut)) {
            chosen[atomicAdd(&n_chosen, 1u)] = i;
        }
    }
    workgroupBarrier();
    for (var e = lid; e < keep; e += 256u) {
        let i = chosen[e];
        let k = score_key(score[sb + i]);
        var rank = 0u;
        for (var f = 0u; f < keep; f++) {
            let j = chosen[f];
            let kj = score_key(score[sb + j]);
            rank += select(0u, 1u, kj > k || (kj == k && j < i));
        }
        list[base + rank] = i;
    }
}
