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

// IEEE half stored at an even byte offset, widened exactly to f32.
fn w_f16(byte: u32) -> f32 {
    return unpack2x16float(w_u16(byte)).x;
}

// Eight consecutive little-endian words starting at byte `byte` (any
// alignment): nine aligned loads and funnel shifts (eight when aligned).
fn w_u32x8(byte: u32) -> array<u32, 8> {
    let i = byte >> 2u;
    let s = (byte & 3u) * 8u;
    var out: array<u32, 8>;
    if (s == 0u) {
        for (var j = 0u; j < 8u; j++) {
            out[j] = w[i + j];
        }
    } else {
        var lo = w[i];
        for (var j = 0u; j < 8u; j++) {
            let hi = w[i + j + 1u];
            out[j] = (lo >> s) | (hi << (32u - s));
            lo = hi;
        }
    }
    return out;
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
    var out = v;
    if (k0 + 32u > cols) {
        for (var i = 0u; i < 8u; i++) {
            let k = vec4<u32>(k0 + 4u * i) + vec4<u32>(0u, 1u, 2u, 3u);
            out[i] = select(vec4<f32>(0.0), out[i], k < vec4<u32>(cols));
        }
    }
    return out;
}
