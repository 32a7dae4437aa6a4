//! Numbers as reports and tables print them.

/// `n` with thousands separated by commas: `25557032` → `25,557,032`.
///
/// ```
/// assert_eq!(bigbatch_spec::thousands(25_557_032), "25,557,032");
/// assert_eq!(bigbatch_spec::thousands(999), "999");
/// ```
pub fn thousands(n: usize) -> String {
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
