// quest_select: the pages each selection unit attends this decode step, as
// Quest's kernel path chooses them. With n_pages = ceil(kv_len / PAGE):
// - n_pages <= budget_pages: every page, list[u] = 0, 1, .., n_pages - 1;
// - else the budget_pages - 1 full pages of highest score (ties go to the
//   lower page index), in rank order, then the last (current) page
//   n_pages - 1: list[u] = top pages.., n_pages - 1.
// A page's rank is the number of full pages ahead of it (higher score, or
// equal score and lower index); ranks are distinct, so exactly
// budget_pages - 1 pages are listed, deterministically, with no sort. The
// count of listed pages is min(n_pages, budget_pages) (attn_decode_pages
// derives it the same way).
//
// Layout: score [n_units][max_pages] f32; list [n_units][budget_pages] u32.
// Bindings: score (read), list (read_write), params, step (ops::Step).
// Scores compare as score_key orders them (f32 order; -0 below +0, as the
// reference's total order). ops::quest picks quest_select_radix instead
// when at most ops::quest::RADIX_KEEP full pages are kept.
// Prelude consts: WG, PAGE. Fragment: score_key.
// Grid: (ceil(max_pages / WG), n_units, 1): one invocation per page, which
// counts its rank over the full pages and stops once it reaches keep (the
// page is not listed then). At most max_pages - 1 loop iterations: llvmpipe
// stops an invocation's loops after 65535 in all, so QuestShape::new bounds
// max_pages.

struct Params { max_seq: u32, max_pages: u32, budget_pages: u32, _p0: u32 }

@group(0) @binding(0) var<storage, read> score: array<f32>;
@group(0) @binding(1) var<storage, read_write> list: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;
@group(0) @binding(3) var<uniform> step: Step;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let u = gid.y;
    let i = gid.x;
    let kv_len = min(step.kv_len, p.max_seq);
    let n_pages = (kv_len + PAGE - 1u) / PAGE;
    let base = u * p.budget_pages;
    if (n_pages <= p.budget_pages) {
        if (i < n_pages) {
            list[base + i] = i;
        }
        return;
    }
    let n_full = n_pages - 1u;
    let keep = p.budget_pages - 1u;
    if (i == n_full) {
        list[base + keep] = n_full; // the current page, always attended
    }
    if (i >= n_full) {
        return;
    }
    let sb = u * p.max_pages;
    let si = score_key(score[sb + i]);
    var rank = 0u;
    for (var j = 0u; j < n_full; j++) {
        let sj = score_key(score[sb + j]);
        rank += select(0u, 1u, sj > si || (sj == si && j < i));
        if (rank >= keep) {
            break; // not listed: most pages stop after about keep * ln(n / keep) steps
        }
    }
    if (rank < keep) {
        list[base + rank] = i;
    }
}
