//! Deterministic fake CRM data: people, companies, amounts and dates.
//!
//! A tiny seeded PRNG (SplitMix64) over fixed lists, so the same seed gives the same records on
//! every run and every machine; tests may assert on them. This module must never read the
//! clock, the environment or a global RNG, and never produce anything resembling real
//! personal data beyond obviously fictional names.

/// SplitMix64: small, fast, and good enough to shuffle fixed lists reproducibly.
#[derive(Clone, Debug)]
pub(crate) struct SeedRng(u64);

impl SeedRng {
    /// A generator whose whole sequence is determined by `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator seeded from a text label (FNV-1a), e.g. a Salesmate link name.
    pub(crate) fn from_label(label: &str) -> Self {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in label.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Self(hash)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    pub(crate) fn range(&mut self, low: u64, high: u64) -> u64 {
        debug_assert!(low <= high);
        low + self.next_u64() % (high - low + 1)
    }

    /// One element of a non-empty list.
    pub(crate) fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let len = u64::try_from(items.len()).unwrap_or(u64::MAX);
        let index = usize::try_from(self.next_u64() % len).unwrap_or(0);
        items[index]
    }

    /// True with probability `percent`/100.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

pub(crate) const FIRST_NAMES: &[&str] = &[
    "Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Iris", "Jonas", "Keiko",
    "Liam", "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Victor",
    "Wen", "Ximena", "Yusuf", "Zoe",
];

pub(crate) const LAST_NAMES: &[&str] = &[
    "Abbott",
    "Baker",
    "Castillo",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lindqvist",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Patel",
    "Quintero",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Ueda",
    "Varga",
    "Walsh",
    "Yilmaz",
    "Zhang",
];

pub(crate) const COMPANIES: &[&str] = &[
    "Acme Advisors",
    "Birchwood Capital",
    "Cobalt Wealth",
    "Driftwood Partners",
    "Evergreen Trust",
    "Fairview Holdings",
    "Granite Peak Finance",
    "Harbor Light Planning",
    "Ironbridge Group",
    "Juniper Retirement",
    "Keystone Family Office",
    "Lakeside Investments",
    "Meridian Estates",
    "Northwind Advisory",
    "Oakridge Securities",
    "Pinecrest Partners",
];

pub(crate) const DEAL_WORDS: &[&str] = &[
    "Retirement rollover",
    "Portfolio review",
    "Estate plan",
    "College savings",
    "Annuity",
    "Insurance renewal",
    "401(k) consolidation",
    "Trust setup",
    "Tax-loss harvesting",
    "Onboarding",
    "Annual plan",
    "Expansion",
];

pub(crate) const ACTIVITY_SUBJECTS: &[&str] = &[
    "Quarterly review call",
    "Send proposal",
    "Follow-up email",
    "Account opening paperwork",
    "Birthday call",
    "Compliance check",
    "Meeting at office",
    "Rebalance portfolio",
];

/// One fictional person.
#[derive(Clone, Debug)]
pub(crate) struct Person {
    pub first_name: String,
    pub last_name: String,
    pub company: String,
}

impl Person {
    pub(crate) fn full_name(&self) -> String {
        let mut name = self.first_name.clone();
        name.push(' ');
        name.push_str(&self.last_name);
        name
    }

    /// A fictional e-mail address at the reserved `example.com` domain (RFC 2606).
    pub(crate) fn email(&self, id: i64) -> String {
        let mut email = self.first_name.to_ascii_lowercase();
        email.push('.');
        email.push_str(&self.last_name.to_ascii_lowercase());
        email.push_str(&id.to_string());
        email.push_str("@example.com");
        email
    }
}

/// A person drawn from the fixed lists.
pub(crate) fn person(rng: &mut SeedRng) -> Person {
    Person {
        first_name: rng.pick(FIRST_NAMES).to_owned(),
        last_name: rng.pick(LAST_NAMES).to_owned(),
        company: rng.pick(COMPANIES).to_owned(),
    }
}

/// Days from 1970-01-01 to the civil date `(year, month, day)` (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date `(year, month, day)` of a day count since 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DD` for a day count since 1970-01-01.
pub(crate) fn date_string(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a day count and a second of that day.
pub(crate) fn datetime_string(days: i64, second_of_day: u64) -> String {
    let h = second_of_day / 3600 % 24;
    let m = second_of_day / 60 % 60;
    let s = second_of_day % 60;
    format!("{}T{h:02}:{m:02}:{s:02}Z", date_string(days))
}

/// Parses a strict `YYYY-MM-DD` calendar date into days since 1970-01-01.
pub(crate) fn parse_date(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(range)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let year = digits(0..4)?;
    let month = digits(5..7)?;
    let day = digits(8..10)?;
    if !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day > days_in_month {
        return None;
    }
    Some(days_from_civil(i64::from(year), month, day))
}

/// Day number of 2023-01-01, the start of every seeded timeline.
pub(crate) fn epoch_2023() -> i64 {
    days_from_civil(2023, 1, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let a: Vec<u64> = {
            let mut r = SeedRng::new(7);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let mut r = SeedRng::new(7);
        let b: Vec<u64> = (0..5).map(|_| r.next_u64()).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn dates_round_trip_and_validate() {
        for days in [-1, 0, 19_000, 20_000, 25_000] {
            assert_eq!(parse_date(&date_string(days)), Some(days));
        }
        assert_eq!(date_string(0), "1970-01-01");
        assert_eq!(
            parse_date("2024-02-29").map(date_string).as_deref(),
            Some("2024-02-29")
        );
        for bad in [
            "2023-02-29",
            "2023-13-01",
            "2023-1-01",
            "20230101",
            "2023-01-0x",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
}
