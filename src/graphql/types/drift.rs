//! Spec drift and spec history: how far a plan's spec lags behind its
//! feature, the diffs between specs, and a plan's spec revisions.

use std::sync::Arc;

use async_graphql::{Context, Object, SimpleObject};

use super::{DateTime, User, at, load_spec, optional_user};
use crate::drift::Drift;
use crate::error::{AppError, AppResult};
use crate::graphql::loaders::DiffKey;
use crate::graphql::{document_budget, loaders};
use entity::plan_spec_revision;

/// Complexity of a diff field: two documents read and compared, up to the
/// diff's deadline of CPU (200 ms) — the dearest field there is. The number
/// of diffs an operation computes is bounded at run time as well
/// (`drift::MAX_DIFFS_PER_OPERATION`), since diffs shared by many fields
/// are computed once.
pub const DIFF_COMPLEXITY: usize = 10 * crate::graphql::limits::DOCUMENT_COMPLEXITY;

/// A line diff between two specs.
#[derive(SimpleObject)]
pub struct SpecDiff {
    /// Unified diff (`---`/`+++` headers, `@@` hunks with 3 lines of context);
    /// empty when the texts are the same. Cut at the server's limit (256 KiB)
    /// on a line boundary, and then `truncated` is true.
    pub unified: String,
    /// Lines added, counted over the whole diff even when the text is cut.
    pub added: i32,
    /// Lines removed, counted over the whole diff even when the text is cut.
    pub removed: i32,
    /// The unified text was cut at the server's limit.
    pub truncated: bool,
}

/// The diff from the spec object `from` to `to`, through the request's diff
/// loader: the drifted plans of a page that share a base share one diff, and
/// the specs of all the page's diffs are one batch of store reads. The
/// comparison runs off the async threads under a deadline; its text is
/// charged to the operation's document budget, once per field that shows it.
pub async fn diff_specs(
    ctx: &Context<'_>,
    from: &str,
    to: &str,
    from_label: String,
    to_label: String,
) -> AppResult<SpecDiff> {
    let key = DiffKey {
        from: from.to_owned(),
        to: to.to_owned(),
        from_label,
        to_label,
    };
    let diff = loaders(ctx)
        .diffs
        .load_one(key)
        .await?
        .ok_or_else(|| AppError::internal(format!("no diff of {from} and {to}")))??;
    document_budget(ctx).charge(diff.unified.len())?;
    let count = |lines: usize| i32::try_from(lines).unwrap_or(i32::MAX);
    Ok(SpecDiff {
        added: count(diff.added),
        removed: count(diff.removed),
        unified: diff.unified.clone(),
        truncated: diff.truncated,
    })
}

/// How far a plan's spec lags behind its feature.
pub struct SpecDrift(pub Drift);

/// The feature moved past the spec a plan was written against: a newer
/// version, or an amendment of the same version (`behind` 0).
#[Object]
impl SpecDrift {
    /// The feature version the plan was written against (`Plan.basedOnVersion`).
    async fn from_version(&self) -> i32 {
        self.0.from_version
    }
    /// The feature's current version.
    async fn to_version(&self) -> i32 {
        self.0.to_version
    }
    /// How many versions behind the plan is; 0 when its version's spec was
    /// amended since (same number, different text).
    async fn behind(&self) -> i32 {
        self.0.behind
    }
    /// What changed: the diff from the feature spec the plan was written
    /// against to the current one. Null, with an error at this path, while
    /// the spec store is down.
    #[graphql(complexity = "DIFF_COMPLEXITY")]
    async fn diff(&self, ctx: &Context<'_>) -> AppResult<Option<SpecDiff>> {
        let from = format!("v{} (as the plan read it)", self.0.from_version);
        let to = format!("v{} (current)", self.0.to_version);
        diff_specs(ctx, &self.0.from_spec_key, &self.0.to_spec_key, from, to)
            .await
            .map(Some)
    }
}

/// One spec a plan had, and its place among the plan's revisions.
pub struct SpecRevision {
    pub row: plan_spec_revision::Model,
    /// 1 for the spec the plan was created with.
    pub number: usize,
    /// Every revision of the plan, oldest first, for `diff(from)`.
    pub all: Arc<Vec<plan_spec_revision::Model>>,
}

/// A spec a plan had: written at creation, by each `updatePlan`, and by a
/// `rebasePlan` with a spec. Objects are immutable, so every revision stays readable.
#[Object]
impl SpecRevision {
    /// Position among the plan's revisions: 1 is the spec it was created with.
    async fn number(&self) -> i32 {
        i32::try_from(self.number).unwrap_or(i32::MAX)
    }
    /// When this spec was written.
    async fn at(&self) -> DateTime {
        at(self.row.created_at)
    }
    /// Who wrote it; null for revisions from before authors were recorded.
    async fn by(&self, ctx: &Context<'_>) -> AppResult<Option<User>> {
        optional_user(ctx, self.row.created_by).await
    }
    /// Size of the spec in bytes.
    async fn size(&self) -> i64 {
        self.row.spec_size
    }
    /// The spec (markdown) as of this revision, fetched from the store only
    /// when asked for. Null, with an error at this path, while the store is down.
    #[graphql(complexity = "crate::graphql::limits::DOCUMENT_COMPLEXITY")]
    async fn spec(&self, ctx: &Context<'_>) -> AppResult<Option<String>> {
        document_budget(ctx).charge(usize::try_from(self.row.spec_size).unwrap_or(usize::MAX))?;
        load_spec(ctx, &self.row.spec_key).await.map(Some)
    }
    /// The diff from revision `from` (default: the one before) to this one;
    /// null for the first revision without `from`.
    #[graphql(complexity = "DIFF_COMPLEXITY")]
    async fn diff(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The revision number to compare from; default the previous one.")]
        from: Option<i32>,
    ) -> AppResult<Option<SpecDiff>> {
        let from = match from {
            Some(from) => from,
            None if self.number > 1 => i32::try_from(self.number - 1).unwrap_or(i32::MAX),
            None => return Ok(None),
        };
        let base = usize::try_from(from)
            .ok()
            .and_then(|from| from.checked_sub(1))
            .and_then(|index| self.all.get(index))
            .ok_or_else(|| {
                AppError::BadUserInput(format!(
                    "The plan has no spec revision {from}; its revisions are numbered 1 to {}",
                    self.all.len()
                ))
            })?;
        let labels = (
            format!("revision {from}"),
            format!("revision {}", self.number),
        );
        diff_specs(ctx, &base.spec_key, &self.row.spec_key, labels.0, labels.1)
            .await
            .map(Some)
    }
}
