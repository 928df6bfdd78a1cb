// Prepended to every shader file by src/gpu/context.rs (WGSL has no #include).
//
// Large 1-D grids are folded into 2-D because a dimension holds at most 65,535 workgroups;
// `flat_group` undoes the fold. Every kernel bounds-checks its flat index, so a grid may
// be larger than the work.
fn flat_group(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x;
}

// The pooling windows that hold input row (or column) i, for windows of k with `stride` and
// `count` windows along the axis: the o in [range.x, range.y) with o·stride ≤ i < o·stride + k.
// Shared by the backward kernels that gather (avgpool, maxpool with stride ≠ k).
fn windows_holding(i: u32, k: u32, stride: u32, count: u32) -> vec2<u32> {
    let lo = select(0u, (i - k) / stride + 1u, i >= k);
    return vec2<u32>(lo, min(i / stride + 1u, count));
}

// ReLU's rule, shared by its kernels and the matmul epilogues: keep v where its sign bit is
// clear and it is not +0 (positive, +inf, positive NaN), or where it is any NaN (NaN
// propagates, as in PyTorch); elsewhere ReLU gives +0.0 and its backward a zero gradient.
fn relu_keeps(v: f32) -> bool {
    let b = bitcast<u32>(v);
    return bitcast<i32>(b) > 0 || (b & 0x7fffffffu) > 0x7f800000u;
}
fn relu_keeps4(v: vec4<f32>) -> vec4<bool> {
    let b = bitcast<vec4<u32>>(v);
    return (bitcast<vec4<i32>>(b) > vec4<i32>(0)) | ((b & vec4<u32>(0x7fffffffu)) > vec4<u32>(0x7f800000u));
}

// MaxPool2d's k = 2 backward for one output pair (w % 4 == 0): windows 2c, 2c + 1 of output
// row oy, with gradients g and argmaxes a, cover input columns 4c..4c + 3 of rows 2oy and
// 2oy + 1, i.e. plane indices i0 + 0..3 (top, i0 = 2oy·w + 4c) and those + w (bottom).
// Returns the routed gradient of that 2×4 block: g where the index is its window's argmax,
// else 0 (maxpool_backward_k2, and BatchNorm's backward through a pool).
fn pool2_route(g: vec2<f32>, a: vec2<u32>, i0: u32, w: u32) -> array<vec4<f32>, 2> {
    let top = vec4<u32>(i0, i0 + 1u, i0 + 2u, i0 + 3u);
    let gg = vec4<f32>(g.x, g.x, g.y, g.y);
    let aa = vec4<u32>(a.x, a.x, a.y, a.y);
    return array<vec4<f32>, 2>(select(vec4<f32>(0.0), gg, aa == top), select(vec4<f32>(0.0), gg, aa == top + vec4<u32>(w)));
}
