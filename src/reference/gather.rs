//! Batch assembly from the u8 dataset: x[i, :] = images[perm[offset + i]]/255,
//! y[i] = labels[perm[offset + i]], for i < n. images is [count, pixels].

#[allow(clippy::too_many_arguments)]
pub fn gather(
    images: &[u8],
    labels: &[u8],
    pixels: usize,
    perm: &[u32],
    offset: usize,
    n: usize,
    x: &mut [f32],
    y: &mut [u32],
) {
    assert!(offset + n <= perm.len(), "gather: rows {offset}..{} beyond the permutation's {}", offset + n, perm.len());
    assert!(x.len() >= n * pixels && y.len() >= n, "gather: x or y too short for {n} rows");
    for i in 0..n {
        let src = perm[offset + i] as usize;
        let img = &images[src * pixels..(src + 1) * pixels];
        for (d, &p) in x[i * pixels..(i + 1) * pixels].iter_mut().zip(img) {
            *d = p as f32 / 255.0;
        }
        y[i] = labels[src] as u32;
    }
}
