//! The comparison rule used by every GPU-vs-reference test (as llm.c's validate_result and
//! burn's rel_abs): element i passes when |got − want| ≤ atol + rtol·|want|. A NaN anywhere
//! (e.g. an output element the kernel never wrote over its NaN poison) fails.

use std::fmt;

#[derive(Clone, Debug)]
pub struct Comparison {
    pub len: usize,
    pub max_abs_err: f64,
    /// ‖got − want‖ / ‖want‖ (‖·‖ the Euclidean norm; 0/0 counts as 0).
    pub rel_l2_err: f64,
    pub failures: usize,
    /// (index, got, want) of the first few failing elements.
    pub first_failures: Vec<(usize, f64, f64)>,
}

impl Comparison {
    pub fn passed(&self) -> bool {
        self.failures == 0
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} elements: max abs err {:.3e}, rel L2 err {:.3e}, {} failing",
            self.len, self.max_abs_err, self.rel_l2_err, self.failures
        )?;
        for (i, g, w) in &self.first_failures {
            write!(f, "\n  [{i}] got {g:e}, want {w:e}")?;
        }
        Ok(())
    }
}

pub fn compare(got: &[f32], want: &[f32], atol: f64, rtol: f64) -> Comparison {
    let g: Vec<f64> = got.iter().map(|&x| x as f64).collect();
    let w: Vec<f64> = want.iter().map(|&x| x as f64).collect();
    compare_f64(&g, &w, atol, rtol)
}

pub fn compare_f64(got: &[f64], want: &[f64], atol: f64, rtol: f64) -> Comparison {
    assert_eq!(got.len(), want.len(), "compared slices differ in length");
    let (mut max_abs, mut diff2, mut ref2, mut failures) = (0.0f64, 0.0f64, 0.0f64, 0usize);
    let mut first = Vec::new();
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs();
        let ok = d <= atol + rtol * w.abs(); // false for NaN
        if !ok {
            failures += 1;
            if first.len() < 8 {
                first.push((i, g, w));
            }
        }
        max_abs = if d.is_nan() || max_abs.is_nan() { f64::NAN } else { max_abs.max(d) };
        diff2 += d * d;
        ref2 += w * w;
    }
    let rel = if ref2 == 0.0 { diff2.sqrt() } else { (diff2 / ref2).sqrt() };
    Comparison { len: got.len(), max_abs_err: max_abs, rel_l2_err: rel, failures, first_failures: first }
}
