// Prepended to every shader file by src/gpu/context.rs (WGSL has no #include).
//
// Large 1-D grids are folded into 2-D because a dimension holds at most 65,535 workgroups;
// `flat_group` undoes the fold. Every kernel bounds-checks its flat index, so a grid may
// be larger than the work.
fn flat_group(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x;
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
