//! Dates, times and timestamps: Postgres' `to_json` text to Arrow's
//! integers and back to text Postgres reads.
//!
//! chrono cannot hold Postgres' range (4713 BC to 5874897 AD), so the
//! civil-date arithmetic is Howard Hinnant's `days_from_civil` and
//! `civil_from_days`, on the proleptic Gregorian calendar with year 1 BC
//! as astronomical year 0 (as Postgres counts). ±infinity are Postgres'
//! own sentinels: i32::MIN/MAX for a date, i64::MIN/MAX for a timestamp.

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// Days from 1970-01-01 to the astronomical date `y-m-d`.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The astronomical date `(y, m, d)` that is `z` days from 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // Both in range by construction (1..=31 and 1..=12).
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// A run of ASCII digits (at most `max` of them) as a number.
fn digits(s: &str, max: usize) -> Result<i64, String> {
    if s.is_empty() || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not a number of at most {max} digits"));
    }
    s.parse().map_err(|_| format!("{s:?} is not a number"))
}

/// Strips a trailing ` BC`.
fn strip_bc(s: &str) -> (&str, bool) {
    match s.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (s, false),
    }
}

/// `YYYY-MM-DD` (BC or not, see `bc`) as days from 1970-01-01.
fn ymd_days(s: &str, bc: bool) -> Result<i64, String> {
    let mut parts = s.splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("not a date".to_string());
    };
    let (y, m, d) = (digits(y, 9)?, digits(m, 2)?, digits(d, 2)?);
    if bc && y == 0 {
        return Err("there is no year 0 BC".to_string());
    }
    let y = if bc { 1 - y } else { y };
    // m and d are at most two digits, so the casts keep them.
    let (m, d) = (m as u32, d as u32);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return Err("no such day".to_string());
    }
    Ok(days_from_civil(y, m, d))
}

/// A date's text (`2024-02-29`, `0044-03-15 BC`, `infinity`) as Date32.
pub fn parse_date(s: &str) -> Result<i32, String> {
    match s {
        "infinity" => return Ok(i32::MAX),
        "-infinity" => return Ok(i32::MIN),
        _ => {}
    }
    let (s, bc) = strip_bc(s);
    let days = ymd_days(s, bc)?;
    match i32::try_from(days) {
        Ok(d) if d != i32::MAX && d != i32::MIN => Ok(d),
        _ => Err("outside the range of a date".to_string()),
    }
}

/// `HH:MM:SS[.ffffff]` as micros since midnight; `24:00:00` is allowed
/// (Postgres' end of day) and a fraction has 1 to 6 digits (more would
/// need rounding, which Postgres never leaves to its readers).
pub fn parse_time(s: &str) -> Result<i64, String> {
    let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut parts = hms.splitn(3, ':');
    let (Some(h), Some(m), Some(sec)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("not a time (HH:MM:SS)".to_string());
    };
    let (h, m, sec) = (digits(h, 2)?, digits(m, 2)?, digits(sec, 2)?);
    let frac = fraction(frac, s.contains('.'))?;
    if m > 59 || sec > 59 || h > 24 || (h == 24 && (m, sec, frac) != (0, 0, 0)) {
        return Err("no such time of day".to_string());
    }
    Ok(((h * 60 + m) * 60 + sec) * MICROS_PER_SECOND + frac)
}

/// The digits after a decimal point as micros (1 to 6 digits).
fn fraction(frac: &str, present: bool) -> Result<i64, String> {
    if !present {
        return Ok(0);
    }
    if frac.len() > 6 {
        return Err("more than 6 fraction digits".to_string());
    }
    let v = digits(frac, 6)?;
    Ok(v * 10i64.pow(6 - frac.len() as u32))
}

/// A UTC offset (`+00:00`, `-08`, `+05:30:15`) in seconds east.
fn parse_offset(s: &str) -> Result<i64, String> {
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err("not a UTC offset".to_string()),
    };
    let mut secs = 0;
    let mut parts = 0;
    for (i, part) in rest.split(':').enumerate() {
        let v = digits(part, 2)?;
        if i > 2 || (i > 0 && v > 59) {
            return Err("not a UTC offset".to_string());
        }
        secs += v * [3600, 60, 1][i];
        parts += 1;
    }
    if parts == 0 || secs > 16 * 3600 {
        return Err("not a UTC offset".to_string());
    }
    Ok(sign * secs)
}

/// The time and the offset of `HH:MM:SS[.f][±offset]` (the offset `None`
/// when there is none).
fn split_offset(s: &str) -> (&str, Option<&str>) {
    match s.find(['+', '-']) {
        Some(at) => (&s[..at], Some(&s[at..])),
        None => (s, None),
    }
}

/// A time with zone's text (`10:00:00+00`, `12:00:00+05:30`) as the UTC
/// time of day in micros, as `AT TIME ZONE 'UTC'` gives it.
pub fn parse_timetz(s: &str) -> Result<i64, String> {
    let (time, offset) = split_offset(s);
    let Some(offset) = offset else {
        return Err("a time with zone without its offset".to_string());
    };
    let t = parse_time(time)?;
    let off = parse_offset(offset)? * MICROS_PER_SECOND;
    // With no offset, 24:00:00 stays the end of the day.
    Ok(if off == 0 {
        t
    } else {
        (t - off).rem_euclid(MICROS_PER_DAY)
    })
}

/// A timestamp's text (`2024-02-29T23:59:59.999999`, with `+00:00` when
/// `tz`, ` BC`, `infinity`) as micros since 1970-01-01 UTC. Values from
/// 294247-01-10T04:00:54.775807 on do not fit in i64 micros (i64::MAX
/// stands for infinity) and are errors.
pub fn parse_timestamp(s: &str, tz: bool) -> Result<i64, String> {
    match s {
        "infinity" => return Ok(i64::MAX),
        "-infinity" => return Ok(i64::MIN),
        _ => {}
    }
    let (s, bc) = strip_bc(s);
    let Some((date, rest)) = s.split_once(['T', ' ']) else {
        return Err("not a timestamp (date, T, time)".to_string());
    };
    let (time, offset) = split_offset(rest);
    let off = match (offset, tz) {
        (Some(o), true) => parse_offset(o)?,
        (None, false) => 0,
        (None, true) => return Err("a timestamp with time zone without its offset".to_string()),
        (Some(_), false) => return Err("a timestamp without time zone with an offset".to_string()),
    };
    let t = parse_time(time)?;
    if t >= MICROS_PER_DAY {
        return Err("no such time of day".to_string());
    }
    let micros = i128::from(ymd_days(date, bc)?) * i128::from(MICROS_PER_DAY) + i128::from(t)
        - i128::from(off) * i128::from(MICROS_PER_SECOND);
    match i64::try_from(micros) {
        Ok(v) if v != i64::MAX && v != i64::MIN => Ok(v),
        _ => Err(
            "beyond the range of Parquet's TIMESTAMP(MICROS) (values after \
                  294247-01-10T04:00:54.775806 do not fit); keep the column as text"
                .to_string(),
        ),
    }
}

/// `YYYY-MM-DD` of days from 1970-01-01, and whether it is BC.
fn date_text(days: i64) -> (String, bool) {
    let (y, m, d) = civil_from_days(days);
    if y <= 0 {
        (format!("{:04}-{m:02}-{d:02}", 1 - y), true)
    } else {
        (format!("{y:04}-{m:02}-{d:02}"), false)
    }
}

/// A Date32 as text Postgres' date input reads back exactly.
pub fn format_date(days: i32) -> String {
    match days {
        i32::MAX => "infinity".to_string(),
        i32::MIN => "-infinity".to_string(),
        _ => {
            let (text, bc) = date_text(i64::from(days));
            if bc {
                format!("{text} BC")
            } else {
                text
            }
        }
    }
}

/// Micros since midnight as `HH:MM:SS[.ffffff]` (fraction only when not
/// zero, trailing zeros dropped, as Postgres prints it).
pub fn format_time(micros: i64) -> String {
    let secs = micros.div_euclid(MICROS_PER_SECOND);
    let frac = micros.rem_euclid(MICROS_PER_SECOND);
    let text = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if frac == 0 {
        text
    } else {
        let f = format!("{frac:06}");
        format!("{text}.{}", f.trim_end_matches('0'))
    }
}

/// Micros since 1970-01-01 as text Postgres' timestamp input reads back
/// exactly (`+00` appended when `tz`, ` BC` last).
pub fn format_timestamp(micros: i64, tz: bool) -> String {
    match micros {
        i64::MAX => return "infinity".to_string(),
        i64::MIN => return "-infinity".to_string(),
        _ => {}
    }
    let (date, bc) = date_text(micros.div_euclid(MICROS_PER_DAY));
    let time = format_time(micros.rem_euclid(MICROS_PER_DAY));
    let zone = if tz { "+00" } else { "" };
    let era = if bc { " BC" } else { "" };
    format!("{date} {time}{zone}{era}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_match_known_dates_and_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 1, 1), 10_957);
        // Julian day 0 is 4714-11-24 BC (astronomical -4713): Postgres' first date.
        assert_eq!(days_from_civil(-4713, 11, 24), -2_440_588);
        for z in [-2_440_588, -719_528, -1, 0, 59, 2_145_042_905, 11_016] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        let mut z = days_from_civil(-401, 1, 1);
        while z < days_from_civil(401, 1, 1) {
            let (y, m, d) = civil_from_days(z);
            assert!(d >= 1 && d <= days_in_month(y, m));
            assert_eq!(days_from_civil(y, m, d), z);
            z += 1;
        }
    }

    #[test]
    fn dates_parse_with_eras_and_sentinels() {
        assert_eq!(parse_date("1970-01-01"), Ok(0));
        assert_eq!(parse_date("2000-02-29"), Ok(11_016));
        assert_eq!(parse_date("0001-01-01"), Ok(-719_162));
        assert_eq!(parse_date("0001-12-31 BC"), Ok(-719_163));
        assert_eq!(parse_date("4714-11-24 BC"), Ok(-2_440_588));
        assert_eq!(parse_date("4713-11-24 BC"), Ok(-2_440_222));
        assert_eq!(parse_date("4713-01-01 BC"), Ok(-2_440_550));
        assert_eq!(parse_date("5874897-12-31"), Ok(2_145_042_905));
        assert_eq!(parse_date("infinity"), Ok(i32::MAX));
        assert_eq!(parse_date("-infinity"), Ok(i32::MIN));
        for bad in [
            "",
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-01-32",
            "0000-01-01 BC",
            "2024-1-1x",
            "24-01",
            "Infinity",
            "2024-01-01 AD",
            "99999999999-01-01",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
        for d in [
            "2024-02-29",
            "0044-03-15 BC",
            "4714-11-24 BC",
            "5874897-12-31",
            "infinity",
            "-infinity",
        ] {
            assert_eq!(format_date(parse_date(d).unwrap()), d);
        }
    }

    #[test]
    fn times_keep_every_micro_and_the_end_of_day() {
        assert_eq!(parse_time("00:00:00"), Ok(0));
        assert_eq!(parse_time("23:59:59.999999"), Ok(MICROS_PER_DAY - 1));
        assert_eq!(parse_time("24:00:00"), Ok(MICROS_PER_DAY));
        assert_eq!(parse_time("12:34:56.5"), Ok(45_296_500_000));
        assert_eq!(parse_time("12:34:56.05"), Ok(45_296_050_000));
        assert_eq!(parse_time("12:34:56.000001"), Ok(45_296_000_001));
        for bad in [
            "24:00:00.000001",
            "24:00:01",
            "23:60:00",
            "23:59:60",
            "1:2",
            "12:00:00.",
            "12:00:00.1234567",
            "12:00:00+00",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
        for t in ["00:00:00", "23:59:59.999999", "24:00:00", "12:34:56.05"] {
            assert_eq!(format_time(parse_time(t).unwrap()), t);
        }
        assert_eq!(parse_timetz("10:00:00+00"), Ok(36_000_000_000));
        assert_eq!(parse_timetz("11:59:59.999999+00"), Ok(43_199_999_999));
        assert_eq!(parse_timetz("24:00:00+00"), Ok(MICROS_PER_DAY));
        // Not normalised (array elements): to UTC, wrapping like AT TIME ZONE.
        assert_eq!(parse_timetz("12:00:00+05:30"), parse_time("06:30:00"));
        assert_eq!(parse_timetz("24:00:00-01"), parse_time("01:00:00"));
        assert_eq!(parse_timetz("00:00:00+14"), parse_time("10:00:00"));
        assert_eq!(
            parse_timetz("12:00:00.123+05:30:15"),
            parse_time("06:29:45.123")
        );
        for bad in [
            "10:00:00",
            "10:00:00+",
            "10:00:00+1:00:00:00",
            "10:00:00+17",
            "10:00:00+05:60",
        ] {
            assert!(parse_timetz(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps_cover_postgres_range_up_to_what_i64_micros_hold() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:00", false), Ok(0));
        assert_eq!(parse_timestamp("1970-01-01T00:00:00+00:00", true), Ok(0));
        assert_eq!(
            parse_timestamp("2024-03-01T07:59:59.999999+00:00", true),
            parse_timestamp("2024-02-29T23:59:59.999999-08:00", true)
        );
        assert_eq!(
            parse_timestamp("2000-01-01T00:00:00.01", false),
            Ok(946_684_800_010_000)
        );
        assert_eq!(
            parse_timestamp("4714-11-24T00:00:00 BC", false),
            Ok(-210_866_803_200 * MICROS_PER_SECOND)
        );
        assert_eq!(
            parse_timestamp("0001-12-31T23:59:59.5+00:00 BC", true),
            Ok(-719_162 * MICROS_PER_DAY - 500_000)
        );
        assert_eq!(parse_timestamp("infinity", true), Ok(i64::MAX));
        assert_eq!(parse_timestamp("-infinity", false), Ok(i64::MIN));
        assert_eq!(
            parse_timestamp("294247-01-10T04:00:54.775806", false),
            Ok(i64::MAX - 1)
        );
        for too_late in [
            "294247-01-10T04:00:54.775807",
            "294276-12-31T23:59:59.999999",
        ] {
            let e = parse_timestamp(too_late, false).unwrap_err();
            assert!(e.contains("keep the column as text"), "{e}");
        }
        for bad in [
            "2024-02-29",
            "2024-02-29T24:00:00",
            "2024-02-29T12:00:00+00:00",
            "2024-02-30T00:00:00",
            "2024-02-29T12:00:00.1234567",
        ] {
            assert!(parse_timestamp(bad, false).is_err(), "{bad}");
        }
        assert!(parse_timestamp("2024-02-29T12:00:00", true).is_err());
        for (text, tz, want) in [
            (
                "2024-02-29T23:59:59.999999",
                false,
                "2024-02-29 23:59:59.999999",
            ),
            ("4714-11-24T00:00:00 BC", false, "4714-11-24 00:00:00 BC"),
            (
                "0044-03-15T11:00:00+00:00 BC",
                true,
                "0044-03-15 11:00:00+00 BC",
            ),
            (
                "294247-01-10T04:00:54.775806",
                false,
                "294247-01-10 04:00:54.775806",
            ),
            (
                "1969-12-31T23:59:59.9+00:00",
                true,
                "1969-12-31 23:59:59.9+00",
            ),
            ("-infinity", true, "-infinity"),
        ] {
            let v = parse_timestamp(text, tz).unwrap();
            assert_eq!(format_timestamp(v, tz), want);
        }
    }
}
