//! How many rows a list returns, the same on both backends: what the caller asked for, the
//! default when it asked for 0, never more than the maximum.

/// The page sizes of one kind of list.
pub(crate) struct Paging {
    default: u32,
    max: u32,
}

/// Connections, webhook events, and the batches that walk every row (key rotation, purges).
pub(crate) const LISTS: Paging = Paging {
    default: 100,
    max: 1000,
};

/// A connection's history and the console's connection pages.
pub(crate) const HISTORY: Paging = Paging {
    default: 50,
    max: 500,
};

impl Paging {
    /// `requested` rows: 0 means the default, more than the maximum means the maximum.
    pub(crate) fn limit(&self, requested: u32) -> i64 {
        i64::from(match requested {
            0 => self.default,
            n => n.min(self.max),
        })
    }

    /// `requested` rows, at least one and at most the maximum (a walk must move on).
    pub(crate) fn at_least_one(&self, requested: u32) -> i64 {
        i64::from(requested.clamp(1, self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_the_default_and_the_maximum_caps() {
        assert_eq!(LISTS.limit(0), 100);
        assert_eq!(LISTS.limit(7), 7);
        assert_eq!(LISTS.limit(5000), 1000);
        assert_eq!(HISTORY.limit(0), 50);
        assert_eq!(HISTORY.limit(501), 500);
        assert_eq!(LISTS.at_least_one(0), 1);
        assert_eq!(HISTORY.at_least_one(u32::MAX), 500);
    }
}
