//! Spec drift: rebasing a plan onto the feature's current version, plan spec
//! revisions, drift counts and diffs. Whether a plan is drifted is decided by
//! `crate::drift`; announcing it when a feature's spec changes is part of
//! every such change (`changes.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::changes::{MAX_ATTEMPTS, drifted_condition, same_user};
use super::{Services, Viewer, now, parse_id};
use crate::drift::drift_of;
use crate::error::{AppError, AppResult, Argument};
use crate::events::{self, ChangedBy, LiveEvent};
use crate::workflow::{EventKind, PlanStatus, Role};
use entity::{feature, plan, plan_spec_revision};

impl Services {
    /// `rebasePlan`: the plan is now based on its feature's current version
    /// and spec, which the caller says they have read; with `spec_content`
    /// the plan's spec is replaced in the same change (as `updatePlan`, with
    /// its rules: claimed work only by the claimer). Without it, any writer
    /// may rebase a plan nobody holds; a held plan, its claimer or an owner.
    /// One `REBASED` event either way. COMPLETED and FAILED plans are never
    /// drifted and cannot be rebased.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn rebase_plan(
        &self,
        viewer: &Viewer,
        plan_id: &str,
        spec_content: Option<&str>,
    ) -> AppResult<plan::Model> {
        if let Some(content) = spec_content {
            return self
                .update_plan_spec(viewer, plan_id, content, true, None)
                .await;
        }
        let id = parse_id(Argument::PlanId, plan_id)?;
        for _ in 0..MAX_ATTEMPTS {
            let plan = self.find_plan(id).await?;
            let role = self.require_writer(viewer, plan.project_id).await?;
            if plan.status.is_terminal() {
                return Err(finished(plan.status));
            }
            let holder = plan.claimed_by.filter(|_| plan.status.is_worked_on());
            if holder.is_some_and(|holder| holder != viewer.id()) && role != Role::Owner {
                return Err(AppError::Forbidden(
                    "Only the claimer or a project owner can rebase a plan that is being worked on"
                        .into(),
                ));
            }
            let feature = self.find_feature(plan.feature_id).await?;
            let txn = self.begin_write().await?;
            let updated = plan::Entity::update_many()
                .col_expr(
                    plan::Column::BasedOnVersion,
                    Expr::value(feature.current_version),
                )
                .col_expr(
                    plan::Column::BasedOnSpecKey,
                    Expr::value(feature.spec_key.clone()),
                )
                .col_expr(plan::Column::UpdatedAt, Expr::value(now()))
                .filter(plan::Column::Id.eq(plan.id))
                .filter(plan::Column::Status.eq(plan.status))
                .filter(same_user(plan::Column::ClaimedBy, plan.claimed_by))
                .exec_with_returning(&*txn)
                .await?;
            let Some(rebased) = updated.into_iter().next() else {
                continue;
            };
            let event = events::record(
                &*txn,
                &rebased,
                EventKind::Rebased,
                Some(plan.status),
                ChangedBy::user(viewer.id()),
            )
            .await?;
            let live = LiveEvent {
                event,
                plan: rebased.clone(),
                actor: Some(viewer.user.clone()),
            };
            txn.commit_and_publish(&self.events, vec![live]).await?;
            return Ok(rebased);
        }
        Err(AppError::Conflict(
            "The plan kept changing while this request was applied; reload it and retry".into(),
        ))
    }

    /// The spec revisions of each plan, oldest first, in one query.
    pub async fn spec_revisions_of(
        &self,
        plans: &[Uuid],
    ) -> AppResult<HashMap<Uuid, Vec<plan_spec_revision::Model>>> {
        let rows = plan_spec_revision::Entity::find()
            .filter(plan_spec_revision::Column::PlanId.is_in(plans.iter().copied()))
            .order_by_asc(plan_spec_revision::Column::CreatedAt)
            .order_by_asc(plan_spec_revision::Column::Id)
            .all(&self.db)
            .await?;
        let mut grouped: HashMap<Uuid, Vec<plan_spec_revision::Model>> = HashMap::new();
        for row in rows {
            grouped.entry(row.plan_id).or_default().push(row);
        }
        Ok(grouped)
    }

    /// How many open plans of each feature are drifted, in one query.
    pub async fn drifted_counts_by_feature(
        &self,
        features: &[Uuid],
    ) -> AppResult<HashMap<Uuid, u64>> {
        let rows: Vec<(Uuid, i64)> = plan::Entity::find()
            .select_only()
            .column(plan::Column::FeatureId)
            .column_as(plan::Column::Id.count(), "count")
            .filter(plan::Column::FeatureId.is_in(features.iter().copied()))
            .filter(drifted_condition(true))
            .group_by(plan::Column::FeatureId)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(feature, count)| (feature, u64::try_from(count).unwrap_or(0)))
            .collect())
    }
}

/// The refusal to rebase a finished plan.
fn finished(status: PlanStatus) -> AppError {
    AppError::Conflict(format!(
        "This plan is {status}; finished plans are never drifted and cannot be rebased"
    ))
}

/// What `get_spec_diff` shows: a plan's drift, or two feature versions.
pub struct DiffReport {
    pub feature: feature::Model,
    pub from_version: i32,
    pub to_version: i32,
    pub diff: crate::drift::SpecDiff,
}

impl Services {
    /// The diff between two spec objects, both read in one batch from the
    /// store, compared under [`Self::compare`].
    pub async fn diff_objects(
        &self,
        from: &str,
        to: &str,
        labels: (String, String),
    ) -> AppResult<crate::drift::SpecDiff> {
        let keys = vec![from.to_owned(), to.to_owned()];
        let objects = self.specs.get_many(&keys).await?;
        let text = |key: &str| {
            objects
                .iter()
                .find(|(found, _)| found == key)
                .map(|(_, bytes)| crate::storage::spec_text(bytes))
                .ok_or_else(|| AppError::SpecMissing {
                    key: key.to_owned(),
                })
        };
        let (old, new) = (text(from)?, text(to)?);
        self.compare(old, new, labels).await
    }

    /// The diff from `old` to `new`, computed off the async threads under
    /// the diff's deadline, in one of the instance's `--max-concurrent-diffs`
    /// turns. A caller that goes away while waiting for its turn never
    /// starts; one already comparing finishes within the deadline, holding
    /// its turn, so the work in flight stays bounded.
    pub async fn compare(
        &self,
        old: String,
        new: String,
        labels: (String, String),
    ) -> AppResult<crate::drift::SpecDiff> {
        let turn = Arc::clone(&self.diff_turns)
            .acquire_owned()
            .await
            .map_err(|_| AppError::internal("the diff turns were closed"))?;
        metrics::counter!("plangraph_spec_diffs_total").increment(1);
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            crate::drift::diff(
                &old,
                &new,
                &labels.0,
                &labels.1,
                crate::drift::DiffLimits::default(),
            )
        })
        .await
        .map_err(|error| AppError::internal_from("the diff task failed", error))
    }

    /// A plan's drift with its diff, for members of its project; `None` when
    /// the plan is up to date (or finished).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn plan_drift_diff(
        &self,
        viewer: &Viewer,
        plan_id: &str,
    ) -> AppResult<(plan::Model, Option<DiffReport>)> {
        let plan = self.plan(viewer, plan_id).await?;
        let feature = self.find_feature(plan.feature_id).await?;
        let Some(drift) = drift_of(&plan, &feature) else {
            return Ok((plan, None));
        };
        let labels = (
            format!("v{} (as the plan read it)", drift.from_version),
            format!("v{} (current)", drift.to_version),
        );
        let diff = self
            .diff_objects(&drift.from_spec_key, &drift.to_spec_key, labels)
            .await?;
        let report = DiffReport {
            feature,
            from_version: drift.from_version,
            to_version: drift.to_version,
            diff,
        };
        Ok((plan, Some(report)))
    }

    /// The diff of a feature's spec between two versions (`to` default the
    /// current one), for members of its project.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn feature_spec_diff(
        &self,
        viewer: &Viewer,
        feature_id: &str,
        from: i32,
        to: Option<i32>,
    ) -> AppResult<DiffReport> {
        let feature = self.feature(viewer, feature_id).await?;
        let to = to.unwrap_or(feature.current_version);
        let versions = self
            .versions_by_numbers(&[(feature.id, from), (feature.id, to)])
            .await?;
        let key_of = |number: i32| {
            versions
                .iter()
                .find(|version| version.version == number)
                .map(|version| version.spec_key.clone())
                .ok_or_else(|| {
                    AppError::BadUserInput(format!(
                        "The feature has no version {number}; its versions are 1 to {}",
                        feature.current_version
                    ))
                })
        };
        let (from_key, to_key) = (key_of(from)?, key_of(to)?);
        let diff = self
            .diff_objects(&from_key, &to_key, (format!("v{from}"), format!("v{to}")))
            .await?;
        Ok(DiffReport {
            feature,
            from_version: from,
            to_version: to,
            diff,
        })
    }
}
