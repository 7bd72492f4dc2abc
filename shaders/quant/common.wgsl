// quant/common: byte-addressed reads over a weight matrix stored as raw GGUF
// bytes. Prepended (after the prelude) to every weight-reading kernel,
// before the weight type's fragment (shaders/quant/<type>.wgsl).
//
// Binding 0 is always the weight buffer `w`. Most GGUF blocks are not
// 4-byte aligned (Q8_0 is 34 bytes, Q4_0 18, Q6_K 210, odd-length F16 rows),
// so every helper here takes a byte offset. Out-of-range word loads (the
// second word of a funnel read at the very end of the buffer) are clamped by
// the implementation's bounds checks and only feed bits that get discarded.
//
// Fragment contract (each quant/<type>.wgsl defines):
//   fn row_bytes(cols: u32) -> u32
//     bytes of one row of `cols` weights.
//   fn dequant32(row_byte: u32, cols: u32, sb: u32) -> array<vec4<f32>, 8>
//     weights k = 32*sb .. 32*sb+31 of the row starting at byte `row_byte`;
//     element 4*i+c is result[i][c]; elements at k >= cols are 0 (only the
//     float types allow cols % 32 != 0; quantized rows hold whole blocks).
//   fn dot32(row_byte: u32, cols: u32, sb: u32, xv: array<vec4<f32>, 8>,
//            xsum: vec4<f32>) -> vec4<f32>
//     partial sums (add the four lanes) of the same 32 weights times
//     xv[i][c] = x[32*sb + 4*i + c], where xsum = sum_i xv[i]; types with a
//     per-block offset or zero point fold it into one multiply by xsum.
//     Types without such a shortcut use `dot_chunk(dequant32(...), xv)`.
//
// Style: straight-line code, no loops over small local arrays: lavapipe
// (the CPU adapter) does not always unroll them and then keeps the arrays
// in per-lane scratch memory, which costs several times the arithmetic.

@group(0) @binding(0) var<storage, read> w: array<u32>;

// The 32-bit little-endian word starting at any byte offset: two aligned
// loads and a funnel shift. `(hi << (31 - s)) << 1` is `hi << (32 - s)` but
// stays defined (zero) when s == 0, where WGSL would take the shift mod 32.
fn w_u32(byte: u32) -> u32 {
    let i = byte >> 2u;
    let s = (byte & 3u) * 8u;
    return (w[i] >> s) | ((w[i + 1u] << (31u - s)) << 1u);
}

// One byte.
fn w_u8(byte: u32) -> u32 {
    return (w[byte >> 2u] >> ((byte & 3u) * 8u)) & 0xFFu;
}

// A 16-bit value at an even byte offset (never straddles a word).
fn w_u16(byte: u32) -> u32 {
    return (w[byte >> 2u] >> ((byte & 2u) * 8u)) & 0xFFFFu;
}

// IEEE halves (low 16 bits of each lane) widened exactly to f32, subnormals,
// infinities and NaN included. Plain bit arithmetic rather than
// unpack2x16float, which naga treats as an optional capability.
fn f16_bits(h: vec4<u32>) -> vec4<f32> {
    let sign = (h & vec4<u32>(0x8000u)) << vec4<u32>(16u);
    let e = (h >> vec4<u32>(10u)) & vec4<u32>(0x1Fu);
    let m = h & vec4<u32>(0x3FFu);
    let normal = sign | ((e + vec4<u32>(112u)) << vec4<u32>(23u)) | (m << vec4<u32>(13u));
    let special = sign | vec4<u32>(0x7F800000u) | (m << vec4<u32>(13u)); // inf, NaN
    let sub = sign | bitcast<vec4<u32>>(vec4<f32>(m) * 5.9604645e-8); // m * 2^-24, exact
    let zero = vec4<u32>(0u);
    return bitcast<vec4<f32>>(select(select(normal, special, e == vec4<u32>(31u)), sub, e == zero));
}

// f16_bits for two lanes (block scales: half the work of four).
fn f16_bits2(h: vec2<u32>) -> vec2<f32> {
    let sign = (h & vec2<u32>(0x8000u)) << vec2<u32>(16u);
    let e = (h >> vec2<u32>(10u)) & vec2<u32>(0x1Fu);
    let m = h & vec2<u32>(0x3FFu);
    let normal = sign | ((e + vec2<u32>(112u)) << vec2<u32>(23u)) | (m << vec2<u32>(13u));
    let special = sign | vec2<u32>(0x7F800000u) | (m << vec2<u32>(13u));
    let sub = sign | bitcast<vec2<u32>>(vec2<f32>(m) * 5.9604645e-8);
    let zero = vec2<u32>(0u);
    return bitcast<vec2<f32>>(select(select(normal, special, e == vec2<u32>(31u)), sub, e == zero));
}

// The two halves packed in a word (low half first), like unpack2x16float.
fn half2(v: u32) -> vec2<f32> {
    return f16_bits2(vec2<u32>(v & 0xFFFFu, v >> 16u));
}

// Four halves packed in two words.
fn half4(a: u32, b: u32) -> vec4<f32> {
    return f16_bits(vec4<u32>(a & 0xFFFFu, a >> 16u, b & 0xFFFFu, b >> 16u));
}

// IEEE half stored at an even byte offset, widened exactly to f32.
fn w_f16(byte: u32) -> f32 {
    return f16_bits2(vec2<u32>(w_u16(byte), 0u)).x;
}

// Eight consecutive little-endian words starting at byte `byte` (any
// alignment): nine aligned loads and funnel shifts.
fn w_u32x8(byte: u32) -> array<u32, 8> {
    let i = byte >> 2u;
    let s = (byte & 3u) * 8u;
    let t = 31u - s;
    let a0 = w[i];
    let a1 = w[i + 1u];
    let a2 = w[i + 2u];
    let a3 = w[i + 3u];
    let a4 = w[i + 4u];
    let a5 = w[i + 5u];
    let a6 = w[i + 6u];
    let a7 = w[i + 7u];
    let a8 = w[i + 8u];
    return array<u32, 8>(
        (a0 >> s) | ((a1 << t) << 1u), (a1 >> s) | ((a2 << t) << 1u),
        (a2 >> s) | ((a3 << t) << 1u), (a3 >> s) | ((a4 << t) << 1u),
        (a4 >> s) | ((a5 << t) << 1u), (a5 >> s) | ((a6 << t) << 1u),
        (a6 >> s) | ((a7 << t) << 1u), (a7 >> s) | ((a8 << t) << 1u));
}

// Partial sums of a 32-weight chunk times 32 inputs.
fn dot_chunk(v: array<vec4<f32>, 8>, xv: array<vec4<f32>, 8>) -> vec4<f32> {
    return ((v[0] * xv[0] + v[1] * xv[1]) + (v[2] * xv[2] + v[3] * xv[3]))
         + ((v[4] * xv[4] + v[5] * xv[5]) + (v[6] * xv[6] + v[7] * xv[7]));
}

// The four bytes of `v` as signed integers in f32 (byte 0 first).
fn i8x4(v: u32) -> vec4<f32> {
    let b = bitcast<vec4<i32>>(vec4<u32>(v) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u);
    return vec4<f32>(b);
}

// The four bytes of `v` as unsigned integers in f32 (byte 0 first).
fn u8x4(v: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(v) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xFFu));
}

// The nibble at bit `shift` (0 or 4) of each of the four bytes of `v`, in f32.
fn nib4(v: u32, shift: u32) -> vec4<f32> {
    return u8x4((v >> shift) & 0x0F0F0F0Fu);
}

// Sum of the eight nibbles of `v` times their inputs, without shifting
// each nibble down: the low nibble of byte j masked in place is n * 2^(8j),
// the high nibble n * 2^(8j+4) (byte 3's high nibble is shifted down, so
// that no value reaches the sign bit), all exact in f32; their inputs come
// scaled by the inverse powers of two (`NIB_LO`, `NIB_HI`), which is exact
// too, so each product is the one `nib4` would give. `xl`: the inputs of
// the low nibbles times NIB_LO, `xh`: of the high nibbles times NIB_HI.
// Three operations per weight (mask, convert, multiply-add) against five.
const NIB_LO = vec4<f32>(1.0, 0.00390625, 1.52587890625e-5, 5.9604644775390625e-8);
const NIB_HI = vec4<f32>(0.0625, 2.44140625e-4, 9.5367431640625e-7, 1.0);
fn nib8_dot(v: u32, xl: vec4<f32>, xh: vec4<f32>) -> vec4<f32> {
    let lo = vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(v) & vec4<u32>(0xFu, 0xF00u, 0xF0000u, 0xF000000u)));
    let hi = vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(v & 0xF0u, v & 0xF000u, v & 0xF00000u, v >> 28u)));
    return lo * xl + hi * xh;
}

// Q5_0 / Q5_1 5-bit values of four weights: the nibble at bit `shift` (0 or
// 4) of each byte of `v`, plus bits 0..3 of `h` as bit 4 (bit 0 to byte 0).
fn nib5(v: u32, shift: u32, h: u32) -> vec4<f32> {
    let hb = (h & 1u) | ((h & 2u) << 7u) | ((h & 4u) << 14u) | ((h & 8u) << 21u);
    return u8x4(((v >> shift) & 0x0F0F0F0Fu) | (hb << 4u));
}

// The 32 5-bit values of a Q5_0 / Q5_1 block in weight order, from its
// fifth-bit word `qh` (bit k for weight k) and its 16 nibble bytes `q`
// (low nibbles weights 0..15, high nibbles 16..31).
fn q5_values(qh: u32, q: vec4<u32>) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(
        nib5(q.x, 0u, qh), nib5(q.y, 0u, qh >> 4u), nib5(q.z, 0u, qh >> 8u), nib5(q.w, 0u, qh >> 12u),
        nib5(q.x, 4u, qh >> 16u), nib5(q.y, 4u, qh >> 20u), nib5(q.z, 4u, qh >> 24u), nib5(q.w, 4u, qh >> 28u));
}

// Q4_K's and Q5_K's (d * scale_j, dmin * min_j) of sub-block j (0..7) of the
// super-block at word i: f16 d and dmin in word i, then 12 bytes of packed
// 6-bit pairs (layout in quant/q4_k.wgsl).
fn q4k_scale_min(i: u32, j: u32) -> vec2<f32> {
    let dd = half2(w[i]);
    // Byte k of the 12 scale bytes is (w[i + 1 + k / 4] >> 8 * (k % 4)) & 0xFF.
    let sh = 8u * (j & 3u);
    let a = (w[i + 1u] >> sh) & 0xFFu; // byte j & 3
    let c = (w[i + 2u] >> sh) & 0xFFu; // byte (j & 3) + 4
    let e = (w[i + 3u] >> sh) & 0xFFu; // byte (j & 3) + 8
    let lo = vec2<u32>(a, c) & vec2<u32>(63u);
    let hi = ((vec2<u32>(e) >> vec2<u32>(0u, 4u)) & vec2<u32>(15u)) | ((vec2<u32>(a, c) >> vec2<u32>(6u)) << vec2<u32>(4u));
    let sm = select(hi, lo, j < 4u);
    return dd * vec2<f32>(sm);
}

// Four consecutive little-endian words starting at byte `byte` (any alignment).
fn w_u32x4(byte: u32) -> vec4<u32> {
    let i = byte >> 2u;
    let s = (byte & 3u) * 8u;
    let a = vec4<u32>(w[i], w[i + 1u], w[i + 2u], w[i + 3u]);
    let b = vec4<u32>(w[i + 1u], w[i + 2u], w[i + 3u], w[i + 4u]);
    return (a >> vec4<u32>(s)) | ((b << vec4<u32>(31u - s)) << vec4<u32>(1u));
}

// Zero the elements at k >= cols of a 32-weight chunk starting at k0
// (float types, whose rows need not be whole chunks).
fn mask_tail(v: array<vec4<f32>, 8>, k0: u32, cols: u32) -> array<vec4<f32>, 8> {
    if (k0 + 32u <= cols) {
        return v;
    }
    let k = vec4<u32>(k0) + vec4<u32>(0u, 1u, 2u, 3u);
    let c = vec4<u32>(cols);
    let z = vec4<f32>(0.0);
    return array<vec4<f32>, 8>(
        select(z, v[0], k < c), select(z, v[1], k + 4u < c),
        select(z, v[2], k + 8u < c), select(z, v[3], k + 12u < c),
        select(z, v[4], k + 16u < c), select(z, v[5], k + 20u < c),
        select(z, v[6], k + 24u < c), select(z, v[7], k + 28u < c));
}
