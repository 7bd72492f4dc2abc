// geglu: out[i] = gelu(gate[i]) * up[i] for i < n, GELU's tanh approximation
// (Gemma's gelu_pytorch_tanh, llama.cpp's ggml_gelu):
//   gelu(g) = 0.5 g (1 + tanh(u)),  u = sqrt(2/pi) (g + 0.044715 g^3)
//           = g / (1 + exp(-2u))     (the form computed: no tanh overflow).
// Flat like swiglu: a [n_tokens, ffn] batch is n = n_tokens * ffn.
// Bindings: gate (read), up (read), out (read_write), params.
// Prelude consts: WG (workgroup size).
// Grid: grid_1d(ceil(n / WG)).

struct Params { n: u32, _p0: u32, _p1: u32, _p2: u32 }

@group(0) @binding(0) var<storage, read> gate: array<f32>;
@group(0) @binding(1) var<storage, read> up: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i < p.n) {
        let g = gate[i];
        // Clamped so g^3 stays finite; past |g| = 10 gelu is g or 0 to f32 precision.
        let c = clamp(g, -10.0, 10.0);
        let u = 0.7978845608028654 * (c + 0.044715 * c * c * c);
        out[i] = g / (1.0 + exp(-2.0 * u)) * up[i];
    }
}
