//! Number formatting shared by the printed reports (model summary, data set lines, bench).

/// Digits in groups of three: 431220 → "431,220".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_of_three() {
        for (n, s) in [(0, "0"), (999, "999"), (1000, "1,000"), (60000, "60,000"), (431220, "431,220"), (320000000, "320,000,000"), (u64::MAX, "18,446,744,073,709,551,615")] {
            assert_eq!(super::thousands(n), s);
        }
    }
}
