//! Conv2d forward and its input, weight and bias gradients (shaders/conv2d.wgsl, CPU twin
//! src/reference/conv2d.rs).
//!
//! Kernel families (see the shader's header): `Rows` for stride 1 and small kernels with
//! rows a multiple of 4 long (the seed's convolutions), fast on CPU adapters; `Direct` for
//! any stride and padding; `Tiled`, implicit GEMM with tiles in workgroup memory, for real
//! GPUs (any stride and padding, where the adapter's limits take 256 invocations and 8.5 KiB
//! of workgroup memory); `Subgroup`, the same implicit GEMMs with 16×256 tiles whose shared
//! operand travels by subgroup shuffles (shaders/conv2d_subgroup.wgsl), where the device has
//! subgroups. The input gradient has a fifth, `Scatter` (stride 1, dy rows of 4,
//! 8 or 12), which skips the zero products the row kernel spends on padding; it ran conv2's
//! input gradient in about half the CPU time on lavapipe.
//!
//! `ConvKernel::Auto` takes the tuner's measured fastest of the families that fit
//! (`GpuContext::tuned`; `Tiled` and `Subgroup` not on CPU adapters, where they are never
//! fast); without a tuner, the first that fits of `Tiled` (not on CPU adapters), `Scatter`,
//! `Rows`, `Direct`. The environment variable
//! `WGSL_CNN_CONV=tiled|rows|direct|scatter|subgroup|auto` forces a family wherever it fits (ops it
//! does not fit keep the automatic choice).
//!
//! Temporary data lives in the context's scratch buffers (`GpuContext::scratch`), so no
//! call allocates once the largest shape has run: "conv2d.weights_kc" (weights transposed or
//! flipped into [rows, c4]), "conv2d.dy_padded" (dy padded for the input gradient) and
//! "conv2d.partials" (split-K partial sums of the weight gradient, summed in a fixed order
//! by a second pass, so results are deterministic).
//!
//! The weight and bias gradients accumulate into their output (dw += contribution, db +=
//! contribution; parameter gradients that several uses add into); forward and input
//! gradient overwrite theirs.

use super::context::{Access, GpuContext, Kernel, RawBuffer};
use crate::shapes::Conv2dShape;

use Access::{Read, ReadWrite};

static FORWARD_DIRECT: Kernel =
    Kernel { file: "conv2d", entry: "conv_forward_direct", bindings: &[Read, Read, Read, ReadWrite] };
static FORWARD_ROWS4: Kernel = Kernel { file: "conv2d", entry: "conv_forward_rows4", bindings: &[Read, Read, Read, ReadWrite] };
static FORWARD_ROWS8: Kernel = Kernel { file: "conv2d", entry: "conv_forward_rows8", bindings: &[Read, Read, Read, ReadWrite] };
static FORWARD_ROWS12: Kernel =
    Kernel { file: "conv2d", entry: "conv_forward_rows12", bindings: &[Read, Read, Read, ReadWrite] };
static WEIGHT_KC: Kernel = Kernel { file: "conv2d", entry: "conv_weight_kc", bindings: &[Read, ReadWrite] };
static PAD_COLUMNS: Kernel = Kernel { file: "conv2d", entry: "conv_pad_columns", bindings: &[Read, ReadWrite] };
static GRAD_INPUT_DIRECT: Kernel =
    Kernel { file: "conv2d", entry: "conv_grad_input_direct", bindings: &[Read, Read, ReadWrite] };
static GRAD_INPUT_SCATTER4: Kernel =
    Kernel { file: "conv2d", entry: "conv_grad_input_scatter4", bindings: &[Read, Read, ReadWrite] };
static GRAD_INPUT_SCATTER8: Kernel =
    Kernel { file: "conv2d", entry: "conv_grad_input_scatter8", bindings: &[Read, Read, ReadWrite] };
static GRAD_INPUT_SCATTER12: Kernel =
    Kernel { file: "conv2d", entry: "conv_grad_input_scatter12", bindings: &[Read, Read, ReadWrite] };
static GRAD_WEIGHT_ROWS: Kernel =
    Kernel { file: "conv2d", entry: "conv_grad_weight_rows", bindings: &[Read, Read, ReadWrite] };
static GRAD_WEIGHT_DIRECT: Kernel =
    Kernel { file: "conv2d", entry: "conv_grad_weight_direct", bindings: &[Read, Read, ReadWrite] };
static FORWARD_TILED: Kernel =
    Kernel { file: "conv2d", entry: "conv_forward_tiled", bindings: &[Read, Read, Read, ReadWrite] };
static GRAD_INPUT_TILED: Kernel =
    Kernel { file: "conv2d", entry: "conv_grad_input_tiled", bindings: &[Read, Read, ReadWrite] };
static GRAD_WEIGHT_TILED: Kernel =
    Kernel { file: "conv2d", entry: "conv_grad_weight_tiled", bindings: &[Read, Read, ReadWrite] };
static FORWARD_SUBGROUP: Kernel =
    Kernel { file: "conv2d_subgroup", entry: "conv_forward_subgroup", bindings: &[Read, Read, Read, ReadWrite] };
static GRAD_INPUT_SUBGROUP: Kernel =
    Kernel { file: "conv2d_subgroup", entry: "conv_grad_input_subgroup", bindings: &[Read, Read, ReadWrite] };
static GRAD_WEIGHT_SUBGROUP: Kernel =
    Kernel { file: "conv2d_subgroup", entry: "conv_grad_weight_subgroup", bindings: &[Read, Read, ReadWrite] };
static SUM_SPLITS: Kernel = Kernel { file: "conv2d", entry: "conv_sum_splits", bindings: &[Read, ReadWrite] };
static SUM_SPLITS_BIAS: Kernel = Kernel { file: "conv2d", entry: "conv_sum_splits_bias", bindings: &[Read, ReadWrite, ReadWrite] };
/// Every kernel of this file, for `kernels::all_kernels`.
pub(crate) static KERNELS: &[&Kernel] = &[&FORWARD_DIRECT, &FORWARD_ROWS4, &FORWARD_ROWS8, &FORWARD_ROWS12, &WEIGHT_KC, &PAD_COLUMNS, &GRAD_INPUT_DIRECT, &GRAD_INPUT_SCATTER4, &GRAD_INPUT_SCATTER8, &GRAD_INPUT_SCATTER12, &GRAD_WEIGHT_ROWS, &GRAD_WEIGHT_DIRECT, &FORWARD_TILED, &GRAD_INPUT_TILED, &GRAD_WEIGHT_TILED, &FORWARD_SUBGROUP, &GRAD_INPUT_SUBGROUP, &GRAD_WEIGHT_SUBGROUP, &SUM_SPLITS, &SUM_SPLITS_BIAS];

/// The tiled kernels are a choice, not a need: where an adapter's limits refuse them, the
/// register-blocked families run.
pub(crate) fn has_fallback(k: &Kernel) -> bool {
    [&FORWARD_TILED, &GRAD_INPUT_TILED, &GRAD_WEIGHT_TILED].iter().any(|t| std::ptr::eq(*t, k))
}

/// Whether `ctx`'s limits take the tiled kernels.
pub fn tiled_fits(ctx: &GpuContext) -> bool {
    ctx.fits(&FORWARD_TILED)
}

/// Whether `ctx` can run the `Subgroup` kernels.
pub fn subgroup_runs(ctx: &GpuContext) -> bool {
    ctx.has_subgroups() && ctx.fits(&FORWARD_SUBGROUP)
}

/// Rows and columns of C per `Tiled` workgroup (shaders/conv2d.wgsl: GT).
const TILE: usize = 64;

/// Workgroups of the tiled kernel for a product with m × n outputs.
fn tiles(m: usize, n: usize) -> usize {
    m.div_ceil(TILE) * n.div_ceil(TILE)
}

/// Rows and columns of C per `Subgroup` workgroup (shaders/conv2d_subgroup.wgsl:
/// SG_ROWS_CONV × SG_COLS_CONV).
const SUBGROUP_TILE: (usize, usize) = (16, 256);

/// Workgroups of the subgroup kernels for a product with m × n outputs.
fn subgroup_tiles(m: usize, n: usize) -> usize {
    m.div_ceil(SUBGROUP_TILE.0) * n.div_ceil(SUBGROUP_TILE.1)
}

/// Environment variable that forces a family (see the module doc).
pub const KERNEL_ENV: &str = "WGSL_CNN_CONV";

fn env_override() -> Option<ConvKernel> {
    static CHOICE: std::sync::OnceLock<Option<ConvKernel>> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(|| {
        let value = std::env::var(KERNEL_ENV).ok()?;
        match value.trim().to_ascii_lowercase().as_str() {
            "tiled" => Some(ConvKernel::Tiled),
            "rows" => Some(ConvKernel::Rows),
            "direct" => Some(ConvKernel::Direct),
            "scatter" => Some(ConvKernel::Scatter),
            "subgroup" => Some(ConvKernel::Subgroup),
            "auto" | "" => None,
            _ => {
                eprintln!("warning: {KERNEL_ENV}={value:?} is not one of tiled, rows, direct, scatter, subgroup, auto; ignoring it");
                None
            }
        }
    })
}

/// Mirrors `ConvParams` in shaders/conv2d.wgsl (field meanings documented there).
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    k: u32,
    stride: u32,
    pad: u32,
    h_out: u32,
    w_out: u32,
    has_bias: u32,
    splits: u32,
    x_row: u32,
    co4: u32,
    flip: u32,
    len: u32,
}

impl Params {
    fn of(s: &Conv2dShape) -> Self {
        Params {
            n: s.n as u32,
            c_in: s.c_in as u32,
            h: s.h as u32,
            w: s.w as u32,
            c_out: s.c_out as u32,
            k: s.k as u32,
            stride: s.stride as u32,
            pad: s.pad as u32,
            h_out: s.h_out() as u32,
            w_out: s.w_out() as u32,
            ..Default::default()
        }
    }
}

/// Which kernels run an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvKernel {
    /// `Rows` where the shape allows it, else `Direct`.
    Auto,
    /// Row kernels (see `rows_fit`, `grad_input_rows_fit`); panics where they do not fit.
    Rows,
    /// Any stride and padding.
    Direct,
    /// Input gradient only: the scatter kernel (see `grad_input_scatter_fit`); panics for
    /// other ops or where it does not fit.
    Scatter,
    /// Implicit GEMM with workgroup tiles, any stride and padding; panics where the
    /// adapter's limits refuse it (`tiled_fits`).
    Tiled,
    /// Implicit GEMM with the shared operand passed by subgroup shuffles, any stride and
    /// padding; panics without subgroups (`subgroup_runs`).
    Subgroup,
    /// `Subgroup` with every lane gathering the shared operand itself: the path of subgroups
    /// with inactive lanes, which lavapipe never forms (for the kernels' tests; never chosen).
    SubgroupUnshared,
}

/// Largest kernel the row kernels unroll.
pub const ROWS_MAX_K: usize = 5;

/// Whether the row kernels can run the forward and the weight gradient of `s`.
pub fn rows_fit(s: &Conv2dShape) -> bool {
    s.stride == 1 && s.pad == 0 && s.k <= ROWS_MAX_K && s.w.is_multiple_of(4) && s.w_out().is_multiple_of(4)
}

/// Whether the row kernel can run the input gradient of `s` (as a forward conv of dy
/// padded by k − 1 − pad, whose output rows are w long).
pub fn grad_input_rows_fit(s: &Conv2dShape) -> bool {
    s.stride == 1 && s.pad < s.k && s.k <= ROWS_MAX_K && s.w.is_multiple_of(4)
}

/// Whether the scatter kernel can run the input gradient of `s`: every dx row in one
/// invocation, w_out + k − 1 accumulators.
pub fn grad_input_scatter_fit(s: &Conv2dShape) -> bool {
    s.stride == 1 && s.pad < s.k && s.k <= ROWS_MAX_K && s.w_out().is_multiple_of(4) && (4..=12).contains(&s.w_out())
}

/// `kernel`, with `Auto` resolved to a concrete kernel: the
/// `WGSL_CNN_CONV` family where it fits, else the tuner's measured fastest of the families
/// that fit (`GpuContext::tuned`; `run(temps, k)` records the op on temporaries of
/// `temp_lens` elements), else the first of them in the static order (see the module doc).
/// `blocked`: the register-blocked families of the op in their static order, with whether
/// each fits `s`; the tiled family joins them where the limits take it.
#[allow(clippy::too_many_arguments)]
fn choose(
    ctx: &GpuContext,
    kernel: ConvKernel,
    op: &'static str,
    s: &Conv2dShape,
    blocked: &[(&'static str, ConvKernel, bool)],
    temp_lens: &[usize],
    run: impl Fn(&[std::rc::Rc<RawBuffer>], ConvKernel),
) -> ConvKernel {
    if kernel != ConvKernel::Auto {
        return kernel;
    }
    let tiled = ("tiled", ConvKernel::Tiled, tiled_fits(ctx));
    let subgroup = ("subgroup", ConvKernel::Subgroup, subgroup_runs(ctx));
    if let Some(k) = env_override().filter(|k| blocked.iter().chain([&tiled, &subgroup]).any(|o| o.1 == *k && o.2)) {
        return k;
    }
    // On CPU adapters the tiled and subgroup kernels are not candidates: on lavapipe the
    // tiled ones took 5–50× the time of the register-blocked families (workgroup memory and
    // barriers are slow there), the subgroup ones 3–30× (conv2's input gradient 310 ms
    // against 23 ms for scatter: a tap's index arithmetic per gathered element), and timing
    // them would add seconds to every first run.
    let mut options = blocked.to_vec();
    if !ctx.is_cpu() {
        options.insert(0, tiled);
        options.push(subgroup);
    }
    let candidates: Vec<(&'static str, ConvKernel)> = options.iter().filter(|o| o.2).map(|o| (o.0, o.1)).collect();
    let fingerprint = [s.n, s.c_in, s.h, s.w, s.c_out, s.k, s.stride, s.pad, 0, 0, 0, 0];
    let shape = || format!("{}×{}×{}×{} → {} k{} s{} p{}", s.n, s.c_in, s.h, s.w, s.c_out, s.k, s.stride, s.pad);
    ctx.tuned(op, fingerprint, shape, &candidates, temp_lens, run)
}

/// Panics unless `fits`: a caller forced a kernel that cannot run `s`.
fn check_fit(fits: bool, kernel: ConvKernel, what: &str, s: &Conv2dShape) {
    assert!(fits, "conv2d {what}: the {kernel:?} kernel does not fit {s:?} on this adapter");
}

fn round4(x: usize) -> usize {
    x.div_ceil(4) * 4
}

fn groups(ctx: &GpuContext, invocations: usize) -> [u32; 3] {
    ctx.grid(invocations.div_ceil(64))
}

/// y = conv(x, w) + b.
pub fn forward(ctx: &GpuContext, s: &Conv2dShape, x: &RawBuffer, w: &RawBuffer, b: &RawBuffer, y: &RawBuffer) {
    forward_with(ctx, ConvKernel::Auto, s, x, w, b, y);
}

pub fn forward_with(
    ctx: &GpuContext,
    kernel: ConvKernel,
    s: &Conv2dShape,
    x: &RawBuffer,
    w: &RawBuffer,
    b: &RawBuffer,
    y: &RawBuffer,
) {
    assert!(x.len >= s.x_len() && w.len >= s.w_len() && b.len >= s.c_out && y.len >= s.y_len(), "conv2d forward {s:?}: buffer too small");
    if s.y_len() == 0 {
        return;
    }
    let options = [("rows", ConvKernel::Rows, rows_fit(s)), ("direct", ConvKernel::Direct, true)];
    let lens = [s.x_len(), s.w_len(), s.c_out, s.y_len()];
    let kernel = choose(ctx, kernel, "conv2d.forward", s, &options, &lens, |t, k| forward_with(ctx, k, s, &t[0], &t[1], &t[2], &t[3]));
    let mut p = Params::of(s);
    p.has_bias = 1;
    let positions = s.n * s.h_out() * s.w_out();
    match kernel {
        ConvKernel::Rows => {
            check_fit(rows_fit(s), kernel, "forward", s);
            let co4 = round4(s.c_out);
            let wt = weights_kc(ctx, s, w, false, co4);
            p.x_row = s.w as u32;
            p.co4 = co4 as u32;
            forward_rows(ctx, &p, &[x, &wt, b, y]);
        }
        ConvKernel::Tiled => {
            check_fit(tiled_fits(ctx), kernel, "forward", s);
            ctx.dispatch(&FORWARD_TILED, &p, &[x, w, b, y], ctx.grid(tiles(s.c_out, positions)));
        }
        ConvKernel::Subgroup | ConvKernel::SubgroupUnshared => {
            check_fit(subgroup_runs(ctx), kernel, "forward", s);
            p.flip = (kernel == ConvKernel::SubgroupUnshared) as u32;
            ctx.dispatch(&FORWARD_SUBGROUP, &p, &[x, w, b, y], ctx.grid(subgroup_tiles(s.c_out, positions)));
        }
        ConvKernel::Direct => {
            let inv = s.c_out.div_ceil(4) * positions.div_ceil(4);
            ctx.dispatch(&FORWARD_DIRECT, &p, &[x, w, b, y], groups(ctx, inv));
        }
        ConvKernel::Scatter => panic!("conv2d forward: no scatter kernel"),
        ConvKernel::Auto => unreachable!("resolved by choose"),
    }
}

/// Dispatches the row kernel with the widest block that divides p.w_out (8 outputs measured
/// fastest on lavapipe, then 12, then 4).
fn forward_rows(ctx: &GpuContext, p: &Params, buffers: &[&RawBuffer; 4]) {
    let w_out = p.w_out as usize;
    let (kernel, per) = if w_out.is_multiple_of(8) {
        (&FORWARD_ROWS8, 8)
    } else if w_out.is_multiple_of(12) {
        (&FORWARD_ROWS12, 12)
    } else {
        (&FORWARD_ROWS4, 4)
    };
    let inv = (p.co4 as usize / 4) * (w_out / per) * (p.n * p.h_out) as usize;
    ctx.dispatch(kernel, p, buffers, groups(ctx, inv));
}

/// The weights as a [rows, c4] matrix in the "conv2d.weights_kc" scratch buffer: transposed
/// (rows c_in·k·k, columns c_out) or, with `flip`, kernel-flipped with c_in and c_out
/// swapped (rows c_out·k·k, columns c_in). c4 is the column count rounded up to 4.
fn weights_kc(ctx: &GpuContext, s: &Conv2dShape, w: &RawBuffer, flip: bool, c4: usize) -> std::rc::Rc<RawBuffer> {
    let rows = if flip { s.c_out } else { s.c_in } * s.k * s.k;
    let wt = ctx.scratch("conv2d.weights_kc", rows * c4);
    let mut p = Params::of(s);
    p.co4 = c4 as u32;
    p.flip = flip as u32;
    ctx.dispatch(&WEIGHT_KC, &p, &[w, &wt], groups(ctx, rows * c4));
    wt
}

/// dx = ∂(conv)/∂x applied to dy; every element of dx is written.
pub fn grad_input(ctx: &GpuContext, s: &Conv2dShape, dy: &RawBuffer, w: &RawBuffer, dx: &RawBuffer) {
    grad_input_with(ctx, ConvKernel::Auto, s, dy, w, dx);
}

pub fn grad_input_with(ctx: &GpuContext, kernel: ConvKernel, s: &Conv2dShape, dy: &RawBuffer, w: &RawBuffer, dx: &RawBuffer) {
    assert!(dy.len >= s.y_len() && w.len >= s.w_len() && dx.len >= s.x_len(), "conv2d grad_input {s:?}: buffer too small");
    if s.x_len() == 0 {
        return;
    }
    // Scatter and rows are not both candidates: the memory plan (`grad_input_scratch`)
    // counts the padded dy of the row kernel only where it is the static choice.
    let first = if grad_input_scatter_fit(s) {
        ("scatter", ConvKernel::Scatter, true)
    } else {
        ("rows", ConvKernel::Rows, grad_input_rows_fit(s))
    };
    let options = [first, ("direct", ConvKernel::Direct, true)];
    let lens = [s.y_len(), s.w_len(), s.x_len()];
    let kernel = choose(ctx, kernel, "conv2d.grad_input", s, &options, &lens, |t, k| grad_input_with(ctx, k, s, &t[0], &t[1], &t[2]));
    match kernel {
        ConvKernel::Tiled => {
            check_fit(tiled_fits(ctx), kernel, "grad_input", s);
            ctx.dispatch(&GRAD_INPUT_TILED, &Params::of(s), &[dy, w, dx], ctx.grid(tiles(s.c_in, s.n * s.h * s.w)));
        }
        ConvKernel::Subgroup | ConvKernel::SubgroupUnshared => {
            check_fit(subgroup_runs(ctx), kernel, "grad_input", s);
            let p = Params { flip: (kernel == ConvKernel::SubgroupUnshared) as u32, ..Params::of(s) };
            ctx.dispatch(&GRAD_INPUT_SUBGROUP, &p, &[dy, w, dx], ctx.grid(subgroup_tiles(s.c_in, s.n * s.h * s.w)));
        }
        ConvKernel::Scatter => {
            check_fit(grad_input_scatter_fit(s), kernel, "grad_input", s);
            let ci4 = round4(s.c_in);
            let wt = weights_kc(ctx, s, w, true, ci4);
            let mut p = Params::of(s);
            p.co4 = ci4 as u32;
            let k = match s.w_out() / 4 {
                1 => &GRAD_INPUT_SCATTER4,
                2 => &GRAD_INPUT_SCATTER8,
                _ => &GRAD_INPUT_SCATTER12,
            };
            ctx.dispatch(k, &p, &[dy, &wt, dx], groups(ctx, ci4 / 4 * s.n * s.h));
        }
        ConvKernel::Rows => {
            check_fit(grad_input_rows_fit(s), kernel, "grad_input", s);
            grad_input_rows(ctx, s, dy, w, dx);
        }
        ConvKernel::Direct => {
            let inv = s.c_in.div_ceil(4) * (s.n * s.h * s.w).div_ceil(4);
            ctx.dispatch(&GRAD_INPUT_DIRECT, &Params::of(s), &[dy, w, dx], groups(ctx, inv));
        }
        ConvKernel::Auto => unreachable!("resolved by choose"),
    }
}

/// The input gradient on the row kernel (`grad_input_rows_fit`).
fn grad_input_rows(ctx: &GpuContext, s: &Conv2dShape, dy: &RawBuffer, w: &RawBuffer, dx: &RawBuffer) {
    // dx = forward conv (stride 1) of dy with k − 1 − pad zero columns on each side (rows
    // rounded up to a multiple of 4) and as many virtual zero rows (skipped by the
    // kernel), with the flipped, transposed weights.
    let edge = s.k - 1 - s.pad;
    let wp = round4(s.w_out() + 2 * edge);
    let dyp = ctx.scratch("conv2d.dy_padded", s.n * s.c_out * s.h_out() * wp);
    let mut pp = Params::of(s);
    pp.c_in = s.c_out as u32; // rows = n·c_out·h_out
    pp.h = s.h_out() as u32;
    pp.w = s.w_out() as u32;
    pp.x_row = wp as u32;
    pp.pad = edge as u32;
    ctx.dispatch(&PAD_COLUMNS, &pp, &[dy, &dyp], groups(ctx, s.n * s.c_out * s.h_out() * wp / 4));
    let ci4 = round4(s.c_in);
    let wt = weights_kc(ctx, s, w, true, ci4);
    let p = Params {
        n: s.n as u32,
        c_in: s.c_out as u32,
        h: s.h_out() as u32,
        w: wp as u32,
        c_out: s.c_in as u32,
        k: s.k as u32,
        stride: 1,
        pad: edge as u32,
        h_out: s.h as u32,
        w_out: s.w as u32,
        x_row: wp as u32,
        co4: ci4 as u32,
        ..Default::default()
    };
    let no_bias = ctx.scratch("conv2d.no_bias", 1);
    forward_rows(ctx, &p, &[&dyp, &wt, &no_bias, dx]);
}

/// (invocations per split, splits) of the weight gradient with kernel family `kernel`
/// (workgroups per split for `Tiled`): the most splits that still give each one some work.
fn weight_splits(s: &Conv2dShape, kernel: ConvKernel) -> (usize, usize) {
    let positions = s.n * s.h_out() * s.w_out();
    let (base, target, most) = match kernel {
        ConvKernel::Rows => (s.c_out.div_ceil(4) * s.c_in * s.k.div_ceil(2), SPLIT_TARGET, s.n * s.h_out()),
        // At least 4 reduction steps of the tile per split.
        ConvKernel::Tiled => (tiles(s.c_out, s.c_in * s.k * s.k), TILED_SPLIT_GROUPS, positions.div_ceil(64)),
        // At least 32 positions per split (4 subgroup-wide steps on lavapipe).
        ConvKernel::Subgroup | ConvKernel::SubgroupUnshared => {
            (subgroup_tiles(s.c_out, s.c_in * s.k * s.k), TILED_SPLIT_GROUPS, positions.div_ceil(32))
        }
        _ => (s.c_out.div_ceil(4) * (s.c_in * s.k * s.k).div_ceil(4), SPLIT_TARGET, positions),
    };
    (base, target.div_ceil(base.max(1)).clamp(1, most.max(1)))
}

/// The batch-dependent scratch buffer (tag, elements) the automatic kernel choice of
/// `grad_input` allocates for shape `s`, if any, so that a batch can be checked against the
/// device's limits before anything is allocated (`nn::sizer`).
pub fn grad_input_scratch(s: &Conv2dShape) -> Option<(&'static str, usize)> {
    (!grad_input_scatter_fit(s) && grad_input_rows_fit(s)).then(|| {
        let wp = round4(s.w_out() + 2 * (s.k - 1 - s.pad));
        ("conv2d.dy_padded", s.n * s.c_out * s.h_out() * wp)
    })
}

/// The split-K partials buffer (tag, elements) of `grad_weight` for shape `s`, with the
/// bias gradient's (the most either kernel needs).
pub fn grad_weight_scratch(s: &Conv2dShape) -> (&'static str, usize) {
    // Any kernel that fits may be chosen: the most any of them splits into.
    let rows = if rows_fit(s) { weight_splits(s, ConvKernel::Rows).1 } else { 0 };
    let gemm = weight_splits(s, ConvKernel::Tiled).1.max(weight_splits(s, ConvKernel::Subgroup).1);
    let splits = weight_splits(s, ConvKernel::Direct).1.max(gemm).max(rows);
    ("conv2d.partials", splits * (s.w_len() + s.c_out))
}

/// Invocations a split-K pass aims for: enough to keep every core of a CPU adapter (and a
/// small GPU) busy without making the second pass long.
const SPLIT_TARGET: usize = 4096;

/// Workgroups the tiled split-K pass aims for: a few per compute unit of a large GPU.
const TILED_SPLIT_GROUPS: usize = 256;

/// dw += ∂(conv)/∂w applied to dy (sum over the batch): every element of dw gets the
/// contribution, rounded to f32, added to it (parameter gradients accumulate; zero dw first
/// for the gradient alone). With `db`, also db[co] += Σ dy[·, co, ·, ·] in the same two
/// dispatches: the bias gradient is split and summed as the weights' (it is the weight
/// gradient of an input of ones). The split-K partials are summed first, then added.
pub fn grad_weight(ctx: &GpuContext, s: &Conv2dShape, x: &RawBuffer, dy: &RawBuffer, dw: &RawBuffer, db: Option<&RawBuffer>) {
    grad_weight_with(ctx, ConvKernel::Auto, s, x, dy, dw, db);
}

pub fn grad_weight_with(
    ctx: &GpuContext,
    kernel: ConvKernel,
    s: &Conv2dShape,
    x: &RawBuffer,
    dy: &RawBuffer,
    dw: &RawBuffer,
    db: Option<&RawBuffer>,
) {
    assert!(x.len >= s.x_len() && dy.len >= s.y_len() && dw.len >= s.w_len(), "conv2d grad_weight {s:?}: buffer too small");
    assert!(db.is_none_or(|db| db.len >= s.c_out), "conv2d grad_weight {s:?}: bias gradient too small");
    let len = s.w_len();
    // The bias partials come from the invocations of the first weight column.
    assert!(s.c_in > 0 && s.k > 0, "conv2d grad_weight {s:?}: no weights to carry the bias gradient");
    let bias_len = if db.is_some() { s.c_out } else { 0 };
    if len == 0 {
        return;
    }
    let options = [("rows", ConvKernel::Rows, rows_fit(s)), ("direct", ConvKernel::Direct, true)];
    let lens = [s.x_len(), s.y_len(), s.w_len(), s.c_out];
    let kernel = choose(ctx, kernel, "conv2d.grad_weight", s, &options, &lens, |t, k| {
        grad_weight_with(ctx, k, s, &t[0], &t[1], &t[2], db.map(|_| &*t[3]))
    });
    let mut p = Params::of(s);
    let (base, splits) = weight_splits(s, kernel);
    p.splits = splits as u32;
    p.len = len as u32;
    p.has_bias = db.is_some() as u32;
    // Sized for whichever kernel may run, bias included (the memory plan counts that, and
    // the tuner's trials then never grow it).
    let part = ctx.scratch("conv2d.partials", grad_weight_scratch(s).1);
    match kernel {
        ConvKernel::Rows => {
            check_fit(rows_fit(s), kernel, "grad_weight", s);
            ctx.dispatch(&GRAD_WEIGHT_ROWS, &p, &[x, dy, &part], groups(ctx, base * splits));
        }
        ConvKernel::Tiled => {
            check_fit(tiled_fits(ctx), kernel, "grad_weight", s);
            ctx.dispatch(&GRAD_WEIGHT_TILED, &p, &[x, dy, &part], ctx.grid(base * splits));
        }
        ConvKernel::Subgroup | ConvKernel::SubgroupUnshared => {
            check_fit(subgroup_runs(ctx), kernel, "grad_weight", s);
            p.flip = (kernel == ConvKernel::SubgroupUnshared) as u32;
            ctx.dispatch(&GRAD_WEIGHT_SUBGROUP, &p, &[x, dy, &part], ctx.grid(base * splits));
        }
        ConvKernel::Direct => ctx.dispatch(&GRAD_WEIGHT_DIRECT, &p, &[x, dy, &part], groups(ctx, base * splits)),
        ConvKernel::Scatter => panic!("conv2d grad_weight: no scatter kernel"),
        ConvKernel::Auto => unreachable!("resolved by choose"),
    }
    match db {
        Some(db) => ctx.dispatch(&SUM_SPLITS_BIAS, &p, &[&part, dw, db], groups(ctx, len + bias_len)),
        None => ctx.dispatch(&SUM_SPLITS, &p, &[&part, dw], groups(ctx, len)),
    }
}
