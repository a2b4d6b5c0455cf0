//! Durations as responders type them (`90s`, `1h30m`, `2d`) and as tables show them.

/// Seconds per unit letter.
fn unit_secs(u: char) -> Option<u64> {
    match u {
        's' => Some(1),
        'm' => Some(60),
        'h' => Some(3600),
        'd' => Some(86_400),
        _ => None,
    }
}

/// Parse `3600`, `90s`, `1h30m`, `2d`: a whole number of seconds, or `<n><unit>` parts
/// with units `s`, `m`, `h`, `d`, each unit at most once and largest first. At least 1 s.
pub fn parse(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration (expected e.g. 90s, 1h30m, 2d)".into());
    }
    if let Ok(n) = s.parse::<u64>() {
        return if n == 0 {
            Err("a duration must be at least 1s".into())
        } else {
            Ok(n)
        };
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut last_unit = u64::MAX;
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let secs = unit_secs(c).ok_or_else(|| {
            format!("{s:?}: unknown unit {c:?} (expected s, m, h or d, as in 1h30m)")
        })?;
        if digits.is_empty() {
            return Err(format!("{s:?}: a number must come before {c:?}"));
        }
        if secs >= last_unit {
            return Err(format!(
                "{s:?}: give each unit once, largest first (as in 1d2h30m)"
            ));
        }
        last_unit = secs;
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{s:?}: number too large"))?;
        digits.clear();
        total = n
            .checked_mul(secs)
            .and_then(|p| total.checked_add(p))
            .ok_or_else(|| format!("{s:?}: duration too large"))?;
    }
    if !digits.is_empty() {
        return Err(format!(
            "{s:?}: the last number has no unit (expected s, m, h or d)"
        ));
    }
    if total == 0 {
        return Err("a duration must be at least 1s".into());
    }
    Ok(total)
}

/// `45s`, `12m5s`, `1h30m`, `2d3h`: the two largest units, zero parts left out.
pub fn format(secs: u64) -> String {
    let (big, small, a, b) = if secs < 60 {
        return format!("{secs}s");
    } else if secs < 3600 {
        (secs / 60, secs % 60, 'm', 's')
    } else if secs < 86_400 {
        (secs / 3600, secs % 3600 / 60, 'h', 'm')
    } else {
        (secs / 86_400, secs % 86_400 / 3600, 'd', 'h')
    };
    if small == 0 {
        format!("{big}{a}")
    } else {
        format!("{big}{a}{small}{b}")
    }
}

/// `in 1h30m`, `5m ago` or `now`, from `now_ms` to `at_ms`.
pub fn relative(now_ms: i64, at_ms: i64) -> String {
    let d = at_ms.saturating_sub(now_ms) / 1000;
    match d {
        0 => "now".into(),
        d if d > 0 => format!("in {}", format(d.unsigned_abs())),
        d => format!("{} ago", format(d.unsigned_abs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_the_api_takes() {
        assert_eq!(parse("90s"), Ok(90));
        assert_eq!(parse("1h30m"), Ok(5400));
        assert_eq!(parse("2d"), Ok(172_800));
        assert_eq!(parse("1d2h3m4s"), Ok(93_784));
        assert_eq!(parse("3600"), Ok(3600));
        assert_eq!(parse(" 15m "), Ok(900));
    }

    #[test]
    fn refuses_what_it_cannot_read_saying_why() {
        for (input, why) in [
            ("", "empty"),
            ("0", "at least 1s"),
            ("0h", "at least 1s"),
            ("1x", "unknown unit 'x'"),
            ("h", "a number must come before"),
            ("1h30", "no unit"),
            ("30m1h", "largest first"),
            ("1h1h", "largest first"),
            ("-5m", "unknown unit '-'"),
            ("99999999999999999999s", "too large"),
            ("999999999999999d", "too large"),
        ] {
            let e = parse(input).unwrap_err();
            assert!(e.contains(why), "{input:?}: {e}");
        }
    }

    #[test]
    fn formats_with_the_two_largest_units() {
        assert_eq!(format(0), "0s");
        assert_eq!(format(45), "45s");
        assert_eq!(format(60), "1m");
        assert_eq!(format(725), "12m5s");
        assert_eq!(format(5400), "1h30m");
        assert_eq!(format(7200), "2h");
        assert_eq!(format(183_600), "2d3h");
        assert_eq!(format(86_400 * 7), "7d");
    }

    #[test]
    fn relative_times_read_forwards_and_back() {
        assert_eq!(relative(1_000_000, 1_000_000 + 5_400_000), "in 1h30m");
        assert_eq!(relative(1_000_000, 1_000_000 - 300_000), "5m ago");
        assert_eq!(relative(1_000_000, 1_000_400), "now");
    }

    #[test]
    fn what_is_formatted_parses_back() {
        for secs in [1, 59, 60, 61, 3599, 3600, 5400, 86_399, 86_400, 90_000] {
            let f = format(secs);
            let back = parse(&f).unwrap();
            // Two units only: exact below an hour, within the smaller unit above.
            if secs < 3600 {
                assert_eq!(back, secs, "{f}");
            } else {
                assert!(
                    back <= secs && secs - back < 3600,
                    "{secs} -> {f} -> {back}"
                );
            }
        }
    }
}
