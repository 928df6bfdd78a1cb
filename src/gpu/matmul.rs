//! C = op(A)·op(B) (+ bias), or C += that with `MatmulShape::accumulate`: the Linear
//! layer's forward and both backward products (shaders/matmul.wgsl, CPU twin
//! src/reference/matmul.rs).
//!
//! Three kernel families: register blocks without workgroup memory (`Vec4`, `Strided`), which
//! CPU adapters such as lavapipe run fastest; 64×64 tiles staged in workgroup memory
//! (`Tiled`), the usual choice for real GPUs; and, on devices with subgroups, 16×256 tiles
//! whose shared rows of op(A) travel by subgroup shuffles (`Subgroup`,
//! shaders/matmul_subgroup.wgsl). `Auto` is the tuner's measured fastest where a tuner is
//! set (`choose`), else a rule by adapter type (`resolve`). The environment variable
//! `WGSL_CNN_MATMUL=tiled|vec4|strided|subgroup|auto` (read once per process) overrides both,
//! so the families can be compared on one machine: `WGSL_CNN_MATMUL=vec4 wgsl-cnn bench` vs
//! `WGSL_CNN_MATMUL=tiled wgsl-cnn bench`. `vec4` means the register-blocked family as CPU
//! adapters get it (vec4 where the shape fits and pays, else strided); `tiled`, `strided`
//! and `subgroup` force that one kernel (`subgroup` only where the device has subgroups,
//! else the register-blocked family).

use super::context::{Access, GpuContext, Kernel, RawBuffer};
use crate::shapes::MatmulShape;

const BINDINGS: &[Access] = &[Access::Read, Access::Read, Access::Read, Access::ReadWrite, Access::ReadWrite];

static V4_NN: Kernel = Kernel { file: "matmul", entry: "matmul_v4_nn", bindings: BINDINGS };
static V4_NT: Kernel = Kernel { file: "matmul", entry: "matmul_v4_nt", bindings: BINDINGS };
static V4_TN: Kernel = Kernel { file: "matmul", entry: "matmul_v4_tn", bindings: BINDINGS };
static V4_TT: Kernel = Kernel { file: "matmul", entry: "matmul_v4_tt", bindings: BINDINGS };
static STRIDED: Kernel = Kernel { file: "matmul", entry: "matmul_strided", bindings: BINDINGS };
static TILED_NN: Kernel = Kernel { file: "matmul", entry: "matmul_tiled_nn", bindings: BINDINGS };
static TILED_NT: Kernel = Kernel { file: "matmul", entry: "matmul_tiled_nt", bindings: BINDINGS };
static TILED_TN: Kernel = Kernel { file: "matmul", entry: "matmul_tiled_tn", bindings: BINDINGS };
static TILED_TT: Kernel = Kernel { file: "matmul", entry: "matmul_tiled_tt", bindings: BINDINGS };
static SUBGROUP: Kernel = Kernel { file: "matmul_subgroup", entry: "matmul_subgroup", bindings: BINDINGS };
/// Every kernel of this family, for `kernels::all_kernels`.
pub(crate) static KERNELS: &[&Kernel] =
    &[&V4_NN, &V4_NT, &V4_TN, &V4_TT, &STRIDED, &TILED_NN, &TILED_NT, &TILED_TN, &TILED_TT, &SUBGROUP];

/// The tiled kernels (256 invocations, 8.5 KiB of workgroup memory) are a choice, not a need:
/// where an adapter's limits refuse them, `resolve` takes the register-blocked ones.
pub(crate) fn has_fallback(k: &Kernel) -> bool {
    [&TILED_NN, &TILED_NT, &TILED_TN, &TILED_TT].iter().any(|t| std::ptr::eq(*t, k))
}

/// Output tile of one `Tiled` workgroup (shaders/matmul.wgsl: TM × TN).
const TILE: usize = 64;
/// Output tile of one `Subgroup` workgroup (shaders/matmul_subgroup.wgsl: 4·RQ × SG_COLS).
const SUBGROUP_TILE: (usize, usize) = (16, 256);

/// Environment variable that overrides `Auto`'s choice (see the module doc).
pub const KERNEL_ENV: &str = "WGSL_CNN_MATMUL";

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
    accumulate: u32,
    epilogue: u32,
    main_groups: u32,
    bias_groups: u32,
    shuffle_a: u32,
}

/// What the product does to each element before storing it, and an optional bias gradient
/// computed in the same dispatch (see shaders/matmul.wgsl).
#[derive(Clone, Copy, Default)]
pub struct Fused<'a> {
    /// C = relu(product + bias), ReLU's NaN rule.
    pub relu: bool,
    /// C = product where `mask` [m, n] (a ReLU's output) was kept by the ReLU, else 0.
    pub mask: Option<&'a RawBuffer>,
    /// bias_grad[i] += Σ_k op(A)[i, k] (always accumulates).
    pub bias_grad: Option<&'a RawBuffer>,
}

/// Which kernel runs a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulKernel {
    /// `WGSL_CNN_MATMUL` if set, else by adapter: `Tiled` on GPUs; on CPU adapters `Vec4`
    /// where the shape allows it and gives at least `VEC4_MIN_BLOCKS` blocks, else `Strided`
    /// (a small output such as fc2's 100×10 is a single vec4 workgroup, i.e. one CPU core on
    /// lavapipe, and ran ~2.5× slower than the strided kernel's two).
    Auto,
    /// 4×8 register blocks with vec4 loads (needs `vec4_fits`).
    Vec4,
    /// 4×4 register blocks with scalar loads; any shape.
    Strided,
    /// 64×64 output tiles per 256 invocations, 64×16 / 16×64 slices of the operands staged
    /// in workgroup memory, 4×4 register blocks; any shape.
    Tiled,
    /// 16×256 output tiles per 64 invocations, four 4×4 register blocks each, op(A) shared by
    /// subgroup shuffles; any shape; only on devices with subgroups (`GpuContext::has_subgroups`).
    Subgroup,
    /// `Subgroup` with every lane loading op(A) itself: the path of subgroups with inactive
    /// lanes, which lavapipe never forms (for the kernel's tests; never chosen or parsed).
    SubgroupUnshared,
}

impl MatmulKernel {
    /// Parses a `WGSL_CNN_MATMUL` value (case-insensitive).
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(Self::Auto),
            "vec4" => Some(Self::Vec4),
            "strided" => Some(Self::Strided),
            "tiled" => Some(Self::Tiled),
            "subgroup" => Some(Self::Subgroup),
            _ => None,
        }
    }
}

/// The kernel named by `WGSL_CNN_MATMUL`, read once; `None` when unset or `auto`. An unknown
/// value is reported once on stderr and ignored (it is user input: no panic).
pub fn env_override() -> Option<MatmulKernel> {
    static CHOICE: std::sync::OnceLock<Option<MatmulKernel>> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(|| {
        let value = std::env::var(KERNEL_ENV).ok()?;
        match MatmulKernel::parse(&value) {
            Some(MatmulKernel::Auto) => None,
            Some(k) => Some(k),
            None => {
                eprintln!("warning: {KERNEL_ENV}={value:?} is not one of tiled, vec4, strided, subgroup, auto; ignoring it");
                None
            }
        }
    })
}

/// Fewest 4×8 blocks (invocations) for which `Auto` takes the vec4 kernel: 8 workgroups.
pub const VEC4_MIN_BLOCKS: usize = 512;

/// Whether the vec4 kernel can run `s`: k and the contiguous dimension of each stored
/// operand (m or k for A, k or n for B) are multiples of 4.
pub fn vec4_fits(s: &MatmulShape) -> bool {
    let a_inner = if s.trans_a { s.m } else { s.k };
    let b_inner = if s.trans_b { s.k } else { s.n };
    s.k.is_multiple_of(4) && a_inner % 4 == 0 && b_inner % 4 == 0
}

/// C[m, n] = op(A)·op(B) (+ bias[n] broadcast over rows); see `MatmulShape` for layouts.
/// Every element of `c` is written: overwritten, or with `s.accumulate` C += the product
/// (+ bias), the contribution rounded to f32 before the add.
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
    matmul_fused(ctx, kernel, s, a, b, bias, Fused::default(), c)
}

/// `matmul_with` plus the fused epilogue and bias gradient of `fused`.
#[allow(clippy::too_many_arguments)]
pub fn matmul_fused(
    ctx: &GpuContext,
    kernel: MatmulKernel,
    s: &MatmulShape,
    a: &RawBuffer,
    b: &RawBuffer,
    bias: Option<&RawBuffer>,
    fused: Fused<'_>,
    c: &RawBuffer,
) {
    assert!(!(fused.relu && fused.mask.is_some()), "matmul {s:?}: relu and mask epilogues are exclusive");
    assert!(bias.is_none() || fused.mask.is_none(), "matmul {s:?}: the mask takes the bias binding");
    if let Some(mask) = fused.mask {
        assert!(mask.len >= s.m * s.n, "matmul {s:?}: mask shorter than m·n");
    }
    if let Some(db) = fused.bias_grad {
        assert!(db.len >= s.m, "matmul {s:?}: bias gradient shorter than m");
    }
    assert!(a.len >= s.m * s.k && b.len >= s.k * s.n && c.len >= s.m * s.n, "matmul {s:?}: buffer too small");
    if let Some(bias) = bias {
        assert!(bias.len >= s.n, "matmul {s:?}: bias shorter than n");
    }
    if s.m == 0 || (s.n == 0 && fused.bias_grad.is_none()) {
        return;
    }
    // Unused bindings still need a buffer: one-element scratch ones.
    let (no_bias, no_grad);
    let bias_buf = match bias.or(fused.mask) {
        Some(b) => b,
        None => {
            no_bias = ctx.scratch("matmul.no_bias", 1);
            &no_bias
        }
    };
    let grad_buf = match fused.bias_grad {
        Some(b) => b,
        None => {
            no_grad = ctx.scratch("matmul.no_bias_grad", 1);
            &no_grad
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
        accumulate: s.accumulate as u32,
        epilogue: if fused.relu { 1 } else if fused.mask.is_some() { 2 } else { 0 },
        main_groups: 0,
        bias_groups: 0,
        shuffle_a: (kernel != MatmulKernel::SubgroupUnshared) as u32,
    };
    let pick = |k: [&'static Kernel; 4]| k[2 * s.trans_a as usize + s.trans_b as usize];
    let (k, groups, group_size) = match choose(ctx, kernel, s, bias.is_some(), &fused) {
        MatmulKernel::Tiled => (pick([&TILED_NN, &TILED_NT, &TILED_TN, &TILED_TT]), s.m.div_ceil(TILE) * s.n.div_ceil(TILE), 256),
        MatmulKernel::Vec4 => (pick([&V4_NN, &V4_NT, &V4_TN, &V4_TT]), (s.m.div_ceil(4) * s.n.div_ceil(8)).div_ceil(64), 64),
        MatmulKernel::Subgroup | MatmulKernel::SubgroupUnshared => {
            (&SUBGROUP, s.m.div_ceil(SUBGROUP_TILE.0) * s.n.div_ceil(SUBGROUP_TILE.1), 64)
        }
        _ => (&STRIDED, (s.m.div_ceil(4) * s.n.div_ceil(4)).div_ceil(64), 64),
    };
    let bias_groups = if fused.bias_grad.is_some() { s.m.div_ceil(group_size) } else { 0 };
    let params = Params { main_groups: groups as u32, bias_groups: bias_groups as u32, ..params };
    ctx.dispatch(k, &params, &[a, b, bias_buf, c, grad_buf], ctx.grid(groups + bias_groups));
}

/// The kernel `matmul_fused` runs: `resolve`'s, except that `Auto` without an override is
/// the tuner's measured fastest of the kernels that can run `s` (`GpuContext::tuned`).
fn choose(ctx: &GpuContext, kernel: MatmulKernel, s: &MatmulShape, has_bias: bool, fused: &Fused<'_>) -> MatmulKernel {
    let guess = resolve(ctx, kernel, s);
    if kernel != MatmulKernel::Auto || env_override().is_some() || ctx.tuner().is_none() {
        return guess;
    }
    let name = |k| match k {
        MatmulKernel::Tiled => "tiled",
        MatmulKernel::Vec4 => "vec4",
        MatmulKernel::Subgroup => "subgroup",
        _ => "strided",
    };
    let mut candidates = vec![(name(guess), guess)];
    let tiled_fits = ctx.fits(&TILED_NN);
    let candidate_kernels = [
        (MatmulKernel::Tiled, tiled_fits),
        (MatmulKernel::Vec4, vec4_fits(s)),
        (MatmulKernel::Strided, true),
        (MatmulKernel::Subgroup, subgroup_runs(ctx)),
    ];
    for (k, fits) in candidate_kernels {
        if fits && k != guess {
            candidates.push((name(k), k));
        }
    }
    let flag = |on: bool, text: &'static str| if on { text } else { "" };
    let (relu, mask, grad) = (fused.relu, fused.mask.is_some(), fused.bias_grad.is_some());
    let flags = [s.trans_a, s.trans_b, s.accumulate, has_bias, relu, mask, grad].map(usize::from);
    let fingerprint = [s.m, s.n, s.k, flags[0], flags[1], flags[2], flags[3], flags[4], flags[5], flags[6], 0, 0];
    let shape = || format!(
        "{}×{}×{} {}{}{}{}{}{}{}",
        s.m,
        s.n,
        s.k,
        if s.trans_a { 'T' } else { 'N' },
        if s.trans_b { 'T' } else { 'N' },
        flag(s.accumulate, " +="),
        flag(has_bias, " bias"),
        flag(relu, " relu"),
        flag(mask, " mask"),
        flag(grad, " bias-grad"),
    );
    let bias_len = if fused.mask.is_some() { s.m * s.n } else { s.n };
    let lens = [s.m * s.k, s.k * s.n, bias_len, s.m * s.n, s.m];
    ctx.tuned("matmul", fingerprint, shape, &candidates, &lens, |t, k| {
        let f = Fused { relu: fused.relu, mask: fused.mask.map(|_| &*t[2]), bias_grad: fused.bias_grad.map(|_| &*t[4]) };
        matmul_fused(ctx, k, s, &t[0], &t[1], has_bias.then(|| &*t[2]), f, &t[3]);
    })
}

/// Whether `ctx` can run the `Subgroup` kernel.
pub fn subgroup_runs(ctx: &GpuContext) -> bool {
    ctx.has_subgroups() && ctx.fits(&SUBGROUP)
}

/// The concrete kernel (`Vec4`, `Strided`, `Tiled` or `Subgroup`) that `kernel` runs `s` with
/// on `ctx` by the static rule (what the tuner's measurements replace). The static rule never
/// picks `Subgroup`; asked for it on a device without subgroups, it gives the
/// register-blocked family.
pub fn resolve(ctx: &GpuContext, kernel: MatmulKernel, s: &MatmulShape) -> MatmulKernel {
    // The register-blocked family as CPU adapters get it.
    let register_blocked = if vec4_fits(s) && s.m.div_ceil(4) * s.n.div_ceil(8) >= VEC4_MIN_BLOCKS {
        MatmulKernel::Vec4
    } else {
        MatmulKernel::Strided
    };
    match kernel {
        MatmulKernel::Auto => match env_override() {
            Some(MatmulKernel::Vec4) => register_blocked,
            Some(MatmulKernel::Subgroup) if !subgroup_runs(ctx) => register_blocked,
            Some(k) => k,
            None if ctx.is_cpu() => register_blocked,
            None if ctx.fits(&TILED_NN) => MatmulKernel::Tiled,
            None => register_blocked,
        },
        MatmulKernel::Vec4 => {
            assert!(vec4_fits(s), "matmul {s:?}: the vec4 kernel needs multiples of 4");
            MatmulKernel::Vec4
        }
        MatmulKernel::Subgroup if !subgroup_runs(ctx) => register_blocked,
        MatmulKernel::SubgroupUnshared => {
            assert!(subgroup_runs(ctx), "{}: no subgroups", ctx.info.name);
            MatmulKernel::SubgroupUnshared
        }
        k => k,
    }
}
