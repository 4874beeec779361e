//! Numbers for people: p-values, trimmed decimals, milliseconds.

/// `p=0.034`, or `p<1e-300` when the p-value is below what a double holds.
pub fn p_is(p: f64) -> String {
    if p == 0.0 {
        "p<1e-300".to_string()
    } else {
        format!("p={}", sci(p))
    }
}

/// A p-value for people: `0.034`, `3.1e-12`, `<1e-300` (below what a double holds).
pub fn sci(p: f64) -> String {
    if p == 0.0 {
        "<1e-300".to_string()
    } else if p >= 0.001 {
        trim_float(p, 3)
    } else {
        format!("{p:.1e}")
    }
}

/// `x` with at most `decimals` decimals, trailing zeros dropped: `1.5`, `10`, `0.25`.
pub fn trim_float(x: f64, decimals: usize) -> String {
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Milliseconds for people: `0.42ms`, `8.1ms`, `120ms`, `1.5s`.
pub fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{}s", trim_float(v / 1000.0, 2))
    } else if v >= 100.0 {
        format!("{v:.0}ms")
    } else if v >= 10.0 {
        format!("{}ms", trim_float(v, 1))
    } else {
        format!("{}ms", trim_float(v, 2))
    }
}

/// A difference of milliseconds with its sign: `+35ms`, `-1.2s`.
pub fn signed_ms(v: f64) -> String {
    if v < 0.0 {
        format!("-{}", ms(-v))
    } else {
        format!("+{}", ms(v))
    }
}
