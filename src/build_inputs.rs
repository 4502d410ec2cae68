//! The inputs of a build that are not in its recipe: the tool's version and the
//! `SOURCE_DATE_EPOCH` rule. A leaf at the bottom of the crate (it imports nothing of ours),
//! so the stages, the cache and the SBOMs share one definition without importing each
//! other. Nothing here reads the environment: the binary reads `SOURCE_DATE_EPOCH` once and
//! `pipeline` hands it down.

/// The tool's version, recorded in every distro's provenance and every cache key.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The user's `SOURCE_DATE_EPOCH`, if any, and the one rule that turns it into the time a
/// build claims.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Epoch {
    user: Option<u64>,
}

impl Epoch {
    /// `user`: the `SOURCE_DATE_EPOCH` the user set (seconds since 1970), or `None`.
    pub fn given(user: Option<u64>) -> Epoch {
        Epoch { user }
    }

    /// What the user set, alone (a directory output keeps its own times otherwise).
    pub fn user(self) -> Option<u64> {
        self.user
    }

    /// The time a build claims whose source was made at `source_time` (a bootstrap's
    /// newest `InRelease` date, an image's creation time): the user's, else that.
    pub fn resolve(self, source_time: Option<u64>) -> Option<u64> {
        self.user.or(source_time)
    }
}

#[cfg(test)]
mod tests {
    use super::Epoch;

    #[test]
    fn the_users_epoch_wins_over_the_sources_time() {
        assert_eq!(Epoch::given(Some(5)).resolve(Some(9)), Some(5));
        assert_eq!(Epoch::given(None).resolve(Some(9)), Some(9));
        assert_eq!(Epoch::given(None).resolve(None), None);
        assert_eq!(Epoch::given(Some(5)).user(), Some(5));
    }
}
