//! What the demo data is made of: names, spec texts, how often each status
//! occurs, and the seeded random source that picks among them.

use chrono::Duration;

use crate::workflow::PlanStatus;

/// Status mix of a team a few weeks in: a third done, a steady queue of
/// drafts and ready work, a handful stuck.
pub(super) const STATUS_WEIGHTS: [(PlanStatus, u64); 8] = [
    (PlanStatus::Draft, 18),
    (PlanStatus::Ready, 15),
    (PlanStatus::Claimed, 8),
    (PlanStatus::InProgress, 12),
    (PlanStatus::Stalled, 4),
    (PlanStatus::Review, 8),
    (PlanStatus::Completed, 30),
    (PlanStatus::Failed, 5),
];

/// (display name, email local part); the last one only reads.
pub(super) const PEOPLE: [(&str, &str); 7] = [
    ("Alice Martin", "alice"),
    ("Bob Chen", "bob"),
    ("Chiara Rossi", "chiara"),
    ("Dmitri Ivanov", "dmitri"),
    ("Emeka Obi", "emeka"),
    ("Fatima Khan", "fatima"),
    ("Gustav Berg", "gustav"),
];

pub(super) const PROJECT_NAMES: [&str; 10] = [
    "Task Manager",
    "Billing",
    "Mobile App",
    "Search",
    "Data Platform",
    "Identity",
    "Notifications",
    "Analytics",
    "Developer Portal",
    "Marketplace",
];

pub(super) const FEATURE_AREAS: [&str; 10] = [
    "User authentication",
    "Team workspaces",
    "Audit log",
    "CSV export",
    "Email digests",
    "Role-based access",
    "Webhooks",
    "Full-text search",
    "Rate limiting",
    "Offline mode",
];

pub(super) const FEATURE_ASPECTS: [&str; 5] = ["core", "admin UI", "API", "migration", "hardening"];

pub(super) const PLAN_VERBS: [&str; 8] = [
    "Add",
    "Refactor",
    "Test",
    "Document",
    "Migrate",
    "Speed up",
    "Harden",
    "Instrument",
];

pub(super) const PLAN_OBJECTS: [&str; 10] = [
    "the session store",
    "the settings page",
    "the REST handlers",
    "the background jobs",
    "the database schema",
    "the permission checks",
    "the retry logic",
    "the onboarding flow",
    "the metrics",
    "the error messages",
];

/// SplitMix64: a dependency-free generator; a fixed seed gives every run the
/// same shape of data, which keeps benchmark runs comparable.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound`; `bound` 0 gives 0.
    pub(super) fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 { 0 } else { self.next() % bound }
    }

    pub(super) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub(super) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// Whole seconds, so that timestamps keep the microsecond precision
    /// both databases store.
    pub(super) fn seconds_between(&mut self, low: Duration, high: Duration) -> Duration {
        let (low, high) = (low.num_seconds(), high.num_seconds().max(low.num_seconds()));
        Duration::seconds(low + self.below((high - low + 1) as u64) as i64)
    }

    pub(super) fn status(&mut self) -> PlanStatus {
        let total: u64 = STATUS_WEIGHTS.iter().map(|(_, weight)| weight).sum();
        let mut roll = self.below(total);
        for (status, weight) in STATUS_WEIGHTS {
            if roll < weight {
                return status;
            }
            roll -= weight;
        }
        PlanStatus::Draft
    }
}

pub(super) fn feature_spec(title: &str) -> String {
    format!(
        "# {title}\n\n## Why\n\nCustomers keep asking for this; support tickets mention it weekly.\n\n\
         ## What\n\n- The smallest version that solves the common case\n- Works for teams of any size\n\
         - Clear error messages when something is missing\n\n## Out of scope\n\nBulk operations and \
         anything that needs a new storage backend.\n"
    )
}

pub(super) fn plan_spec(title: &str) -> String {
    format!(
        "# {title}\n\n## Approach\n\n1. Read the current code path and write down what it assumes.\n\
         2. Add tests that pin today's behaviour.\n3. Make the change behind the existing interface.\n\
         4. Measure before and after.\n\n## Done when\n\n- The tests pass on SQLite and PostgreSQL\n\
         - The dashboard shows the new state without a reload\n"
    )
}
