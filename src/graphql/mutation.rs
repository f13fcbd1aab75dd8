//! Write operations. Each is one service call; rules live in the service layer.

use async_graphql::{Context, ID, Object};

use super::types::{
    ApiKey, ClaimsMade, CreatedApiKey, CreatedUser, Feature, FeatureVersion, Plan, PlanStatus,
    Project, ProjectMember, ProjectRole, ReviewPolicy, SubmitStatus, SubmitWorkResult, User,
};
use super::types::{CreatedWebhook, PlanEventKind, Webhook, WebhookDelivery};
use super::{viewer, writing};
use crate::error::AppResult;
use crate::service::claim_next::NextPlan;
use crate::service::features::FeatureUpdate;
use crate::service::transition::Outcome;
use crate::service::webhooks::{KindsChange, WebhookUpdate};

pub struct MutationRoot;

fn submit_result(outcome: Outcome) -> SubmitWorkResult {
    SubmitWorkResult {
        plan: Plan::from(outcome.plan),
        feature_version: outcome.version.map(FeatureVersion),
    }
}

/// Changes. Errors carry `extensions.code`: UNAUTHENTICATED, FORBIDDEN,
/// NOT_FOUND, CONFLICT, INVALID_TRANSITION, BAD_USER_INPUT,
/// STORAGE_UNAVAILABLE or INTERNAL.
#[Object(name = "Mutation")]
impl MutationRoot {
    /// Admins only: creates a user and returns their first API key (shown once).
    async fn create_user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new user's email; must be unused.")] email: String,
        #[graphql(desc = "Name to show.")] display_name: Option<String>,
        #[graphql(
            desc = "Make the user a server administrator.",
            default_with = "Some(false)"
        )]
        is_admin: Option<bool>,
    ) -> AppResult<CreatedUser> {
        let created = writing(ctx)
            .create_user(
                viewer(ctx)?,
                &email,
                display_name,
                is_admin.unwrap_or(false),
            )
            .await?;
        Ok(CreatedUser {
            user: User::from(created.user),
            api_key: ApiKey(created.key.key),
            secret: created.key.token,
        })
    }

    /// Creates a project; you become its owner.
    async fn create_project(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Project name, 1 to 255 characters.")] name: String,
        #[graphql(desc = "What the project is about.")] description: Option<String>,
    ) -> AppResult<Project> {
        let project = writing(ctx)
            .create_project(viewer(ctx)?, &name, description)
            .await?;
        Ok(Project::from(project))
    }

    /// Owners only: adds an existing user to the project, or changes their role.
    async fn add_project_member(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project.")] project_id: ID,
        #[graphql(desc = "Email of an existing user.")] email: String,
        #[graphql(desc = "Their role.", default_with = "Some(ProjectRole::Member)")] role: Option<
            ProjectRole,
        >,
    ) -> AppResult<ProjectMember> {
        let member = writing(ctx)
            .add_project_member(
                viewer(ctx)?,
                &project_id,
                &email,
                role.unwrap_or(ProjectRole::Member).into(),
            )
            .await?;
        Ok(ProjectMember(member))
    }

    /// Owners only: who may approve work in REVIEW from now on. GitHub's
    /// "no self-approval" is `OTHER_THAN_SUBMITTER`.
    async fn set_project_review_policy(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project.")] project_id: ID,
        #[graphql(desc = "Who may approve work in REVIEW.")] policy: ReviewPolicy,
    ) -> AppResult<Project> {
        let project = writing(ctx)
            .set_review_policy(viewer(ctx)?, &project_id, policy.into())
            .await?;
        Ok(Project::from(project))
    }

    /// Owners remove anyone; members may remove themselves. The last owner stays.
    async fn remove_project_member(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project.")] project_id: ID,
        #[graphql(desc = "The member to remove.")] user_id: ID,
    ) -> AppResult<bool> {
        writing(ctx)
            .remove_project_member(viewer(ctx)?, &project_id, &user_id)
            .await
    }

    /// Creates a feature with its spec; this is version 1.
    async fn create_feature(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project.")] project_id: ID,
        #[graphql(desc = "Short title, 1 to 255 characters.")] title: String,
        #[graphql(desc = "Longer description.")] description: Option<String>,
        #[graphql(desc = "The feature's spec, markdown.")] spec_content: String,
    ) -> AppResult<Feature> {
        let feature = writing(ctx)
            .create_feature(
                viewer(ctx)?,
                &project_id,
                &title,
                description,
                &spec_content,
            )
            .await?;
        Ok(Feature::from(feature))
    }

    /// Edits a feature. By default the current version is amended; with
    /// `newVersion: true` the next version is cut.
    async fn update_feature(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The feature.")] feature_id: ID,
        #[graphql(desc = "New title.")] title: Option<String>,
        #[graphql(desc = "New description.")] description: Option<String>,
        #[graphql(desc = "New spec, markdown.")] spec_content: Option<String>,
        #[graphql(
            desc = "Cut a new version instead of amending the current one.",
            default_with = "Some(false)"
        )]
        new_version: Option<bool>,
    ) -> AppResult<Feature> {
        let update = FeatureUpdate {
            title,
            description,
            spec_content,
            new_version: new_version.unwrap_or(false),
        };
        let feature = writing(ctx)
            .update_feature(viewer(ctx)?, &feature_id, update)
            .await?;
        Ok(Feature::from(feature))
    }

    /// Creates an implementation plan for a feature, in DRAFT (default) or READY.
    #[allow(clippy::too_many_arguments)]
    async fn create_plan(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The feature this plan implements.")] feature_id: ID,
        #[graphql(desc = "Short title, 1 to 255 characters.")] title: String,
        #[graphql(desc = "Brief description of the approach.")] description: Option<String>,
        #[graphql(desc = "The technical spec, markdown.")] spec_content: String,
        #[graphql(
            desc = "DRAFT (default) or READY.",
            default_with = "Some(PlanStatus::Draft)"
        )]
        status: Option<PlanStatus>,
        #[graphql(
            desc = "0 = most urgent … 4 = someday; default 2.",
            default_with = "Some(2)"
        )]
        priority: Option<i32>,
    ) -> AppResult<Plan> {
        let plan = writing(ctx)
            .create_plan(
                viewer(ctx)?,
                &feature_id,
                &title,
                description,
                &spec_content,
                status.unwrap_or(PlanStatus::Draft).into(),
                priority,
            )
            .await?;
        Ok(Plan::from(plan))
    }

    /// Members change a plan's priority (0 = most urgent … 4 = someday);
    /// a PRIORITY_CHANGED event records it.
    async fn set_plan_priority(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The plan.")] plan_id: ID,
        #[graphql(desc = "The new priority, 0 to 4.")] priority: i32,
    ) -> AppResult<Plan> {
        let plan = writing(ctx)
            .set_plan_priority(viewer(ctx)?, &plan_id, priority)
            .await?;
        Ok(Plan::from(plan))
    }

    /// Members make a plan wait for another plan of the same project: it
    /// cannot be claimed until that one is COMPLETED. A dependency that would
    /// make a cycle is refused (BAD_USER_INPUT naming the cycle). Returns the
    /// waiting plan.
    async fn add_plan_dependency(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The plan that waits.")] plan_id: ID,
        #[graphql(desc = "The plan it waits for.")] blocked_by_plan_id: ID,
    ) -> AppResult<Plan> {
        let plan = writing(ctx)
            .add_plan_dependency(viewer(ctx)?, &plan_id, &blocked_by_plan_id)
            .await?;
        Ok(Plan::from(plan))
    }

    /// Members remove a dependency; when nothing else holds the plan back,
    /// it also gets an UNBLOCKED event. Returns the plan that waited.
    async fn remove_plan_dependency(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The plan that waits.")] plan_id: ID,
        #[graphql(desc = "The plan it should no longer wait for.")] blocked_by_plan_id: ID,
    ) -> AppResult<Plan> {
        let plan = writing(ctx)
            .remove_plan_dependency(viewer(ctx)?, &plan_id, &blocked_by_plan_id)
            .await?;
        Ok(Plan::from(plan))
    }

    /// Claims for you the best claimable plan of a project (or feature):
    /// READY and not blocked, most urgent priority first, then oldest. Work
    /// a reviewer sent back to you comes first (you hold it already; its
    /// newest event's `note` says what to change). Null when there is none.
    /// Concurrent callers never get the same plan and never a CONFLICT. The
    /// plan comes with what you need to start: ask for `spec`, `feature`,
    /// `claimToken` (shown only in this answer) and `leaseExpiresAt`.
    async fn claim_next_plan(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project to take work from.")] project_id: ID,
        #[graphql(desc = "Only plans of this feature.")] feature_id: Option<ID>,
        #[graphql(
            desc = "The claim's lease in seconds (1 to 604800); default the server's stale threshold. Without activity for this long the plan stalls."
        )]
        lease_seconds: Option<i32>,
        #[graphql(
            desc = "Also take over STALLED plans whose lease expired; their previous holder's token stops working.",
            default_with = "Some(false)"
        )]
        include_stalled: Option<bool>,
        #[graphql(
            desc = "Leave out plans whose spec drifted (Plan.specDrift): they need a rebasePlan by someone who re-read the feature first.",
            default_with = "Some(false)"
        )]
        skip_drifted: Option<bool>,
    ) -> AppResult<Option<Plan>> {
        let next = writing(ctx)
            .claim_next(
                viewer(ctx)?,
                &project_id,
                feature_id.as_deref().map(String::as_str),
                lease_seconds,
                include_stalled.unwrap_or(false),
                skip_drifted.unwrap_or(false),
            )
            .await?;
        let plan = match next {
            NextPlan::Claimed { plan, .. } | NextPlan::Returned { plan, .. } => plan,
            NextPlan::Nothing(_) => return Ok(None),
        };
        record_claim(ctx, &plan);
        Ok(Some(Plan::from(plan)))
    }

    /// The claimer renews the lease of a plan they hold, cheaply (no spec,
    /// no event). A STALLED plan's holder resumes it (IN_PROGRESS again).
    async fn heartbeat_plan(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The plan.")] plan_id: ID,
        #[graphql(desc = "Your claim's token; refused (STALE_CLAIM) when no longer current.")]
        claim_token: Option<String>,
    ) -> AppResult<Plan> {
        let plan = writing(ctx)
            .heartbeat_plan(viewer(ctx)?, &plan_id, claim_token.as_deref())
            .await?;
        Ok(Plan::from(plan))
    }

    /// Replaces the spec. DRAFT/READY plans: any member. Claimed work: only the
    /// claimer, and the plan moves to IN_PROGRESS with fresh activity.
    async fn update_plan(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The plan.")] plan_id: ID,
        #[graphql(desc = "The new spec, markdown (progress notes welcome).")] spec_content: String,
        #[graphql(desc = "Your claim's token; refused (STALE_CLAIM) when no longer current.")]
        claim_token: Option<String>,
    ) -> AppResult<Plan> {
        let plan = writing(ctx)
            .update_plan(
                viewer(ctx)?,
                &plan_id,
                &spec_content,
                claim_token.as_deref(),
            )
            .await?;
        Ok(Plan::from(plan))
    }

    /// Rebases a plan onto its feature's current version: `basedOnVersion`
    /// becomes the feature's current version and `specDrift` clears. Say you
    /// re-read the feature spec; with `specContent` the plan's spec is replaced
    /// in the same change (as updatePlan: claimed work only by its claimer).
    /// Without it, any member may rebase a plan nobody holds, and the claimer
    /// or an owner one that is held. COMPLETED and FAILED plans: CONFLICT.
    async fn rebase_plan(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The plan.")] plan_id: ID,
        #[graphql(
            desc = "A new spec for the plan, markdown, written against the current feature spec."
        )]
        spec_content: Option<String>,
    ) -> AppResult<Plan> {
        let plan = writing(ctx)
            .rebase_plan(viewer(ctx)?, &plan_id, spec_content.as_deref())
            .await?;
        Ok(Plan::from(plan))
    }

    /// Moves a plan along the workflow: DRAFT↔READY, REVIEW→COMPLETED (cuts a
    /// version) or →IN_PROGRESS, STALLED→READY, or →FAILED. Anything else is
    /// INVALID_TRANSITION, listing what is allowed.
    async fn set_plan_status(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The plan.")] plan_id: ID,
        #[graphql(desc = "The status to move to.")] status: PlanStatus,
        #[graphql(
            desc = "Why, for the plan's history (`PlanEvent.note`); when sending work back from REVIEW to IN_PROGRESS, what the worker should change. Up to the description limit."
        )]
        note: Option<String>,
    ) -> AppResult<Plan> {
        let outcome = writing(ctx)
            .set_plan_status(viewer(ctx)?, &plan_id, status.into(), note)
            .await?;
        Ok(Plan::from(outcome.plan))
    }

    /// Claims a READY plan for yourself. CONFLICT if it is not READY, someone
    /// else got it first, or it waits for unfinished plans (reason BLOCKED,
    /// `extensions.blockedBy`).
    async fn claim_plan(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The plan.")] plan_id: ID,
        #[graphql(
            desc = "The claim's lease in seconds (1 to 604800); default the server's stale threshold."
        )]
        lease_seconds: Option<i32>,
    ) -> AppResult<Plan> {
        let plan = writing(ctx)
            .claim_plan(viewer(ctx)?, &plan_id, lease_seconds)
            .await?;
        record_claim(ctx, &plan);
        Ok(Plan::from(plan))
    }

    /// Gives a claimed plan back: READY again, claim cleared. The claimer or an owner.
    async fn release_plan(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The plan.")] plan_id: ID,
        #[graphql(desc = "Your claim's token; refused (STALE_CLAIM) when no longer current.")]
        claim_token: Option<String>,
    ) -> AppResult<Plan> {
        let outcome = writing(ctx)
            .release_plan(viewer(ctx)?, &plan_id, claim_token.as_deref())
            .await?;
        Ok(Plan::from(outcome.plan))
    }

    /// The claimer submits work: to REVIEW for approval, or straight to
    /// COMPLETED (which cuts and returns a new feature version).
    async fn submit_work(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The plan.")] plan_id: ID,
        #[graphql(desc = "PR links, file paths, test results, notes: markdown.")]
        artifacts_markdown: String,
        #[graphql(desc = "REVIEW or COMPLETED.")] status: SubmitStatus,
        #[graphql(desc = "Your claim's token; refused (STALE_CLAIM) when no longer current.")]
        claim_token: Option<String>,
    ) -> AppResult<SubmitWorkResult> {
        let outcome = writing(ctx)
            .submit_work(
                viewer(ctx)?,
                &plan_id,
                &artifacts_markdown,
                status.into(),
                claim_token.as_deref(),
            )
            .await?;
        Ok(submit_result(outcome))
    }

    /// Creates another API key for yourself; the secret is shown only here.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "A name to recognise the key by.")] label: String,
    ) -> AppResult<CreatedApiKey> {
        let created = writing(ctx).create_api_key(viewer(ctx)?, &label).await?;
        Ok(CreatedApiKey {
            api_key: ApiKey(created.key),
            secret: created.token,
        })
    }

    /// Revokes one of your keys (admins: anyone's). It stops working at once.
    async fn revoke_api_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The key's id.")] id: ID,
    ) -> AppResult<ApiKey> {
        let key = writing(ctx).revoke_api_key(viewer(ctx)?, &id).await?;
        Ok(ApiKey(key))
    }

    /// Owners only: registers a URL that receives the project's plan events,
    /// signed with a secret returned only here.
    async fn create_webhook(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project whose events are sent.")] project_id: ID,
        #[graphql(
            desc = "An http(s) URL on a public address (the server may allow private ones)."
        )]
        url: String,
        #[graphql(desc = "Send only these kinds; null or left out: every kind.")]
        event_kinds: Option<Vec<PlanEventKind>>,
    ) -> AppResult<CreatedWebhook> {
        let kinds = event_kinds.map(|kinds| kinds.into_iter().map(Into::into).collect());
        let created = writing(ctx)
            .create_webhook(viewer(ctx)?, &project_id, &url, kinds)
            .await?;
        Ok(CreatedWebhook {
            webhook: Webhook(created.webhook),
            secret: created.secret,
        })
    }

    /// Owners only: changes a webhook; arguments left out (or null) keep
    /// their value. A new URL or enabling it again forgets past failures;
    /// enabled again, it receives what happened meanwhile.
    async fn update_webhook(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The webhook.")] id: ID,
        #[graphql(desc = "New URL.")] url: Option<String>,
        #[graphql(desc = "Send only these kinds from now on.")] event_kinds: Option<
            Vec<PlanEventKind>,
        >,
        #[graphql(
            desc = "true: send every kind (including kinds added later), replacing eventKinds."
        )]
        all_event_kinds: Option<bool>,
        #[graphql(desc = "Enable or disable it.")] enabled: Option<bool>,
    ) -> AppResult<Webhook> {
        let kinds = event_kinds.map(|kinds| kinds.into_iter().map(Into::into).collect());
        let update = WebhookUpdate {
            url,
            kinds: KindsChange::new(kinds, all_event_kinds.unwrap_or(false))?,
            enabled,
        };
        let webhook = writing(ctx)
            .update_webhook(viewer(ctx)?, &id, update)
            .await?;
        Ok(Webhook(webhook))
    }

    /// Owners only: deletes a webhook and its delivery log.
    async fn delete_webhook(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The webhook.")] id: ID,
    ) -> AppResult<bool> {
        writing(ctx).delete_webhook(viewer(ctx)?, &id).await
    }

    /// Owners only: replaces a webhook's secret and returns the new one (shown
    /// only here); deliveries from now on are signed with it.
    async fn rotate_webhook_secret(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The webhook.")] id: ID,
    ) -> AppResult<CreatedWebhook> {
        let rotated = writing(ctx)
            .rotate_webhook_secret(viewer(ctx)?, &id)
            .await?;
        Ok(CreatedWebhook {
            webhook: Webhook(rotated.webhook),
            secret: rotated.secret,
        })
    }

    /// Owners only: sends a logged delivery's event again, now, and returns
    /// the new attempt. It does not change the webhook's place in the stream.
    async fn redeliver_webhook_delivery(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "A delivery from `Webhook.deliveries`.")] delivery_id: ID,
    ) -> AppResult<WebhookDelivery> {
        let delivery = writing(ctx)
            .redeliver_webhook_delivery(viewer(ctx)?, &delivery_id)
            .await?;
        Ok(WebhookDelivery(delivery))
    }
}

/// Notes that this operation claimed `plan`, so that its answer shows the
/// claim's token (`Plan.claimToken`); every operation gets its record when
/// it is prepared (an operation without one shows no token).
fn record_claim(ctx: &Context<'_>, plan: &entity::plan::Model) {
    if let Some(made) = ctx.data_opt::<std::sync::Arc<ClaimsMade>>() {
        made.record(plan);
    }
}
