//! Spec drift, as pure functions: whether a plan's spec is stale against its
//! feature, and the line diff between two specs. No I/O, no clock beyond the
//! diff's own deadline; the service layer loads the rows and the objects.

use std::time::{Duration, Instant};

use similar::{Algorithm, ChangeTag, TextDiff};

use crate::workflow::PlanStatus;
use entity::{feature, plan};

/// How far a plan's spec lags behind its feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    /// The version the plan was written against.
    pub from_version: i32,
    /// The feature's current version.
    pub to_version: i32,
    /// Versions between them; 0 when the plan's version was amended since.
    pub behind: i32,
    /// The feature spec the plan was written against.
    pub from_spec_key: String,
    /// The feature's current spec.
    pub to_spec_key: String,
}

/// The drift of `plan` against `feature` (its feature), or `None` when the
/// plan is up to date or finished: a COMPLETED or FAILED plan is never
/// drifted, whatever happened to the feature since.
///
/// Drift means the text changed: the feature row holds the current
/// version's spec key, which names the spec by its content, so a plan is
/// drifted exactly when that key differs from the one it was written
/// against. A version cut that keeps the text (every completion cuts one) is
/// not drift, or each completion would send every sibling plan to re-read a
/// spec that says the same.
pub fn drift_of(plan: &plan::Model, feature: &feature::Model) -> Option<Drift> {
    drift(
        plan.status,
        plan.based_on_version,
        &plan.based_on_spec_key,
        feature,
    )
}

/// [`drift_of`] on a plan's facts.
pub fn drift(
    status: PlanStatus,
    based_on_version: i32,
    based_on_spec_key: &str,
    feature: &feature::Model,
) -> Option<Drift> {
    if status.is_terminal() || feature.spec_key == based_on_spec_key {
        return None;
    }
    Some(Drift {
        from_version: based_on_version,
        to_version: feature.current_version,
        behind: (feature.current_version - based_on_version).max(0),
        from_spec_key: based_on_spec_key.to_owned(),
        to_spec_key: feature.spec_key.clone(),
    })
}

/// Whether a change of `feature` from (`before_version`, `before_spec_key`)
/// to its current state makes `plan` drifted: drifted now, and not before.
/// Only then does the plan get a `SPEC_DRIFTED` event; a plan already
/// drifted gets none for further moves (its `specDrift` shows the current
/// distance), so a busy feature does not multiply events by its open plans
/// on every version, and a rebased plan is armed again.
pub fn becomes_drifted(
    plan: &plan::Model,
    before_version: i32,
    before_spec_key: &str,
    feature: &feature::Model,
) -> bool {
    let before = feature::Model {
        current_version: before_version,
        spec_key: before_spec_key.to_owned(),
        ..feature.clone()
    };
    drift_of(plan, feature).is_some() && drift_of(plan, &before).is_none()
}

/// Most distinct diffs one operation may compute (diffs shared by several
/// fields count once). Each costs up to its deadline of CPU; past this, the
/// fields asking for more diffs get an error and the rest of the response
/// still arrives.
pub const MAX_DIFFS_PER_OPERATION: usize = 16;

/// Bounds on one diff, so that two 1 MiB specs cost a bounded time and response.
#[derive(Debug, Clone, Copy)]
pub struct DiffLimits {
    /// Most bytes of unified diff text returned; the rest is cut at a hunk
    /// or line boundary and `truncated` says so.
    pub max_output_bytes: usize,
    /// How long the diff algorithm may search for the smallest diff before
    /// it settles for a correct but larger one.
    pub deadline: Duration,
}

impl Default for DiffLimits {
    fn default() -> DiffLimits {
        DiffLimits {
            max_output_bytes: 256 * 1024,
            deadline: Duration::from_millis(200),
        }
    }
}

/// A line diff of two specs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecDiff {
    /// Unified diff (`---`/`+++` headers, `@@` hunks, 3 lines of context).
    pub unified: String,
    /// Lines added, over the whole diff (also when the text is cut).
    pub added: usize,
    /// Lines removed, over the whole diff.
    pub removed: usize,
    /// The unified text was cut at `max_output_bytes`.
    pub truncated: bool,
}

/// The unified diff from `old` (labelled `old_label`) to `new`.
///
/// Myers' algorithm with a deadline: past it, similar returns a correct diff
/// that may not be the smallest, so the time is bounded whatever the input.
/// Counts cover every change even when the text is cut.
pub fn diff(
    old: &str,
    new: &str,
    old_label: &str,
    new_label: &str,
    limits: DiffLimits,
) -> SpecDiff {
    let diff = TextDiff::configure()
        .algorithm(Algorithm::Myers)
        .deadline(Instant::now() + limits.deadline)
        .diff_lines(old, new);
    let (mut added, mut removed) = (0, 0);
    for change in diff.iter_all_changes() {
        match change.tag() {
            ChangeTag::Insert => added += 1,
            ChangeTag::Delete => removed += 1,
            ChangeTag::Equal => {}
        }
    }
    let mut unified = String::new();
    let mut truncated = false;
    if added + removed > 0 {
        unified.push_str(&format!("--- {old_label}\n+++ {new_label}\n"));
        for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
            let text = hunk.to_string();
            if unified.len() + text.len() <= limits.max_output_bytes {
                unified.push_str(&text);
                continue;
            }
            // Keep whole lines of the hunk that still fit, then stop.
            for line in text.split_inclusive('\n') {
                if unified.len() + line.len() > limits.max_output_bytes {
                    break;
                }
                unified.push_str(line);
            }
            truncated = true;
            break;
        }
    }
    SpecDiff {
        unified,
        added,
        removed,
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use uuid::Uuid;

    fn feature(version: i32, key: &str) -> feature::Model {
        feature::Model {
            id: Uuid::nil(),
            project_id: Uuid::nil(),
            title: "f".into(),
            description: None,
            current_version: version,
            spec_key: key.into(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn another_text_drifts_open_plans_only_and_a_version_alone_does_not() {
        assert_eq!(drift(PlanStatus::Draft, 1, "a", &feature(1, "a")), None);
        assert_eq!(
            drift(PlanStatus::Ready, 1, "a", &feature(4, "a")),
            None,
            "versions cut with the same text"
        );
        let behind = drift(PlanStatus::InProgress, 3, "a", &feature(5, "b")).expect("drifted");
        assert_eq!(
            (behind.from_version, behind.to_version, behind.behind),
            (3, 5, 2)
        );
        let amended = drift(PlanStatus::Review, 2, "a", &feature(2, "b")).expect("drifted");
        assert_eq!(amended.behind, 0);
        for status in PlanStatus::ALL {
            let drifted = drift(status, 1, "a", &feature(2, "b")).is_some();
            assert_eq!(drifted, !status.is_terminal(), "{status:?}");
        }
    }

    #[test]
    fn only_the_move_that_makes_a_plan_stale_announces_it() {
        let plan = plan::Model {
            id: Uuid::nil(),
            project_id: Uuid::nil(),
            feature_id: Uuid::nil(),
            title: "p".into(),
            description: None,
            status: PlanStatus::Ready,
            spec_key: "p".into(),
            spec_sha256: String::new(),
            spec_size: 1,
            work_artifacts: None,
            claimed_by: None,
            claimed_at: None,
            submitted_by: None,
            implemented_version: None,
            last_activity_at: Utc::now(),
            created_by: Uuid::nil(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
            based_on_version: 1,
            based_on_spec_key: "a".into(),
            priority: 2,
            claim_generation: 0,
            lease_seconds: None,
            lease_expires_at: None,
        };
        assert!(
            !becomes_drifted(&plan, 1, "a", &feature(2, "a")),
            "a version with the same text"
        );
        assert!(becomes_drifted(&plan, 1, "a", &feature(1, "b")));
        assert!(becomes_drifted(&plan, 1, "a", &feature(2, "b")));
        assert!(
            !becomes_drifted(&plan, 2, "b", &feature(3, "c")),
            "already drifted"
        );
        assert!(
            !becomes_drifted(&plan, 1, "b", &feature(1, "a")),
            "amended back"
        );
        let done = plan::Model {
            status: PlanStatus::Completed,
            ..plan
        };
        assert!(!becomes_drifted(&done, 1, "a", &feature(2, "b")));
    }

    #[test]
    fn the_diff_shows_exactly_the_changed_lines() {
        let old = "# Auth\nUsers sign in.\nWith a password.\n";
        let new = "# Auth\nUsers sign in.\nWith a passkey.\nAnd 2FA.\n";
        let diff = diff(old, new, "v1", "v2", DiffLimits::default());
        assert_eq!((diff.added, diff.removed, diff.truncated), (2, 1, false));
        assert_eq!(
            diff.unified,
            "--- v1\n+++ v2\n@@ -1,3 +1,4 @@\n # Auth\n Users sign in.\n-With a password.\n+With a passkey.\n+And 2FA.\n"
        );
        let same = super::diff(old, old, "v1", "v1", DiffLimits::default());
        assert_eq!(
            (same.unified.as_str(), same.added, same.removed),
            ("", 0, 0)
        );
    }

    #[test]
    fn a_large_diff_is_cut_at_the_output_cap_and_counted_in_full() {
        let old: String = (0..20_000).map(|line| format!("line {line}\n")).collect();
        let new: String = (0..20_000)
            .map(|line| format!("changed {line}\n"))
            .collect();
        let limits = DiffLimits {
            max_output_bytes: 4096,
            ..DiffLimits::default()
        };
        let diff = diff(&old, &new, "a", "b", limits);
        assert!(diff.truncated);
        assert!(diff.unified.len() <= 4096);
        assert!(diff.unified.ends_with('\n'));
        assert_eq!((diff.added, diff.removed), (20_000, 20_000));
    }
}
