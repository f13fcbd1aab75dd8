//! `plangraph admin seed-demo`: a realistic data set for demos and for the
//! dashboard benchmark, written in bulk so that ten thousand plans take
//! seconds. The rows are what the workflow would have produced (statuses,
//! claims, submissions, contiguous versions, an event per step), but they are
//! generated directly instead of replaying thousands of mutations.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt, TryStreamExt};
use sea_orm::{ConnectionTrait, EntityTrait, IntoActiveModel, Set};
use uuid::Uuid;

mod content;

use content::{
    FEATURE_AREAS, FEATURE_ASPECTS, PEOPLE, PLAN_OBJECTS, PLAN_VERBS, PROJECT_NAMES, Rng,
    feature_spec, plan_spec,
};

use crate::error::{AppError, AppResult};
use crate::events;
use crate::service::{Services, now};
use crate::storage::{SpecOwner, spec_key};
use crate::workflow::{EventKind, PlanStatus, ReviewPolicy, Role};
use entity::{
    feature, feature_version, plan, plan_event, plan_spec_revision, project, project_member, user,
};

/// How much to create: `projects` × `features_per_project` features and, on
/// average, `plans_per_feature` plans per feature.
#[derive(Debug, Clone, Copy)]
pub struct DemoSize {
    pub projects: usize,
    pub features_per_project: usize,
    pub plans_per_feature: usize,
}

/// What `seed_demo` created, and where to point a dashboard at it.
pub struct DemoData {
    pub admin_email: String,
    /// API key of the demo admin, who is an owner of every demo project.
    pub admin_key: String,
    pub users: usize,
    pub projects: usize,
    pub features: usize,
    pub plans: usize,
    pub feature_versions: usize,
    pub plan_events: usize,
    pub spec_objects: usize,
    pub plans_by_status: Vec<(PlanStatus, usize)>,
    pub fewest_plans_per_feature: usize,
    pub most_plans_per_feature: usize,
    /// The first demo project.
    pub sample_project: Uuid,
    /// The busiest feature of `sample_project`: a page of 50 plans is full.
    pub sample_feature: Uuid,
    pub sample_feature_plans: usize,
}

/// Refuses sizes that are surely typos, before anything is written.
const MAX_PLANS: usize = 1_000_000;
/// Spec objects written at once; enough to hide a remote store's latency
/// without opening hundreds of sockets or files.
const SPEC_WRITES_IN_FLIGHT: usize = 32;
/// Rows per INSERT: 18 plan columns × 500 stays well under SQLite's 32 766 and
/// PostgreSQL's 65 535 bind parameters.
const ROWS_PER_INSERT: usize = 500;
/// Plans are spread over this much history.
const HISTORY_DAYS: i64 = 42;

/// Who acts in the demo projects.
struct Cast {
    owner: Uuid,
    /// Members who claim and submit work.
    workers: Vec<Uuid>,
    viewer: Uuid,
}

impl Cast {
    fn writers(&self) -> Vec<Uuid> {
        std::iter::once(self.owner)
            .chain(self.workers.iter().copied())
            .collect()
    }
}

/// One step of a plan's history, as its event records it.
struct Step {
    kind: EventKind,
    to: PlanStatus,
    actor: Option<Uuid>,
    /// Whether the workflow moves `last_activity_at` on this step.
    activity: bool,
}

/// A plan and everything that goes with it, before it is written.
struct PlanDraft {
    row: plan::Model,
    spec: String,
    events: Vec<plan_event::ActiveModel>,
    completed_at: Option<DateTime<Utc>>,
}

/// One project's rows, generated in memory and then written in one transaction.
struct ProjectBatch {
    project: project::Model,
    members: Vec<project_member::Model>,
    features: Vec<feature::Model>,
    versions: Vec<feature_version::Model>,
    plans: Vec<plan::Model>,
    revisions: Vec<plan_spec_revision::Model>,
    events: Vec<plan_event::ActiveModel>,
    /// (key, content) of every spec object the rows point at.
    specs: Vec<(String, String)>,
    plans_per_feature: Vec<(Uuid, usize)>,
}

/// Creates a demo admin with an API key, a few people, and `size` worth
/// of projects, features and plans; everyone is a member of every new
/// project. Adds to whatever the database already holds: the new users'
/// emails carry a fresh tag.
///
/// Per project, the spec objects are written first and then every row in
/// one transaction, so an interruption leaves whole projects and no row
/// pointing at a missing object.
#[tracing::instrument(skip(services))]
pub async fn seed(services: &Services, size: DemoSize) -> AppResult<DemoData> {
    let total_plans = size
        .projects
        .checked_mul(size.features_per_project)
        .and_then(|features| features.checked_mul(size.plans_per_feature))
        .filter(|plans| *plans <= MAX_PLANS);
    if size.projects == 0 || size.features_per_project == 0 || total_plans.is_none() {
        return Err(AppError::BadUserInput(format!(
            "seed-demo needs at least one project and one feature, and at most {MAX_PLANS} plans in all"
        )));
    }
    // The random tail of a UUIDv7 keeps this run's emails apart from earlier runs'.
    let tag = Uuid::now_v7().simple().to_string()[24..].to_owned();
    let admin_email = format!("demo-admin-{tag}@example.com");
    let admin = services
        .create_user_unchecked(&admin_email, Some("Demo admin".into()), true)
        .await?;
    let cast = insert_people(services, admin.user.id, &tag).await?;

    let mut rng = Rng(0x5eed_0f0d_d3a0_2026);
    let mut data = DemoData {
        admin_email,
        admin_key: admin.key.token,
        users: PEOPLE.len() + 1,
        projects: 0,
        features: 0,
        plans: 0,
        feature_versions: 0,
        plan_events: 0,
        spec_objects: 0,
        plans_by_status: Vec::new(),
        fewest_plans_per_feature: usize::MAX,
        most_plans_per_feature: 0,
        sample_project: Uuid::nil(),
        sample_feature: Uuid::nil(),
        sample_feature_plans: 0,
    };
    let mut by_status: BTreeMap<PlanStatus, usize> = BTreeMap::new();
    for index in 0..size.projects {
        let batch = generate_project(&mut rng, &cast, index, size);
        if index == 0 {
            data.sample_project = batch.project.id;
            let busiest = batch.plans_per_feature.iter().max_by_key(|(_, n)| *n);
            if let Some((feature, count)) = busiest {
                data.sample_feature = *feature;
                data.sample_feature_plans = *count;
            }
        }
        for (_, count) in &batch.plans_per_feature {
            data.fewest_plans_per_feature = data.fewest_plans_per_feature.min(*count);
            data.most_plans_per_feature = data.most_plans_per_feature.max(*count);
        }
        for plan in &batch.plans {
            *by_status.entry(plan.status).or_default() += 1;
        }
        data.projects += 1;
        data.features += batch.features.len();
        data.plans += batch.plans.len();
        data.feature_versions += batch.versions.len();
        data.plan_events += batch.events.len();
        data.spec_objects += batch.specs.len();
        write_specs(services, &batch.specs).await?;
        insert_project_batch(services, batch).await?;
    }
    data.plans_by_status = by_status.into_iter().collect();
    // Fresh planner statistics, as a database in use has them (autovacuum
    // would take a minute to get there): without them PostgreSQL guesses
    // a table of 10 000 plans holds a handful and picks poor plans.
    services.db.execute_unprepared("ANALYZE").await?;
    Ok(data)
}

async fn insert_people(services: &Services, owner: Uuid, tag: &str) -> AppResult<Cast> {
    let at = now();
    let people: Vec<user::Model> = PEOPLE
        .iter()
        .map(|(name, local)| user::Model {
            id: Uuid::now_v7(),
            email: format!("{local}.{tag}@example.com"),
            display_name: Some((*name).to_owned()),
            is_admin: false,
            created_at: at,
        })
        .collect();
    let mut ids: Vec<Uuid> = people.iter().map(|person| person.id).collect();
    let txn = services.begin_write().await?;
    user::Entity::insert_many(people.into_iter().map(IntoActiveModel::into_active_model))
        .exec_without_returning(&*txn)
        .await?;
    txn.commit().await?;
    let viewer = ids.pop().unwrap_or(owner);
    Ok(Cast {
        owner,
        workers: ids,
        viewer,
    })
}

/// Content-addressed objects may be written in any order and more than
/// once, so they go out concurrently, a bounded number at a time.
async fn write_specs(services: &Services, specs: &[(String, String)]) -> AppResult<()> {
    futures::stream::iter(specs)
        .map(|(key, content)| services.specs.put(key, content.as_bytes()))
        .buffer_unordered(SPEC_WRITES_IN_FLIGHT)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    Ok(())
}

async fn insert_project_batch(services: &Services, batch: ProjectBatch) -> AppResult<()> {
    let ProjectBatch {
        project,
        members,
        features,
        versions,
        plans,
        revisions,
        events,
        ..
    } = batch;
    let txn = services.begin_write().await?;
    project::Entity::insert(project.into_active_model())
        .exec_without_returning(&*txn)
        .await?;
    insert_chunked::<project_member::ActiveModel, _>(&*txn, members).await?;
    insert_chunked::<feature::ActiveModel, _>(&*txn, features).await?;
    insert_chunked::<feature_version::ActiveModel, _>(&*txn, versions).await?;
    insert_chunked::<plan::ActiveModel, _>(&*txn, plans).await?;
    insert_chunked::<plan_spec_revision::ActiveModel, _>(&*txn, revisions).await?;
    events::record_many(&*txn, events).await?;
    txn.commit().await
}

async fn insert_chunked<A, M>(connection: &impl ConnectionTrait, rows: Vec<M>) -> AppResult<()>
where
    A: sea_orm::ActiveModelTrait + Send,
    M: IntoActiveModel<A>,
{
    let rows: Vec<A> = rows
        .into_iter()
        .map(IntoActiveModel::into_active_model)
        .collect();
    for chunk in chunks(rows) {
        <A::Entity as EntityTrait>::insert_many(chunk)
            .exec_without_returning(connection)
            .await?;
    }
    Ok(())
}

fn chunks<T>(rows: Vec<T>) -> Vec<Vec<T>> {
    let mut chunks = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        chunks.push(rows.by_ref().take(ROWS_PER_INSERT).collect());
    }
    chunks
}

/// Plans per feature, uneven as in real projects (a few busy features, a
/// long tail), summing to exactly `features × mean`. Weights fall off as
/// 1/√rank; largest remainders round to whole plans.
fn plans_per_feature(features: usize, mean: usize) -> Vec<usize> {
    let total = features * mean;
    let weights: Vec<f64> = (1..=features)
        .map(|rank| 1.0 / (rank as f64).sqrt())
        .collect();
    let sum: f64 = weights.iter().sum();
    let exact: Vec<f64> = weights.iter().map(|w| w / sum * total as f64).collect();
    let mut counts: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let mut order: Vec<usize> = (0..features).collect();
    order.sort_by(|a, b| {
        let fraction = |i: usize| exact[i] - exact[i].floor();
        fraction(*b).total_cmp(&fraction(*a))
    });
    let missing = total - counts.iter().sum::<usize>();
    for index in order.into_iter().take(missing) {
        counts[index] += 1;
    }
    counts
}

fn generate_project(rng: &mut Rng, cast: &Cast, index: usize, size: DemoSize) -> ProjectBatch {
    let current = now();
    let project_id = Uuid::now_v7();
    let round = index / PROJECT_NAMES.len();
    let name = match round {
        0 => PROJECT_NAMES[index].to_owned(),
        _ => format!(
            "{} {}",
            PROJECT_NAMES[index % PROJECT_NAMES.len()],
            round + 1
        ),
    };
    let project_created = current
        - Duration::days(HISTORY_DAYS)
        - rng.seconds_between(Duration::zero(), Duration::days(3));
    let roles = std::iter::once((cast.owner, Role::Owner))
        .chain(cast.workers.iter().map(|id| (*id, Role::Member)))
        .chain(std::iter::once((cast.viewer, Role::Viewer)));
    let members = roles
        .map(|(user_id, role)| project_member::Model {
            project_id,
            user_id,
            role,
            created_at: project_created,
        })
        .collect();
    let mut batch = ProjectBatch {
        project: project::Model {
            id: project_id,
            name,
            description: Some("Demo data created by `plangraph admin seed-demo`.".into()),
            created_by: cast.owner,
            created_at: project_created,
            updated_at: project_created,
            review_policy: ReviewPolicy::default(),
        },
        members,
        features: Vec::new(),
        versions: Vec::new(),
        plans: Vec::new(),
        revisions: Vec::new(),
        events: Vec::new(),
        specs: Vec::new(),
        plans_per_feature: Vec::new(),
    };
    let counts = plans_per_feature(size.features_per_project, size.plans_per_feature);
    for (feature_index, plan_count) in counts.into_iter().enumerate() {
        generate_feature(
            rng,
            cast,
            &mut batch,
            project_created,
            feature_index,
            plan_count,
        );
    }
    batch
}

fn generate_feature(
    rng: &mut Rng,
    cast: &Cast,
    batch: &mut ProjectBatch,
    project_created: DateTime<Utc>,
    index: usize,
    plan_count: usize,
) {
    let project_id = batch.project.id;
    let id = Uuid::now_v7();
    let area = FEATURE_AREAS[index % FEATURE_AREAS.len()];
    let aspect = FEATURE_ASPECTS[(index / FEATURE_AREAS.len()) % FEATURE_ASPECTS.len()];
    let round = index / (FEATURE_AREAS.len() * FEATURE_ASPECTS.len());
    let title = match round {
        0 => format!("{area}: {aspect}"),
        _ => format!("{area}: {aspect} ({})", round + 1),
    };
    let spec = feature_spec(&title);
    let stored = spec_key(project_id, SpecOwner::Feature(id), &spec);
    let created = project_created + rng.seconds_between(Duration::hours(1), Duration::days(14));
    let mut drafts: Vec<PlanDraft> = (0..plan_count)
        .map(|_| generate_plan(rng, cast, project_id, id, created))
        .collect();

    // Versions as the workflow cuts them: v1 with the feature, then one per
    // completion in completion order.
    let mut versions = vec![feature_version::Model {
        id: Uuid::now_v7(),
        feature_id: id,
        version: 1,
        spec_key: stored.key.clone(),
        implemented_by_plan_id: None,
        implemented_by: None,
        created_at: created,
    }];
    let mut completed: Vec<&mut PlanDraft> = drafts
        .iter_mut()
        .filter(|draft| draft.completed_at.is_some())
        .collect();
    completed.sort_by_key(|draft| draft.completed_at);
    let mut updated = created;
    for draft in completed {
        let version = versions.len() as i32 + 1;
        let at = draft.completed_at.unwrap_or(created);
        updated = updated.max(at);
        draft.row.implemented_version = Some(version);
        versions.push(feature_version::Model {
            id: Uuid::now_v7(),
            feature_id: id,
            version,
            spec_key: stored.key.clone(),
            implemented_by_plan_id: Some(draft.row.id),
            implemented_by: draft.row.submitted_by,
            created_at: at,
        });
    }
    // Each plan was written against the version current when it was created.
    for draft in &mut drafts {
        let based_on = versions
            .iter()
            .filter(|version| version.created_at <= draft.row.created_at)
            .map(|version| version.version)
            .max()
            .unwrap_or(1);
        draft.row.based_on_version = based_on;
        draft.row.based_on_spec_key = stored.key.clone();
        batch.revisions.push(plan_spec_revision::Model {
            id: Uuid::now_v7(),
            plan_id: draft.row.id,
            spec_key: draft.row.spec_key.clone(),
            spec_size: draft.row.spec_size,
            created_by: Some(draft.row.created_by),
            created_at: draft.row.created_at,
        });
    }
    batch.features.push(feature::Model {
        id,
        project_id,
        title: title.clone(),
        description: Some(format!("{title}, as the customers asked for it.")),
        current_version: versions.len() as i32,
        spec_key: stored.key.clone(),
        created_at: created,
        updated_at: updated,
    });
    batch.specs.push((stored.key, spec));
    batch.versions.extend(versions);
    batch.plans_per_feature.push((id, plan_count));
    for draft in drafts {
        batch.specs.push((draft.row.spec_key.clone(), draft.spec));
        batch.events.extend(draft.events);
        batch.plans.push(draft.row);
    }
}

fn generate_plan(
    rng: &mut Rng,
    cast: &Cast,
    project_id: Uuid,
    feature_id: Uuid,
    feature_created: DateTime<Utc>,
) -> PlanDraft {
    let current = now();
    let id = Uuid::now_v7();
    let status = rng.status();
    let creator = rng.pick(&cast.writers());
    let worker = rng.pick(&cast.workers);
    let title = format!(
        "{} {} #{}",
        rng.pick(&PLAN_VERBS),
        rng.pick(&PLAN_OBJECTS),
        1 + rng.below(999)
    );
    let steps = history(rng, status, creator, worker, cast.owner);

    // When the user-driven steps start and end, by where the plan is now.
    // Claimed and in-progress plans are fresh (the sweeper would stall them
    // otherwise); stalled ones went quiet more than a day ago.
    let earliest = feature_created + Duration::minutes(1);
    let (created, last) = match status {
        PlanStatus::Draft | PlanStatus::Ready => {
            let created = earliest
                + rng.seconds_between(Duration::zero(), current - earliest - Duration::minutes(10));
            let room = (current - Duration::minutes(1) - created).min(Duration::days(3));
            (
                created,
                created + rng.seconds_between(Duration::zero(), room),
            )
        }
        PlanStatus::Claimed | PlanStatus::InProgress => {
            let last = current - rng.seconds_between(Duration::minutes(5), Duration::hours(20));
            let created =
                (last - rng.seconds_between(Duration::hours(2), Duration::days(10))).max(earliest);
            (created, last)
        }
        PlanStatus::Stalled => {
            let last = current - rng.seconds_between(Duration::hours(25), Duration::days(14));
            let created =
                (last - rng.seconds_between(Duration::hours(2), Duration::days(10))).max(earliest);
            (created, last)
        }
        PlanStatus::Review | PlanStatus::Completed | PlanStatus::Failed => {
            let created = earliest
                + rng.seconds_between(Duration::zero(), current - earliest - Duration::days(2));
            let room = (current - Duration::minutes(1) - created).min(Duration::days(14));
            (
                created,
                created + rng.seconds_between(Duration::hours(2), room),
            )
        }
    };

    let user_steps = steps
        .iter()
        .filter(|step| step.actor.is_some())
        .count()
        .max(1);
    let span = (last - created).num_seconds().max(0);
    let mut times = Vec::with_capacity(steps.len());
    let mut user_step = 0;
    for step in &steps {
        let at = if step.actor.is_some() {
            let offset = if user_steps == 1 {
                0
            } else {
                span * user_step as i64 / (user_steps as i64 - 1)
            };
            user_step += 1;
            created + Duration::seconds(offset)
        } else {
            // The sweeper stalls a plan a day after its last activity, at its next sweep.
            last + Duration::hours(24) + rng.seconds_between(Duration::zero(), Duration::minutes(1))
        };
        times.push(at);
    }

    let mut last_activity = created;
    let mut claimed_at = None;
    let mut submitted_by = None;
    let mut completed_at = None;
    let mut from = None;
    let mut events = Vec::with_capacity(steps.len());
    for (step, at) in steps.iter().zip(&times) {
        if step.activity {
            last_activity = *at;
        }
        match step.kind {
            EventKind::Claimed => claimed_at = Some(*at),
            EventKind::Submitted => submitted_by = step.actor,
            EventKind::Completed => {
                completed_at = Some(*at);
                // Completing straight from work records the worker as submitter.
                if step.activity {
                    submitted_by = step.actor;
                }
            }
            _ => {}
        }
        events.push(plan_event::ActiveModel {
            project_id: Set(project_id),
            feature_id: Set(feature_id),
            plan_id: Set(id),
            kind: Set(step.kind),
            from_status: Set(from),
            to_status: Set(step.to),
            actor_id: Set(step.actor),
            at: Set(*at),
            ..Default::default()
        });
        from = Some(step.to);
    }
    let updated = times.last().copied().unwrap_or(created);
    let holds_claim = status.is_worked_on();
    let spec = plan_spec(&title);
    let stored = spec_key(project_id, SpecOwner::Plan(id), &spec);
    let artifacts = submitted_by.map(|_| {
        format!(
            "## Work done\n\n- PR: https://git.example.com/demo/pull/{}\n- Tests added and passing\n",
            1000 + rng.below(9000)
        )
    });
    PlanDraft {
        row: plan::Model {
            id,
            project_id,
            feature_id,
            title,
            description: rng
                .chance(60)
                .then(|| "Keeps the change small enough to review in one sitting.".to_owned()),
            status,
            spec_key: stored.key,
            spec_sha256: stored.sha256,
            spec_size: stored.size,
            work_artifacts: artifacts,
            claimed_by: holds_claim.then_some(worker),
            claimed_at: if holds_claim { claimed_at } else { None },
            submitted_by,
            implemented_version: None,
            last_activity_at: last_activity,
            created_by: creator,
            created_at: created,
            updated_at: updated,
            // Set by the feature once its versions are known.
            based_on_version: 1,
            based_on_spec_key: String::new(),
            // From the id's random bits, so the demo's other draws stay as they were.
            priority: i32::from(id.as_bytes()[15] % 5),
            claim_generation: i64::from(holds_claim || submitted_by.is_some()),
            // The global --stale-after applies to demo claims.
            lease_seconds: None,
            lease_expires_at: None,
        },
        spec,
        events,
        completed_at,
    }
}

/// The steps that bring a new plan to `status`, by the workflow table.
fn history(
    rng: &mut Rng,
    status: PlanStatus,
    creator: Uuid,
    worker: Uuid,
    owner: Uuid,
) -> Vec<Step> {
    use PlanStatus::*;
    let step = |kind, to, actor: Option<Uuid>, activity| Step {
        kind,
        to,
        actor,
        activity,
    };
    let created_ready = rng.chance(50);
    let mut steps = vec![step(
        EventKind::Created,
        if status == Draft || !created_ready {
            Draft
        } else {
            Ready
        },
        Some(creator),
        true,
    )];
    if status == Draft {
        return steps;
    }
    if !created_ready {
        steps.push(step(EventKind::StatusChanged, Ready, Some(creator), false));
    }
    if status == Ready {
        return steps;
    }
    steps.push(step(EventKind::Claimed, Claimed, Some(worker), true));
    if status == Claimed {
        return steps;
    }
    steps.push(step(EventKind::Updated, InProgress, Some(worker), true));
    match status {
        Stalled => steps.push(step(EventKind::Stalled, Stalled, None, false)),
        Review => steps.push(step(EventKind::Submitted, Review, Some(worker), true)),
        Completed if rng.chance(60) => {
            steps.push(step(EventKind::Submitted, Review, Some(worker), true));
            steps.push(step(EventKind::Completed, Completed, Some(owner), false));
        }
        Completed => steps.push(step(EventKind::Completed, Completed, Some(worker), true)),
        Failed => steps.push(step(EventKind::Failed, Failed, Some(worker), false)),
        _ => {}
    }
    steps
}
