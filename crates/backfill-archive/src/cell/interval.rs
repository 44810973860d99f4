//! Intervals: Postgres' ISO 8601 text (`IntervalStyle = iso_8601`) to its
//! own three fields (months, days, micros) and back.
//!
//! Postgres prints each field with its own sign (`P-10M-3DT4H5M6.5S`), a
//! fraction only on seconds, and `PT0S` for zero; the same text is valid
//! input whatever the reading session's IntervalStyle, so it is also the
//! `COPY` form.

const MICROS_PER_SECOND: i64 = 1_000_000;

/// One `[-]digits[.digits]` number of a duration, in the unit's
/// sub-units: `scale` sub-units per unit, a fraction only when `scale`
/// allows (seconds to micros).
fn number(s: &str, frac_ok: bool) -> Result<(i64, i64), String> {
    let (negative, unsigned) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) if frac_ok => (i, Some(f)),
        Some(_) => return Err("a fraction on a field other than seconds".to_string()),
        None => (unsigned, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) {
        return Err(format!("{s:?} is not a number"));
    }
    let int: i64 = int.parse().map_err(|_| format!("{s:?} is too large"))?;
    let micros = match frac {
        None => 0,
        Some(f) if all_digits(f) && f.len() <= 6 => {
            // At most 6 digits: the scaled value is below 10^6.
            f.parse::<i64>().unwrap_or(0) * 10i64.pow(6 - f.len() as u32)
        }
        Some(_) => return Err("a fraction of seconds with 1 to 6 digits expected".to_string()),
    };
    Ok(if negative {
        (-int, -micros)
    } else {
        (int, micros)
    })
}

/// An interval's ISO 8601 text as `(months, days, micros)`.
pub fn parse_interval(s: &str) -> Result<(i32, i32, i64), String> {
    let overflow = || "outside the range of an interval".to_string();
    let Some(body) = s.strip_prefix('P') else {
        return Err("not an ISO 8601 interval (P...)".to_string());
    };
    let (date, time) = match body.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return Err("an empty time part".to_string()),
        None => (body, None),
    };
    if date.is_empty() && time.is_none() {
        return Err("an interval with no fields".to_string());
    }
    let (mut months, mut days, mut micros) = (0i64, 0i64, 0i64);
    let mut rest = date;
    let mut last = 0;
    while !rest.is_empty() {
        let at = rest
            .find(|c: char| c.is_ascii_alphabetic())
            .ok_or_else(|| "a number without its unit".to_string())?;
        let (n, _) = number(&rest[..at], false)?;
        let (unit, rank) = match &rest[at..at + 1] {
            "Y" => (12, 1),
            "M" => (1, 2),
            "W" => (7, 3),
            "D" => (1, 4),
            u => return Err(format!("unknown unit {u:?}")),
        };
        if rank <= last {
            return Err("units out of order".to_string());
        }
        last = rank;
        let target = if rank <= 2 { &mut months } else { &mut days };
        *target = n
            .checked_mul(unit)
            .and_then(|v| target.checked_add(v))
            .ok_or_else(overflow)?;
        rest = &rest[at + 1..];
    }
    let mut rest = time.unwrap_or("");
    let mut last = 0;
    while !rest.is_empty() {
        let at = rest
            .find(|c: char| c.is_ascii_alphabetic())
            .ok_or_else(|| "a number without its unit".to_string())?;
        let (unit, rank) = match &rest[at..at + 1] {
            "H" => (3600 * MICROS_PER_SECOND, 1),
            "M" => (60 * MICROS_PER_SECOND, 2),
            "S" => (MICROS_PER_SECOND, 3),
            u => return Err(format!("unknown unit {u:?}")),
        };
        if rank <= last {
            return Err("units out of order".to_string());
        }
        last = rank;
        let (n, frac) = number(&rest[..at], rank == 3)?;
        micros = n
            .checked_mul(unit)
            .and_then(|v| v.checked_add(frac))
            .and_then(|v| micros.checked_add(v))
            .ok_or_else(overflow)?;
        rest = &rest[at + 1..];
    }
    let months = i32::try_from(months).map_err(|_| overflow())?;
    let days = i32::try_from(days).map_err(|_| overflow())?;
    Ok((months, days, micros))
}

/// `(months, days, micros)` as the ISO 8601 text Postgres prints.
pub fn format_interval(months: i32, days: i32, micros: i64) -> String {
    if (months, days, micros) == (0, 0, 0) {
        return "PT0S".to_string();
    }
    let mut s = String::from("P");
    // Truncating division, as Postgres splits fields: each keeps the sign.
    let (years, months) = (months / 12, months % 12);
    for (v, unit) in [
        (i64::from(years), 'Y'),
        (i64::from(months), 'M'),
        (i64::from(days), 'D'),
    ] {
        if v != 0 {
            s.push_str(&format!("{v}{unit}"));
        }
    }
    if micros != 0 {
        s.push('T');
        let hour = 3600 * MICROS_PER_SECOND;
        let (hours, rest) = (micros / hour, micros % hour);
        let (minutes, rest) = (
            rest / (60 * MICROS_PER_SECOND),
            rest % (60 * MICROS_PER_SECOND),
        );
        if hours != 0 {
            s.push_str(&format!("{hours}H"));
        }
        if minutes != 0 {
            s.push_str(&format!("{minutes}M"));
        }
        if rest != 0 {
            let sign = if rest < 0 { "-" } else { "" };
            let abs = rest.unsigned_abs();
            let (secs, frac) = (abs / 1_000_000, abs % 1_000_000);
            if frac == 0 {
                s.push_str(&format!("{sign}{secs}S"));
            } else {
                let f = format!("{frac:06}");
                s.push_str(&format!("{sign}{secs}.{}S", f.trim_end_matches('0')));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3600 * MICROS_PER_SECOND;

    #[test]
    fn postgres_iso_forms_parse_to_its_three_fields() {
        let cases = [
            ("P1Y2M3DT4H5M6.5S", (14, 3, 4 * H + 306_500_000)),
            ("P-10M-3DT4H5M6.5S", (-10, -3, 4 * H + 306_500_000)),
            ("PT0S", (0, 0, 0)),
            ("PT-0.000001S", (0, 0, -1)),
            ("PT-0.5S", (0, 0, -500_000)),
            ("P1MT-1S", (1, 0, -1_000_000)),
            ("P-1D", (0, -1, 0)),
            ("P-1DT1S", (0, -1, 1_000_000)),
            ("P178000000Y", (2_136_000_000, 0, 0)),
            ("P-178000000Y", (-2_136_000_000, 0, 0)),
            ("P178956970Y7M", (i32::MAX, 0, 0)),
            ("P-178956970Y-8M", (i32::MIN, 0, 0)),
            ("P-2147483648D", (0, i32::MIN, 0)),
            ("PT2562047788H54.775807S", (0, 0, i64::MAX)),
            ("PT-2562047788H-54.775808S", (0, 0, i64::MIN)),
            ("P1M-1DT-1S", (1, -1, -1_000_000)),
            ("P1Y1M", (13, 0, 0)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_interval(text), Ok(want), "{text}");
            assert_eq!(format_interval(want.0, want.1, want.2), text, "{text}");
        }
        assert_eq!(parse_interval("P1W"), Ok((0, 7, 0)));
        assert_eq!(parse_interval("PT1.5S"), Ok((0, 0, 1_500_000)));
    }

    #[test]
    fn bad_or_overflowing_intervals_are_refused() {
        for bad in [
            "",
            "P",
            "PT",
            "1 day",
            "P1",
            "P1X",
            "P1D1Y",
            "PT1S1H",
            "P1.5D",
            "PT1.5H",
            "PT1.1234567S",
            "P178956971Y",
            "PT2562047788H54.775808S",
            "P2147483648D",
            "P--1D",
            "P-D",
            "PT1S ",
            "P1Y2M3DT",
        ] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }
}
