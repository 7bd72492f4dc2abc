// The orthonormal Walsh-Hadamard transform of KVROT (32 or 64) elements in
// natural (Sylvester) order, in place: y = H x / sqrt(KVROT) with
// H[i][j] = (-1)^popcount(i & j). The matrix is symmetric and its own
// inverse, so rotating K and q by it leaves q . k unchanged, and rotating
// V rows, then the attention output, gives the output back.
// Prelude const: KVROT (0: the functions do nothing).

fn fwht(x: ptr<function, array<f32, 64>>, o: u32) {
    for (var h = 1u; h < KVROT; h *= 2u) {
        for (var i = 0u; i < KVROT; i++) {
            if ((i & h) == 0u) {
                let a = (*x)[o + i];
                let b = (*x)[o + i + h];
                (*x)[o + i] = a + b;
                (*x)[o + i + h] = a - b;
            }
        }
    }
    // 1 / sqrt(KVROT): exact for 64, the f32 nearest for 32.
    let s = select(0.17677669529663687, 0.125, KVROT == 64u);
    for (var i = 0u; i < KVROT; i++) {
        (*x)[o + i] *= s;
    }
}
