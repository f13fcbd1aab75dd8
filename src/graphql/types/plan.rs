use async_graphql::{Context, ID, Object, SimpleObject};

use std::sync::{Arc, Mutex, PoisonError};

use super::plan_action::{PlanAction, available_actions};
use super::{
    DateTime, Feature, FeatureVersion, PlanEvent, PlanStatus, Project, SpecDrift, SpecRevision,
    User, at, load_spec, optional_user, user_by_id,
};
use crate::error::{AppError, AppResult};
use crate::graphql::inline::Related;
use crate::graphql::loaders::{
    FeatureId, PlanBlockers, PlanEvents, PlanId, PlanSpecRevisions, PlanWaiters, ProjectId, RoleIn,
    VersionNumber,
};
use crate::graphql::{document_budget, loaders, viewer};
use crate::service::changes::current_token;
use crate::service::pagination::newest;
use crate::service::plan_lists::PlanRow;
use crate::workflow::{self, ClaimToken};
use entity::{feature, plan, project, user};

#[derive(Clone)]
pub struct Plan(pub plan::Model, Joined);

/// The claims the operation being answered made. `Plan.claimToken` shows a
/// token only in the answer of the claim that created it: one API key is
/// often shared by a fleet, and a worker that lost its claim must not read
/// the new holder's token back from a plan and write on with it.
#[derive(Default)]
pub struct ClaimsMade(Mutex<Vec<ClaimToken>>);

impl ClaimsMade {
    /// Called by the claiming mutations with the plan they claimed.
    pub fn record(&self, plan: &plan::Model) {
        if let Some(token) = current_token(plan) {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(token);
        }
    }

    fn contains(&self, token: ClaimToken) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&token)
    }
}

/// The rows a page's statement joined to its plans (`PlanJoins`), shared
/// between the plans that refer to the same one. A field that has its row
/// here shows it as it is: fifty plans of a page do not each look up their
/// feature in the request's loader.
#[derive(Clone, Default)]
struct Joined {
    feature: Option<Arc<feature::Model>>,
    project: Option<Arc<project::Model>>,
    claimer: Option<Arc<user::Model>>,
}

impl From<plan::Model> for Plan {
    fn from(row: plan::Model) -> Plan {
        Plan(row, Joined::default())
    }
}

impl From<PlanRow> for Plan {
    fn from(row: PlanRow) -> Plan {
        let joined = Joined {
            feature: row.feature,
            project: row.project,
            claimer: row.claimer,
        };
        Plan(row.plan, joined)
    }
}

/// The plans `plan` waits for.
async fn blockers(ctx: &Context<'_>, plan: uuid::Uuid) -> AppResult<Vec<Plan>> {
    let ids = loaders(ctx).db.load_one(PlanBlockers(plan)).await?;
    plans_in_order(ctx, ids.unwrap_or_default()).await
}

/// The plans with these ids, in this order (through the request's loader,
/// so the plans of a whole page load in one batch).
async fn plans_in_order(ctx: &Context<'_>, ids: Vec<uuid::Uuid>) -> AppResult<Vec<Plan>> {
    let mut found = loaders(ctx)
        .db
        .load_many(ids.iter().copied().map(PlanId))
        .await?;
    Ok(ids
        .into_iter()
        .filter_map(|id| found.remove(&PlanId(id)).map(Plan::from))
        .collect())
}

impl Plan {
    /// The columns each field reads besides `PlanColumns::KEYS` (id,
    /// project, feature, status). A page selects only those of the fields
    /// it shows (`types/lists.rs`); the others hold their type's default
    /// there, so a field that reads a column must list it. A field missing
    /// here makes its page read every column.
    pub const COLUMNS_READ: &'static [(&'static str, &'static [plan::Column])] = {
        use plan::Column as C;
        &[
            ("id", &[]),
            ("title", &[C::Title]),
            ("description", &[C::Description]),
            ("status", &[]),
            ("spec", &[C::SpecKey, C::SpecSize]),
            ("specSha256", &[C::SpecSha256]),
            ("specSize", &[C::SpecSize]),
            ("workArtifacts", &[C::WorkArtifacts]),
            ("claimedBy", &[C::ClaimedBy]),
            ("claimedAt", &[C::ClaimedAt]),
            ("submittedBy", &[C::SubmittedBy]),
            ("implementedVersion", &[C::ImplementedVersion]),
            ("implementedFeatureVersion", &[C::ImplementedVersion]),
            ("lastActivityAt", &[C::LastActivityAt]),
            ("createdBy", &[C::CreatedBy]),
            ("createdAt", &[C::CreatedAt]),
            ("updatedAt", &[C::UpdatedAt]),
            ("feature", &[]),
            ("project", &[]),
            ("basedOnVersion", &[C::BasedOnVersion]),
            ("specDrift", &[C::BasedOnVersion, C::BasedOnSpecKey]),
            ("specRevisions", &[]),
            ("priority", &[C::Priority]),
            ("blockedBy", &[]),
            ("blocks", &[]),
            ("isBlocked", &[]),
            ("specHtml", &[C::SpecKey, C::SpecSize]),
            (
                "availableActions",
                &[C::Status, C::ClaimedBy, C::SubmittedBy, C::ProjectId],
            ),
            ("claimToken", &[C::ClaimedBy, C::ClaimGeneration]),
            ("leaseExpiresAt", &[C::ClaimedBy, C::LeaseExpiresAt]),
            ("events", &[]),
        ]
    };

    /// The plan's feature: the row its page joined in, or from the
    /// request's loader.
    async fn feature_row(&self, ctx: &Context<'_>) -> AppResult<Arc<feature::Model>> {
        if let Some(feature) = &self.1.feature {
            return Ok(Arc::clone(feature));
        }
        loaders(ctx)
            .db
            .load_one(FeatureId(self.0.feature_id))
            .await?
            .ok_or_else(|| AppError::internal("plan without feature"))
    }
}

/// How to build (part of) a feature, and where that work stands.
#[Object]
impl Plan {
    /// Stable id (UUID).
    pub(crate) async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Short title.
    async fn title(&self) -> &str {
        &self.0.title
    }
    /// Brief description of the approach.
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    /// Workflow status.
    async fn status(&self) -> PlanStatus {
        self.0.status.into()
    }
    /// The technical spec (markdown), fetched from the spec store only when asked for.
    /// Null, with a `STORAGE_UNAVAILABLE` error at this path, while the store is down.
    #[graphql(complexity = "crate::graphql::limits::DOCUMENT_COMPLEXITY")]
    async fn spec(&self, ctx: &Context<'_>) -> AppResult<Option<String>> {
        // Its size is on the row: a request over budget never loads it.
        document_budget(ctx).charge(usize::try_from(self.0.spec_size).unwrap_or(usize::MAX))?;
        load_spec(ctx, &self.0.spec_key).await.map(Some)
    }
    /// The spec as HTML to show as it is: raw HTML in it shown as text,
    /// links only to http(s), mailto and in-page targets. Null, with a
    /// `STORAGE_UNAVAILABLE` error here, while the store is down.
    #[graphql(complexity = "crate::graphql::limits::DOCUMENT_COMPLEXITY")]
    async fn spec_html(&self, ctx: &Context<'_>) -> AppResult<Option<String>> {
        let budget = document_budget(ctx);
        let spec_size = usize::try_from(self.0.spec_size).unwrap_or(usize::MAX);
        budget.charge(spec_size)?;
        let html = crate::markdown::safe_html(&load_spec(ctx, &self.0.spec_key).await?);
        // The markup on top of the text counts as well.
        budget.charge(html.len().saturating_sub(spec_size))?;
        Ok(Some(html))
    }
    /// SHA-256 (hex) of the current spec.
    async fn spec_sha256(&self) -> &str {
        &self.0.spec_sha256
    }
    /// Size of the current spec in bytes.
    async fn spec_size(&self) -> i64 {
        self.0.spec_size
    }
    /// What the worker submitted (PR links, notes), as markdown.
    #[graphql(complexity = "crate::graphql::limits::DOCUMENT_COMPLEXITY")]
    async fn work_artifacts(&self, ctx: &Context<'_>) -> AppResult<Option<&str>> {
        let artifacts = self.0.work_artifacts.as_deref();
        document_budget(ctx).charge(artifacts.map_or(0, str::len))?;
        Ok(artifacts)
    }
    /// Who holds the plan; null when nobody does.
    async fn claimed_by(&self, ctx: &Context<'_>) -> AppResult<Option<Related<User>>> {
        if let Some(claimer) = &self.1.claimer {
            return Ok(Some(Related(User(Arc::clone(claimer)))));
        }
        Ok(optional_user(ctx, self.0.claimed_by).await?.map(Related))
    }
    /// When the current claim was taken.
    async fn claimed_at(&self) -> Option<DateTime> {
        self.0.claimed_at.map(at)
    }
    /// Who submitted the work.
    async fn submitted_by(&self, ctx: &Context<'_>) -> AppResult<Option<Related<User>>> {
        Ok(optional_user(ctx, self.0.submitted_by).await?.map(Related))
    }
    /// The feature version number this plan's completion created.
    async fn implemented_version(&self) -> Option<i32> {
        self.0.implemented_version
    }
    /// The feature version this plan's completion created.
    async fn implemented_feature_version(
        &self,
        ctx: &Context<'_>,
    ) -> AppResult<Option<FeatureVersion>> {
        let Some(version) = self.0.implemented_version else {
            return Ok(None);
        };
        let key = VersionNumber {
            feature: self.0.feature_id,
            version,
        };
        let found = loaders(ctx).db.load_one(key).await?;
        Ok(found.map(FeatureVersion))
    }
    /// Last claimer activity; the stale sweeper compares against it.
    async fn last_activity_at(&self) -> DateTime {
        at(self.0.last_activity_at)
    }
    /// Who created the plan.
    async fn created_by(&self, ctx: &Context<'_>) -> AppResult<Related<User>> {
        user_by_id(ctx, self.0.created_by).await.map(Related)
    }
    /// When the plan was created.
    async fn created_at(&self) -> DateTime {
        at(self.0.created_at)
    }
    /// When anything about the plan last changed.
    async fn updated_at(&self) -> DateTime {
        at(self.0.updated_at)
    }
    /// The feature this plan implements.
    async fn feature(&self, ctx: &Context<'_>) -> AppResult<Related<Feature>> {
        self.feature_row(ctx).await.map(|row| Related(Feature(row)))
    }
    /// The project the plan belongs to.
    async fn project(&self, ctx: &Context<'_>) -> AppResult<Related<Project>> {
        if let Some(project) = &self.1.project {
            return Ok(Related(Project(Arc::clone(project))));
        }
        let project = loaders(ctx)
            .db
            .load_one(ProjectId(self.0.project_id))
            .await?;
        project
            .map(|project| Related(Project(project)))
            .ok_or_else(|| AppError::internal("plan without project"))
    }
    /// The feature version this plan was written against: the current one
    /// when it was created, or when it was last rebased (`rebasePlan`).
    async fn based_on_version(&self) -> i32 {
        self.0.based_on_version
    }
    /// Null unless the feature moved past the spec this plan was written
    /// against: a newer version, or an amendment of its version. Always null
    /// for COMPLETED and FAILED plans.
    async fn spec_drift(&self, ctx: &Context<'_>) -> AppResult<Option<SpecDrift>> {
        let feature = self.feature_row(ctx).await?;
        Ok(crate::drift::drift_of(&self.0, &feature).map(SpecDrift))
    }
    /// The specs this plan has had, oldest first: its creation, each
    /// `updatePlan` and each `rebasePlan` with a spec — the newest `last` of
    /// them (`number` tells each one's place among all of them).
    #[graphql(complexity = "crate::graphql::limits::page_cost(None, last, child_complexity)")]
    async fn spec_revisions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many of the newest revisions: 0 to 100, default 20.")] last: Option<
            i32,
        >,
    ) -> AppResult<Vec<SpecRevision>> {
        let shown = usize::try_from(newest(last)?).unwrap_or(usize::MAX);
        let all = loaders(ctx)
            .db
            .load_one(PlanSpecRevisions(self.0.id))
            .await?
            .unwrap_or_else(|| Arc::new(Vec::new()));
        let skipped = all.len().saturating_sub(shown);
        Ok(all
            .iter()
            .enumerate()
            .skip(skipped)
            .map(|(index, row)| SpecRevision {
                row: row.clone(),
                number: index + 1,
                all: Arc::clone(&all),
            })
            .collect())
    }
    /// 0 = most urgent … 4 = someday; 2 unless set. `claimNextPlan` takes the
    /// most urgent claimable plan first.
    async fn priority(&self) -> i32 {
        self.0.priority
    }
    /// The plans this one waits for (at most 10): it cannot be claimed until
    /// all of them are COMPLETED (a FAILED one keeps blocking until the
    /// dependency is removed).
    #[graphql(
        complexity = "crate::graphql::limits::dependency_cost(workflow::MAX_BLOCKERS, child_complexity)"
    )]
    async fn blocked_by(&self, ctx: &Context<'_>) -> AppResult<Vec<Plan>> {
        blockers(ctx, self.0.id).await
    }
    /// The plans waiting for this one (at most 50).
    #[graphql(
        complexity = "crate::graphql::limits::dependency_cost(workflow::MAX_WAITERS, child_complexity)"
    )]
    async fn blocks(&self, ctx: &Context<'_>) -> AppResult<Vec<Plan>> {
        let ids = loaders(ctx).db.load_one(PlanWaiters(self.0.id)).await?;
        plans_in_order(ctx, ids.unwrap_or_default()).await
    }
    /// The moves the workflow offers from this plan's status, each with
    /// whether you may make it (your role, claim, submission and the
    /// project's review policy): offer exactly these in a UI.
    #[graphql(
        complexity = "crate::graphql::limits::dependency_cost(workflow::MAX_MOVES, child_complexity)"
    )]
    async fn available_actions(&self, ctx: &Context<'_>) -> AppResult<Vec<PlanAction>> {
        let viewer = viewer(ctx)?;
        let role = RoleIn {
            project: self.0.project_id,
            user: viewer.id(),
        };
        let (role, project) = futures::try_join!(
            loaders(ctx).db.load_one(role),
            loaders(ctx).db.load_one(ProjectId(self.0.project_id)),
        )?;
        let (Some(role), Some(project)) = (role, project) else {
            return Ok(Vec::new());
        };
        Ok(available_actions(
            &self.0,
            viewer.id(),
            role,
            project.review_policy,
        ))
    }
    /// Some plan in `blockedBy` is not COMPLETED, so this one cannot be claimed yet.
    async fn is_blocked(&self, ctx: &Context<'_>) -> AppResult<bool> {
        let blockers = blockers(ctx, self.0.id).await?;
        Ok(workflow::is_blocked(
            blockers.iter().map(|blocker| blocker.0.status),
        ))
    }
    /// The current claim's fencing token; null when nobody holds the plan.
    /// Pass it to updatePlan, heartbeatPlan, submitWork and releasePlan: once
    /// the claim is over (the lease expired and someone claimed the plan
    /// again), requests with it are refused with reason STALE_CLAIM.
    ///
    /// Shown only in the answer of the claimPlan or claimNextPlan that made
    /// the claim, null in every other read: keep it from there. A worker that
    /// lost it releases the plan (releasePlan without a token, as claimer or
    /// owner) and claims again, or goes on without fencing.
    async fn claim_token(&self, ctx: &Context<'_>) -> Option<String> {
        let token = current_token(&self.0)?;
        let made = ctx.data_opt::<Arc<ClaimsMade>>()?;
        made.contains(token).then(|| token.to_string())
    }
    /// When the current claim stalls unless its holder shows activity
    /// (updatePlan, heartbeatPlan) before: last activity + the claim's lease.
    /// Null when nobody holds the plan.
    async fn lease_expires_at(&self) -> Option<DateTime> {
        self.0
            .lease_expires_at
            .filter(|_| self.0.claimed_by.is_some())
            .map(at)
    }
    /// The plan's audit trail, oldest first: its newest `last` events.
    #[graphql(complexity = "crate::graphql::limits::page_cost(None, last, child_complexity)")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many of the newest events: 0 to 100, default 20.")] last: Option<i32>,
    ) -> AppResult<Vec<PlanEvent>> {
        let key = PlanEvents {
            plan: self.0.id,
            last: newest(last)?,
        };
        let events = loaders(ctx).db.load_one(key).await?;
        Ok(events
            .unwrap_or_default()
            .into_iter()
            .map(PlanEvent::Stored)
            .collect())
    }
}

/// What `submitWork` did.
#[derive(SimpleObject)]
pub struct SubmitWorkResult {
    /// The plan after submission.
    pub plan: Plan,
    /// The feature version created, when the plan was submitted as COMPLETED.
    pub feature_version: Option<FeatureVersion>,
}

#[cfg(test)]
mod tests {
    use async_graphql::OutputType;
    use async_graphql::registry::Registry;

    use super::Plan;

    /// A field left out of `COLUMNS_READ` still answers right, but makes
    /// every page that shows it read every column.
    #[test]
    fn every_field_says_which_columns_it_reads() {
        let mut registry = Registry::default();
        Plan::create_type_info(&mut registry);
        let fields = registry.types["Plan"].fields().expect("Plan has fields");
        let unlisted: Vec<&String> = fields
            .keys()
            .filter(|name| !Plan::COLUMNS_READ.iter().any(|(field, _)| field == name))
            .collect();
        assert!(
            unlisted.is_empty(),
            "not in Plan::COLUMNS_READ: {unlisted:?}"
        );
        assert_eq!(
            fields.len(),
            Plan::COLUMNS_READ.len(),
            "a field listed twice, or one that is gone"
        );
    }
}
