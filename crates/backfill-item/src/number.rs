//! DynamoDB's number rules, checked before a request is sent: at most 38
//! significant digits, magnitude between 1E-130 and
//! 9.9999999999999999999999999999999999999E+125 (or zero), no NaN or Infinity.

/// Most significant digits DynamoDB keeps.
pub const MAX_SIGNIFICANT_DIGITS: usize = 38;
/// Exponent of the most significant digit of the largest magnitude.
pub const MAX_EXPONENT: i64 = 125;
/// Exponent of the smallest non-zero magnitude.
pub const MIN_EXPONENT: i64 = -130;

/// Why a decimal text is not a DynamoDB number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("{0:?} is not a number DynamoDB can store (NaN and Infinity have no N form)")]
    NotFinite(String),
    #[error("{0:?} is not a decimal number")]
    Syntax(String),
    #[error("{text:?} has {digits} significant digits; DynamoDB keeps at most 38")]
    TooPrecise { text: String, digits: usize },
    #[error(
        "{0:?} is larger in magnitude than DynamoDB's 9.9999999999999999999999999999999999999E+125"
    )]
    TooLarge(String),
    #[error("{0:?} is smaller in magnitude than DynamoDB's 1E-130")]
    TooSmall(String),
}

/// Checks a decimal text (`-12.50`, `1e+100`) against DynamoDB's rules and
/// returns the text to send (without a leading `+`).
pub fn to_dynamo_number(text: &str) -> Result<String, NumberError> {
    if check_dynamo_number(text)? == Checked::Zero {
        return Ok("0".to_string());
    }
    let t = crate::trim_ascii_fast(text);
    Ok(t.strip_prefix('+').unwrap_or(t).to_string())
}

/// What [`check_dynamo_number`] found of a valid number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Zero, whatever its form: sent as `0`.
    Zero,
    NonZero,
}

/// Whether [`to_dynamo_number`] returns `text` unchanged, so a caller that
/// owns it can keep it: a valid number, not zero, with nothing to trim and
/// no leading `+`.
pub fn is_sent_as_is(text: &str) -> bool {
    let t = crate::trim_ascii_fast(text);
    t.len() == text.len() && !t.starts_with('+') && check_dynamo_number(t) == Ok(Checked::NonZero)
}

/// [`to_dynamo_number`]'s checks without building its answer: every copied
/// number passes here, so it does not allocate.
pub fn check_dynamo_number(text: &str) -> Result<Checked, NumberError> {
    let t = crate::trim_ascii_fast(text);
    // Only a text with one of these letters can spell NaN or Infinity.
    if t.bytes().any(|b| matches!(b, b'n' | b'N' | b'i' | b'I')) {
        let lower = t.to_ascii_lowercase();
        if lower.contains("nan") || lower.contains("inf") {
            return Err(NumberError::NotFinite(text.to_string()));
        }
    }
    let syntax = || NumberError::Syntax(text.to_string());
    let unsigned = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (mantissa, exp) = match unsigned.find(['e', 'E']) {
        Some(i) => {
            let e: i64 = unsigned[i + 1..].parse().map_err(|_| syntax())?;
            (&unsigned[..i], e)
        }
        None => (unsigned, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(syntax());
    }
    let Some((first, last)) = nonzero_span(int_part, frac_part) else {
        return Ok(Checked::Zero);
    };
    let significant = last - first + 1;
    if significant > MAX_SIGNIFICANT_DIGITS {
        return Err(NumberError::TooPrecise {
            text: text.to_string(),
            digits: significant,
        });
    }
    // Exponent of the most significant digit: position relative to the point.
    // Saturating: an absurd exponent is too large or too small, not a panic.
    let msd_exp = (int_part.len() as i64 - 1 - first as i64).saturating_add(exp);
    if msd_exp > MAX_EXPONENT {
        return Err(NumberError::TooLarge(text.to_string()));
    }
    if msd_exp < MIN_EXPONENT {
        return Err(NumberError::TooSmall(text.to_string()));
    }
    Ok(Checked::NonZero)
}

/// Positions of the first and last nonzero digit among the digits of
/// `int_part` followed by `frac_part` (ASCII digits), or `None` when all are
/// zero: the significant digits of a mantissa, without allocating.
pub(crate) fn nonzero_span(int_part: &str, frac_part: &str) -> Option<(usize, usize)> {
    let digits = || int_part.bytes().chain(frac_part.bytes());
    let first = digits().position(|d| d != b'0')?;
    let total = int_part.len() + frac_part.len();
    let last = total - 1 - digits().rev().position(|d| d != b'0').unwrap_or(0);
    Some((first, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_numbers() {
        for s in [
            "0", "-0", "0.000", "12.50", "-1", "1e+100", "1.5E-7", ".5", "5.", "+3",
        ] {
            assert!(to_dynamo_number(s).is_ok(), "{s}");
        }
        assert_eq!(to_dynamo_number("+3").unwrap(), "3");
        assert_eq!(to_dynamo_number("0.000").unwrap(), "0");
    }

    #[test]
    fn thirty_eight_digits_pass_thirty_nine_fail() {
        let d38 = "1".repeat(38);
        let d39 = "1".repeat(39);
        assert!(to_dynamo_number(&d38).is_ok());
        assert!(matches!(
            to_dynamo_number(&d39),
            Err(NumberError::TooPrecise { digits: 39, .. })
        ));
        // Leading and trailing zeros are not significant.
        assert!(to_dynamo_number(&format!("000{d38}000")).is_ok());
        assert!(to_dynamo_number(&format!("0.000{d38}")).is_ok());
        assert!(to_dynamo_number(&format!("1.{}", "0".repeat(60))).is_ok());
    }

    #[test]
    fn magnitude_limits() {
        assert!(to_dynamo_number(&format!("9.{}E+125", "9".repeat(37))).is_ok());
        assert_eq!(
            to_dynamo_number("1E+126"),
            Err(NumberError::TooLarge("1E+126".into()))
        );
        assert!(to_dynamo_number(&format!("1{}", "0".repeat(126))).is_err());
        assert!(to_dynamo_number(&format!("1{}", "0".repeat(125))).is_ok());
        assert!(to_dynamo_number("1E-130").is_ok());
        assert_eq!(
            to_dynamo_number("1E-131"),
            Err(NumberError::TooSmall("1E-131".into()))
        );
        assert!(to_dynamo_number("-9.9E-131").is_err());
    }

    #[test]
    fn refuses_nan_infinity_and_garbage() {
        for s in ["NaN", "Infinity", "-Infinity", "inf"] {
            assert!(
                matches!(to_dynamo_number(s), Err(NumberError::NotFinite(_))),
                "{s}"
            );
        }
        for s in ["", "-", ".", "1e", "1.2.3", "0x10", "1e5.5", "12a"] {
            assert!(
                matches!(to_dynamo_number(s), Err(NumberError::Syntax(_))),
                "{s}"
            );
        }
    }
}
