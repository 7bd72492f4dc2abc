//! GGUF weight types: block layouts and CPU dequantization (the reference
//! every weight-reading kernel is checked against).

/// A weight storage type, with GGUF's ggml type id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(non_camel_case_types)]
pub enum WType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q4_K,
    Q6_K,
}

impl WType {
    pub const ALL: &'static [WType] =
        &[WType::F32, WType::F16, WType::BF16, WType::Q8_0, WType::Q4_0, WType::Q4_1, WType::Q4_K, WType::Q6_K];

    /// ggml's type id as stored in GGUF tensor infos.
    pub fn ggml_id(self) -> u32 {
        match self {
            WType::F32 => 0,
            WType::F16 => 1,
            WType::Q4_0 => 2,
            WType::Q4_1 => 3,
            WType::Q8_0 => 8,
            WType::Q4_K => 12,
            WType::Q6_K => 14,
            WType::BF16 => 30,
        }
    }

    pub fn from_ggml(id: u32) -> Option<WType> {
        WType::ALL.iter().copied().find(|w| w.ggml_id() == id)
    }

    pub fn name(self) -> &'static str {
        match self {
            WType::F32 => "F32",
            WType::F16 => "F16",
            WType::BF16 => "BF16",
            WType::Q8_0 => "Q8_0",
            WType::Q4_0 => "Q4_0",
            WType::Q4_1 => "Q4_1",
            WType::Q4_K => "Q4_K",
            WType::Q6_K => "Q6_K",
        }
    }

    /// Elements per block.
    pub fn block_elems(self) -> usize {
        match self {
            WType::F32 | WType::F16 | WType::BF16 => 1,
            WType::Q8_0 | WType::Q4_0 | WType::Q4_1 => 32,
            WType::Q4_K | WType::Q6_K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            WType::F32 => 4,
            WType::F16 | WType::BF16 => 2,
            WType::Q8_0 => 34,
            WType::Q4_0 => 18,
            WType::Q4_1 => 20,
            WType::Q4_K => 144,
            WType::Q6_K => 210,
        }
    }

    /// Bytes of one row of `cols` elements (`cols` must be a multiple of the block size).
    pub fn row_bytes(self, cols: usize) -> usize {
        cols / self.block_elems() * self.block_bytes()
    }

    /// The WGSL fragment that decodes this type (see `shaders/quant/common.wgsl`).
    pub fn shader_fragment(self) -> &'static str {
        match self {
            WType::F32 => include_str!("../shaders/quant/f32.wgsl"),
            WType::F16 => include_str!("../shaders/quant/f16.wgsl"),
            WType::BF16 => include_str!("../shaders/quant/bf16.wgsl"),
            WType::Q8_0 => include_str!("../shaders/quant/q8_0.wgsl"),
            WType::Q4_0 => include_str!("../shaders/quant/q4_0.wgsl"),
            WType::Q4_1 => include_str!("../shaders/quant/q4_1.wgsl"),
            WType::Q4_K => include_str!("../shaders/quant/q4_k.wgsl"),
            WType::Q6_K => include_str!("../shaders/quant/q6_k.wgsl"),
        }
    }
}
