//! Numbers from Postgres' text: integers, decimals with a fixed scale and
//! floats, each exact or refused (never rounded), and their text forms
//! again for `COPY`.
//!
//! Errors are plain reasons; the caller names the column and the value.

/// An integer's text (as Postgres or a JSON number prints it) in `lo..=hi`.
pub fn parse_int(text: &str, lo: i64, hi: i64) -> Result<i64, String> {
    let v: i64 = text.parse().map_err(|_| "not an integer".to_string())?;
    if v < lo || v > hi {
        return Err(format!("outside {lo}..={hi}"));
    }
    Ok(v)
}

/// A numeric's text as the unscaled integer of a `Decimal128(precision,
/// scale)`: exact or an error. Fraction digits beyond the scale are
/// accepted only when they are zeros (the value is still exact); NaN and
/// the infinities have no decimal form.
pub fn parse_decimal(text: &str, precision: u8, scale: i8) -> Result<i128, String> {
    if matches!(text, "NaN" | "Infinity" | "-Infinity") {
        return Err(format!("{text} has no decimal form"));
    }
    let scale = usize::try_from(scale).map_err(|_| "a negative scale".to_string())?;
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return Err("not a decimal number".to_string());
    }
    let (kept, dropped) = frac.split_at(frac.len().min(scale));
    if dropped.bytes().any(|b| b != b'0') {
        return Err(format!(
            "more fraction digits than the column's scale ({scale})"
        ));
    }
    let int = int.trim_start_matches('0');
    if int.len() + scale > usize::from(precision) {
        return Err(format!(
            "more digits than the column's precision ({precision}, scale {scale})"
        ));
    }
    let mut v: i128 = 0;
    let padding = std::iter::repeat_n(b'0', scale - kept.len());
    for b in int.bytes().chain(kept.bytes()).chain(padding) {
        // At most 38 digits by the check above, so this cannot overflow;
        // checked anyway so that a wrong precision cannot panic.
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(i128::from(b - b'0')))
            .ok_or_else(|| "too many digits".to_string())?;
    }
    Ok(if negative { -v } else { v })
}

/// The text of an unscaled decimal with `scale` fraction digits (as
/// Postgres prints a `numeric(p,s)`: `1.50`, `-0.05`, `0`).
pub fn format_decimal(v: i128, scale: i8) -> String {
    let digits = v.unsigned_abs().to_string();
    let sign = if v < 0 { "-" } else { "" };
    let scale = usize::try_from(scale).unwrap_or(0);
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// Whether `text` is a float as Postgres prints one (not Rust's other
/// spellings such as `inf`, which Postgres would not have written).
fn float_text(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if ok {
        Ok(())
    } else {
        Err("not a floating-point number".to_string())
    }
}

/// A double's text, bit-exact: `NaN`, `Infinity`, `-Infinity`, `-0` kept.
pub fn parse_f64(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => Ok(f64::NAN),
        "Infinity" => Ok(f64::INFINITY),
        "-Infinity" => Ok(f64::NEG_INFINITY),
        _ => {
            float_text(text)?;
            text.parse()
                .map_err(|_| "not a floating-point number".to_string())
        }
    }
}

/// A real's text, parsed as f32 directly (through f64 it could round twice).
pub fn parse_f32(text: &str) -> Result<f32, String> {
    match text {
        "NaN" => Ok(f32::NAN),
        "Infinity" => Ok(f32::INFINITY),
        "-Infinity" => Ok(f32::NEG_INFINITY),
        _ => {
            float_text(text)?;
            let v: f32 = text
                .parse()
                .map_err(|_| "not a floating-point number".to_string())?;
            // Rust saturates an out-of-range literal to infinity; Postgres
            // would have refused it, so it cannot be a real's own text.
            if v.is_infinite() {
                return Err("outside the range of real".to_string());
            }
            Ok(v)
        }
    }
}

/// A double's text that Postgres reads back to the same bits: shortest
/// round-trip digits, `NaN`, `Infinity`, `-0`.
pub fn format_f64(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else if v == 0.0 || (1e-4..1e15).contains(&v.abs()) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// A real's text, as [`format_f64`] but with f32's shortest digits.
pub fn format_f32(v: f32) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else if v == 0.0 || (1e-4..1e15).contains(&v.abs()) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact_or_refused() {
        assert_eq!(parse_decimal("-1234.56", 12, 2), Ok(-123456));
        assert_eq!(parse_decimal("1.5", 12, 2), Ok(150));
        assert_eq!(parse_decimal("1.500", 12, 2), Ok(150));
        assert_eq!(parse_decimal("0", 5, 2), Ok(0));
        assert_eq!(parse_decimal("-0", 5, 0), Ok(0));
        assert_eq!(parse_decimal(".5", 5, 1), Ok(5));
        let nines = "9".repeat(38);
        assert_eq!(parse_decimal(&nines, 38, 0), Ok(10i128.pow(38) - 1));
        assert_eq!(
            parse_decimal(&format!("-{nines}"), 38, 0),
            Ok(1 - 10i128.pow(38))
        );
        assert_eq!(
            parse_decimal(&format!("0.{nines}"), 38, 38),
            Ok(10i128.pow(38) - 1)
        );
        assert!(parse_decimal(&format!("1{nines}"), 38, 0)
            .unwrap_err()
            .contains("precision"));
        assert!(parse_decimal("1.234", 12, 2).unwrap_err().contains("scale"));
        assert!(parse_decimal("1000", 5, 2)
            .unwrap_err()
            .contains("precision"));
        assert_eq!(
            parse_decimal("NaN", 12, 2).unwrap_err(),
            "NaN has no decimal form"
        );
        for bad in ["", "-", ".", "1e5", "1.2.3", "--1", " 1", "1_0", "Infinity"] {
            assert!(parse_decimal(bad, 12, 2).is_err(), "{bad}");
        }
    }

    #[test]
    fn decimals_print_with_their_scale() {
        assert_eq!(format_decimal(150, 2), "1.50");
        assert_eq!(format_decimal(-5, 2), "-0.05");
        assert_eq!(format_decimal(0, 2), "0.00");
        assert_eq!(format_decimal(0, 0), "0");
        assert_eq!(format_decimal(i128::MIN, 0), i128::MIN.to_string());
        let max = 10i128.pow(38) - 1;
        assert_eq!(format_decimal(-max, 38), format!("-0.{}", "9".repeat(38)));
    }

    #[test]
    fn floats_keep_every_bit() {
        assert!(parse_f64("NaN").unwrap().is_nan());
        assert_eq!(parse_f64("Infinity"), Ok(f64::INFINITY));
        assert_eq!(parse_f64("-Infinity"), Ok(f64::NEG_INFINITY));
        assert_eq!(parse_f64("-0").unwrap().to_bits(), (-0.0f64).to_bits());
        assert_eq!(parse_f64("5e-324").unwrap().to_bits(), 1);
        assert_eq!(parse_f64("-1.7976931348623157e+308"), Ok(f64::MIN));
        assert_eq!(parse_f32("3.4028235e+38"), Ok(f32::MAX));
        assert_eq!(parse_f32("1e-45").unwrap().to_bits(), 1);
        assert_eq!(parse_f32("-0").unwrap().to_bits(), (-0.0f32).to_bits());
        for bad in ["", "inf", "nan", "infinity", "1x", "0x10", "abc"] {
            assert!(parse_f64(bad).is_err(), "{bad}");
        }
        assert!(parse_f32("1e39").is_err());
        assert_eq!(parse_int("-32768", -32768, 32767), Ok(-32768));
        assert!(parse_int("32768", -32768, 32767).is_err());
        assert!(parse_int("1.0", i64::MIN, i64::MAX).is_err());
    }

    #[test]
    fn floats_print_in_forms_that_read_back_to_the_same_bits() {
        let cases = [
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (-0.0, "-0"),
            (0.0, "0"),
            (0.1, "0.1"),
            (5e-324, "5e-324"),
            (f64::MIN, "-1.7976931348623157e308"),
            (123456.5, "123456.5"),
            (1e15, "1e15"),
        ];
        for (v, text) in cases {
            assert_eq!(format_f64(v), text);
            assert_eq!(parse_f64(text).unwrap().to_bits(), v.to_bits(), "{text}");
        }
        assert_eq!(format_f32(1.1), "1.1");
        assert_eq!(format_f32(f32::MAX), "3.4028235e38");
        assert_eq!(format_f32(-0.0), "-0");
        for v in [f32::MIN_POSITIVE, 1e-45, 0.3, f32::MAX, -7.5e-5] {
            assert_eq!(parse_f32(&format_f32(v)).unwrap().to_bits(), v.to_bits());
        }
    }
}
