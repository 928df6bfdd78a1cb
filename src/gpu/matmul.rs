//! C = op(A)·op(B) (+ bias): the Linear layer's forward and both backward products
//! (shaders/matmul.wgsl, CPU twin src/reference/matmul.rs).

use super::context::{Access, GpuContext, Kernel, RawBuffer};
use crate::shapes::MatmulShape;

const BINDINGS: &[Access] = &[Access::Read, Access::Read, Access::Read, Access::ReadWrite];

static V4_NN: Kernel = Kernel { file: "matmul", entry: "matmul_v4_nn", bindings: BINDINGS };
static V4_NT: Kernel = Kernel { file: "matmul", entry: "matmul_v4_nt", bindings: BINDINGS };
static V4_TN: Kernel = Kernel { file: "matmul", entry: "matmul_v4_tn", bindings: BINDINGS };
static V4_TT: Kernel = Kernel { file: "matmul", entry: "matmul_v4_tt", bindings: BINDINGS };
static STRIDED: Kernel = Kernel { file: "matmul", entry: "matmul_strided", bindings: BINDINGS };

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
    a_row: u32,
    a_k: u32,
    b_k: u32,
    b_col: u32,
}

/// Which kernel runs a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulKernel {
    /// `Vec4` where the shape allows it and gives at least `VEC4_MIN_BLOCKS` blocks, else
    /// `Strided` (a small output such as fc2's 100×10 is a single vec4 workgroup, i.e. one
    /// CPU core on lavapipe, and ran ~2.5× slower than the strided kernel's two).
    Auto,
    /// 4×8 register blocks with vec4 loads (needs `vec4_fits`).
    Vec4,
    /// 4×4 register blocks with scalar loads; any shape.
    Strided,
}

/// Fewest 4×8 blocks (invocations) for which `Auto` takes the vec4 kernel: 8 workgroups.
pub const VEC4_MIN_BLOCKS: usize = 512;

/// Whether the vec4 kernel can run `s`: k and the contiguous dimension of each stored
/// operand (m or k for A, k or n for B) are multiples of 4.
pub fn vec4_fits(s: &MatmulShape) -> bool {
    let a_inner = if s.trans_a { s.m } else { s.k };
    let b_inner = if s.trans_b { s.k } else { s.n };
    s.k % 4 == 0 && a_inner % 4 == 0 && b_inner % 4 == 0
}

/// C[m, n] = op(A)·op(B) (+ bias[n] broadcast over rows); see `MatmulShape` for layouts.
/// Every element of `c` is written.
pub fn matmul(ctx: &GpuContext, s: &MatmulShape, a: &RawBuffer, b: &RawBuffer, bias: Option<&RawBuffer>, c: &RawBuffer) {
    matmul_with(ctx, MatmulKernel::Auto, s, a, b, bias, c);
}

/// `matmul` with the kernel chosen by the caller (tests run every kernel).
pub fn matmul_with(
    ctx: &GpuContext,
    kernel: MatmulKernel,
    s: &MatmulShape,
    a: &RawBuffer,
    b: &RawBuffer,
    bias: Option<&RawBuffer>,
    c: &RawBuffer,
) {
    assert!(a.len >= s.m * s.k && b.len >= s.k * s.n && c.len >= s.m * s.n, "matmul {s:?}: buffer too small");
    if let Some(bias) = bias {
        assert!(bias.len >= s.n, "matmul {s:?}: bias shorter than n");
    }
    if s.m == 0 || s.n == 0 {
        return;
    }
    // Without a bias the binding still needs a buffer: a one-element scratch one.
    let dummy;
    let bias_buf = match bias {
        Some(b) => b,
        None => {
            dummy = ctx.scratch("matmul.no_bias", 1);
            &dummy
        }
    };
    let (a_row, a_k) = if s.trans_a { (1, s.m) } else { (s.k, 1) };
    let (b_k, b_col) = if s.trans_b { (1, s.k) } else { (s.n, 1) };
    let params = Params {
        m: s.m as u32,
        n: s.n as u32,
        k: s.k as u32,
        has_bias: bias.is_some() as u32,
        a_row: a_row as u32,
        a_k: a_k as u32,
        b_k: b_k as u32,
        b_col: b_col as u32,
    };
    let use_v4 = match kernel {
        MatmulKernel::Auto => vec4_fits(s) && s.m.div_ceil(4) * s.n.div_ceil(8) >= VEC4_MIN_BLOCKS,
        MatmulKernel::Vec4 => {
            assert!(vec4_fits(s), "matmul {s:?}: the vec4 kernel needs multiples of 4");
            true
        }
        MatmulKernel::Strided => false,
    };
    let (k, blocks) = if use_v4 {
        let k = match (s.trans_a, s.trans_b) {
            (false, false) => &V4_NN,
            (false, true) => &V4_NT,
            (true, false) => &V4_TN,
            (true, true) => &V4_TT,
        };
        (k, s.m.div_ceil(4) * s.n.div_ceil(8))
    } else {
        (&STRIDED, s.m.div_ceil(4) * s.n.div_ceil(4))
    };
    ctx.dispatch(k, &params, &[a, b, bias_buf, c], ctx.grid(blocks.div_ceil(64)));
}
