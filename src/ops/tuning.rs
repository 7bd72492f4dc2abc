//! Per-adapter kernel tuning, in one place: which matvec, matmul and
//! attention shapes an adapter gets, chosen from what it reports. `wgkv
//! devices` prints the choice and `wgkv bench --json` records it, so a
//! figure says which kernels made it. Today the choice is by device type:
//! CPU adapters (lavapipe, llvmpipe runs a workgroup as 8-wide SIMD loops)
//! get the lanes kernels, GPUs the workgroup-memory ones.

use super::attention::AttnKind;
use super::linear::{FEW_TOKENS, MATMUL_CPU, MATMUL_GPU, MATMUL_ROWS_CPU, MATVEC_CPU, MATVEC_GPU, MatmulShape, MatvecShape};
use crate::gpu::Caps;
use crate::quant::WType;

/// The kernel shapes one adapter runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    pub matvec: MatvecShape,
    pub matmul: MatmulShape,
    /// The matmul of calls of at most `FEW_TOKENS` tokens, where it is not `matmul`.
    pub few: Option<MatmulShape>,
    pub attn: AttnKind,
    /// Weights whose type has a split layout are uploaded in it
    /// (`quant::Layout::Split`): on CPU adapters, where it saves the decode
    /// matvec most of its load loops.
    pub split_weights: bool,
}

impl Tuning {
    /// For an adapter with `caps`.
    pub fn for_caps(caps: &Caps) -> Tuning {
        Tuning::for_device(caps.cpu)
    }

    /// For a CPU adapter (`cpu`) or a GPU.
    pub fn for_device(cpu: bool) -> Tuning {
        match cpu {
            true => Tuning { matvec: MATVEC_CPU, matmul: MATMUL_CPU, few: Some(MATMUL_ROWS_CPU), attn: AttnKind::Lanes, split_weights: true },
            false => Tuning { matvec: MATVEC_GPU, matmul: MATMUL_GPU, few: None, attn: AttnKind::Shared, split_weights: false },
        }
    }

    /// The matmul of a call of `n` tokens.
    pub fn matmul_for(&self, n: u32) -> MatmulShape {
        match self.few {
            Some(few) if n <= FEW_TOKENS => few,
            _ => self.matmul,
        }
    }

    /// One line: each kernel family's shape.
    pub fn describe(&self) -> String {
        let (v, m) = (self.matvec, self.matmul);
        let few = match self.few {
            Some(f) => format!(" ({} {} rows × {} tokens up to {FEW_TOKENS} tokens)", f.kernel.name(), f.tile_rows, f.tokens_per_group()),
            None => String::new(),
        };
        format!(
            "matvec {} invocations × {} rows, {} lane(s) per row{}; matmul {} {} rows × {} tokens{few}; attention {}; weights {}",
            v.workgroup,
            v.rows_per_thread,
            v.threads_per_row,
            if v.x_uniform { ", input as a uniform" } else { "" },
            m.kernel.name(),
            m.tile_rows,
            m.tokens_per_group(),
            match self.attn {
                AttnKind::Lanes => "lanes (one softmax per lane)",
                AttnKind::Shared => "shared (workgroup-memory tiles)",
            },
            if self.split_weights { format!("split (quants apart from scales: {})", split_types()) } else { "as in the file".into() }
        )
    }

    /// The same, as JSON (for `devices --json` and bench records).
    pub fn to_json(&self) -> serde_json::Value {
        let (v, m) = (self.matvec, self.matmul);
        serde_json::json!({
            "matvec": {"workgroup": v.workgroup, "threads_per_row": v.threads_per_row, "rows_per_thread": v.rows_per_thread, "x_uniform": v.x_uniform},
            "matmul": {"kernel": m.kernel.name(), "tile_rows": m.tile_rows, "tile_tokens": m.tile_tokens, "tokens_per_thread": m.tokens_per_thread},
            "matmul_few": self.few.map(|f| serde_json::json!({"kernel": f.kernel.name(), "tile_rows": f.tile_rows, "tile_tokens": f.tile_tokens, "up_to_tokens": FEW_TOKENS})),
            "attention": match self.attn { AttnKind::Lanes => "lanes", AttnKind::Shared => "shared" },
            "split_weights": self.split_weights,
        })
    }
}

/// The weight types that have a split layout, comma-separated.
fn split_types() -> String {
    WType::ALL.iter().filter(|w| w.split_parts().is_some()).map(|w| w.name()).collect::<Vec<_>>().join(", ")
}
