// Prepended to every shader file by src/gpu/context.rs (WGSL has no #include).
//
// Large 1-D grids are folded into 2-D because a dimension holds at most 65,535 workgroups;
// `flat_group` undoes the fold. Every kernel bounds-checks its flat index, so a grid may
// be larger than the work.
fn flat_group(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.x + wg.y * nwg.x;
}
