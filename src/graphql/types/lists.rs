//! The lists of the schema: plans and features, one page at a time, with
//! what their rows show loaded up front.

use std::hash::Hash;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use async_graphql::{Context, Enum, InputObject};
use uuid::Uuid;

use super::{Feature, Plan, Project, User};
use crate::error::AppResult;
use crate::graphql::connection::{
    Connection, CountAll, Counted, PageArguments, SortKind, keys_if, row_field_newest,
    row_field_selected, row_path_selected, visit_row_fields, window,
};
use crate::graphql::inline::{PageRow, PureFields};
use crate::graphql::loaders::{
    DbLoader, FeatureId, FeaturePlanCounts, FeatureVersions, PlanEvents, ProjectId, ProjectMembers,
    RoleIn, SpecKey, UserId, VersionNumber, prime,
};
use crate::graphql::{document_budget, loaders, services, viewer};
use crate::service::pagination::{Position, SortValue};
use crate::service::plan_lists::{PageReads, PlanFilter, PlanJoins, PlanRow, PlanSort};
use crate::service::plan_rows::{JoinColumns, PlanColumns};
use entity::{feature, project, user};
use sea_orm::{IdenStatic, Iterable};

/// Sort keys of plan lists.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Default)]
#[graphql(remote = "crate::service::plan_lists::PlanSort")]
pub enum PlanOrderField {
    /// When the plan was created (the default).
    #[default]
    CreatedAt,
    /// When anything about the plan last changed.
    UpdatedAt,
    /// Last claimer activity.
    LastActivityAt,
    /// Title, alphabetically.
    Title,
    /// Priority, most urgent (0) first when ascending; then by id, which
    /// is creation order.
    Priority,
}

/// Sort direction.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrderDirection {
    /// Smallest first (the default).
    #[default]
    Asc,
    /// Largest first.
    Desc,
}

/// How to order a plan list; ties are broken by id, so the order is stable.
#[derive(InputObject, Clone, Copy, Default)]
pub struct PlanOrder {
    /// What to sort by.
    #[graphql(default)]
    pub field: PlanOrderField,
    /// Which way.
    #[graphql(default)]
    pub direction: OrderDirection,
}

fn sort_name(sort: PlanSort) -> &'static str {
    match sort {
        PlanSort::CreatedAt => "created_at",
        PlanSort::UpdatedAt => "updated_at",
        PlanSort::LastActivityAt => "last_activity_at",
        PlanSort::Title => "title",
        PlanSort::Priority => "priority",
    }
}

pub type PlanConnection = Connection<Plan>;
pub type FeatureConnection = Connection<Feature>;

/// A plan page's rows resolve inline (`inline.rs`) when they show only
/// these: the plan's columns, and the relations its statement joins in or
/// [`prime_plan_rows`] loads up front (with the columns of those). A field
/// missing here is only slower; one listed here that waited would make the
/// page wait for it row after row.
impl PageRow for Plan {
    const IMMEDIATE: &'static [(&'static str, &'static [&'static str])] = &[
        (
            "Plan",
            &[
                "id",
                "title",
                "description",
                "status",
                "specSha256",
                "specSize",
                "workArtifacts",
                "claimedBy",
                "claimedAt",
                "submittedBy",
                "implementedVersion",
                "lastActivityAt",
                "createdBy",
                "createdAt",
                "updatedAt",
                "feature",
                "project",
                "basedOnVersion",
                "priority",
                "claimToken",
                "leaseExpiresAt",
            ],
        ),
        ("User", User::PURE),
        ("Feature", Feature::PURE),
        ("Project", Project::PURE),
    ];
}

impl PageRow for Feature {}

/// `totalCount` of a plan list: the viewer's plans matching the filter.
struct PlanTotal(PlanFilter);

#[async_trait::async_trait]
impl CountAll for PlanTotal {
    async fn count_all(&self, ctx: &Context<'_>) -> AppResult<u64> {
        services(ctx).count_plans(viewer(ctx)?, &self.0).await
    }
}

/// `totalCount` of a project's features.
struct FeatureTotal(Uuid);

#[async_trait::async_trait]
impl CountAll for FeatureTotal {
    async fn count_all(&self, ctx: &Context<'_>) -> AppResult<u64> {
        services(ctx).count_features(self.0).await
    }
}

/// One page of the viewer's plans matching `filter`.
pub async fn load_plans(
    ctx: &Context<'_>,
    filter: PlanFilter,
    order: PlanOrder,
    arguments: PageArguments,
) -> AppResult<PlanConnection> {
    let sort: PlanSort = order.field.into();
    let name = sort_name(sort);
    let descending = order.direction == OrderDirection::Desc;
    let kind = match sort {
        PlanSort::Title => SortKind::Text,
        PlanSort::Priority => SortKind::Int,
        _ => SortKind::Time,
    };
    let window = window(arguments, name, kind, descending)?;
    let reads = PageReads {
        columns: selected_columns(ctx),
        joins: PlanJoins {
            // `specDrift` compares the plan with its whole feature row.
            feature: if row_field_selected(ctx, "specDrift") {
                JoinColumns::ALL
            } else {
                joined_columns::<Feature, feature::Column>(ctx, "feature")
            },
            project: joined_columns::<Project, project::Column>(ctx, "project"),
            claimer: joined_columns::<User, user::Column>(ctx, "claimedBy"),
        },
        count: ctx.look_ahead().field("totalCount").exists(),
    };
    let (page, total) = services(ctx)
        .list_plans(viewer(ctx)?, &filter, sort, &window, reads)
        .await?;
    prime_plan_rows(ctx, &page.rows, reads.joins).await?;
    let total: Box<dyn CountAll> = match total {
        Some(total) => Box::new(Counted(total)),
        None => Box::new(PlanTotal(filter)),
    };
    Ok(Connection::from_page(
        page,
        total,
        name,
        |row| sort.position(&row.plan),
        Plan::from,
    ))
}

/// The plan columns that the fields selected on a page's rows read
/// ([`Plan::COLUMNS_READ`]); all of them for a field not listed there.
fn selected_columns(ctx: &Context<'_>) -> PlanColumns {
    let mut columns = PlanColumns::KEYS;
    visit_row_fields(ctx, |field| {
        let name = field.name();
        let read = Plan::COLUMNS_READ
            .iter()
            .find_map(|(field, read)| (*field == name).then_some(*read));
        columns = match read {
            Some(read) => columns.and(PlanColumns::of(read)),
            None if name == "__typename" => columns,
            None => PlanColumns::ALL,
        };
    });
    columns
}

/// The columns of the row joined under the rows' `field` (`feature`) that
/// the page shows: the id and those of the `T::PURE` fields selected under
/// it; all of them when anything else is (a field that may read any
/// column); none when `field` is not selected.
fn joined_columns<T: PureFields, C: Iterable + IdenStatic + Copy>(
    ctx: &Context<'_>,
    field: &str,
) -> JoinColumns {
    let mut joined = false;
    let mut columns: Vec<String> = vec!["id".to_owned()];
    let mut all = false;
    visit_row_fields(ctx, |row_field| {
        if row_field.name() != field {
            return;
        }
        joined = true;
        for below in row_field.selection_set() {
            match below.name() {
                "__typename" => {}
                name if T::PURE.contains(&name) => columns.push(column_name(name)),
                _ => all = true,
            }
        }
    });
    match (joined, all) {
        (false, _) => JoinColumns::NONE,
        (true, true) => JoinColumns::ALL,
        (true, false) => {
            JoinColumns::of(|column: C| columns.iter().any(|name| name == column.as_str()))
        }
    }
}

/// A pure field's column: its name in snake case (`displayName` →
/// `display_name`).
fn column_name(field: &str) -> String {
    let mut column = String::with_capacity(field.len() + 4);
    for character in field.chars() {
        if character.is_ascii_uppercase() {
            column.push('_');
            column.push(character.to_ascii_lowercase());
        } else {
            column.push(character);
        }
    }
    column
}

/// One page of a project's features, oldest first.
pub async fn load_features(
    ctx: &Context<'_>,
    project: Uuid,
    arguments: PageArguments,
) -> AppResult<FeatureConnection> {
    const SORT: &str = "feature_created_at";
    let window = window(arguments, SORT, SortKind::Time, false)?;
    let page = services(ctx).list_features(project, &window).await?;
    prime_feature_rows(ctx, &page.rows).await?;
    Ok(Connection::from_page(
        page,
        Box::new(FeatureTotal(project)),
        SORT,
        |feature| Position {
            value: SortValue::Time(feature.created_at),
            id: feature.id,
        },
        Feature::from,
    ))
}

/// Puts everything the selected row fields need into the request's loader
/// caches, so that the rows' fields are answered from memory: what the page
/// statement joined is fed in as it is, the rest is loaded in one query per
/// relation, all at once. Without this the fields still batch through the
/// loaders, but each batch first waits 1 ms for more keys and a
/// slow-to-resolve page could split into several queries; priming makes the
/// statement count independent of page size and timing, and costs no waiting.
async fn prime_plan_rows(ctx: &Context<'_>, rows: &[PlanRow], joins: PlanJoins) -> AppResult<()> {
    let loaders = loaders(ctx);
    let db = &loaders.db;
    // The rows carry what was joined for their own fields; the loaders get
    // it too, for the same rows shown deeper (a feature's project), unless
    // only some of its columns were selected.
    feed_whole(db, joins.feature, rows, |row| {
        let feature = row.feature.as_ref()?;
        Some((FeatureId(feature.id), Arc::clone(feature)))
    })
    .await;
    feed_whole(db, joins.project, rows, |row| {
        let project = row.project.as_ref()?;
        Some((ProjectId(project.id), Arc::clone(project)))
    })
    .await;
    feed_whole(db, joins.claimer, rows, |row| {
        let claimer = row.claimer.as_ref()?;
        Some((UserId(claimer.id), Arc::clone(claimer)))
    })
    .await;
    let selected = |field| row_field_selected(ctx, field);
    let mut users = keys_if(selected("submittedBy"), rows, |row| row.plan.submitted_by);
    users.extend(keys_if(selected("createdBy"), rows, |row| {
        Some(row.plan.created_by)
    }));
    let users: Vec<UserId> = users.into_iter().flatten().map(UserId).collect();
    let events = if selected("events") {
        let last = row_field_newest(ctx, "events")?;
        keys_if(true, rows, |row| PlanEvents {
            plan: row.plan.id,
            last,
        })
    } else {
        Vec::new()
    };
    let versions: Vec<VersionNumber> =
        keys_if(selected("implementedFeatureVersion"), rows, |row| {
            row.plan.implemented_version.map(|version| VersionNumber {
                feature: row.plan.feature_id,
                version,
            })
        })
        .into_iter()
        .flatten()
        .collect();
    let members = keys_if(
        row_path_selected(ctx, &["project", "members"]),
        rows,
        |row| ProjectMembers(row.plan.project_id),
    );
    let viewer = viewer(ctx)?.id();
    let roles = keys_if(
        row_path_selected(ctx, &["project", "viewerRole"]),
        rows,
        |row| RoleIn {
            project: row.plan.project_id,
            user: viewer,
        },
    );
    // Read ahead only what the response may carry; over budget, the
    // fields refuse one by one and nothing more is loaded.
    let spec_bytes: i64 = rows.iter().map(|row| row.plan.spec_size).sum();
    let affordable =
        usize::try_from(spec_bytes).is_ok_and(|bytes| document_budget(ctx).fits(bytes));
    let specs = keys_if(selected("spec") && affordable, rows, |row| {
        SpecKey(row.plan.spec_key.clone())
    });
    let (users, events, versions, members, roles, ()) = futures::join!(
        prime(db, users),
        prime(db, events),
        prime(db, versions),
        prime(db, members),
        prime(db, roles),
        // A store outage must fail only the `spec` fields (they ask again
        // and report it at their paths), never the page.
        async {
            let _ = loaders.prime_specs(specs).await;
        }
    );
    users.and(events).and(versions).and(members).and(roles)
}

/// Feeds the loader the related rows a page joined with every column
/// (`joined` picks one out of a row); a row with only some of its columns
/// must not stand for the whole row elsewhere in the request.
async fn feed_whole<K, M>(
    db: &DataLoader<DbLoader, HashMapCache>,
    columns: JoinColumns,
    rows: &[PlanRow],
    joined: impl Fn(&PlanRow) -> Option<(K, Arc<M>)>,
) where
    DbLoader: Loader<K, Value = Arc<M>>,
    K: Send + Sync + Hash + Eq + Clone + 'static,
{
    if columns == JoinColumns::ALL {
        db.feed_many(rows.iter().filter_map(joined)).await;
    }
}

async fn prime_feature_rows(ctx: &Context<'_>, features: &[feature::Model]) -> AppResult<()> {
    let loaders = loaders(ctx);
    let selected = |field| row_field_selected(ctx, field);
    let counts = keys_if(selected("planCounts"), features, |feature| {
        FeaturePlanCounts(feature.id)
    });
    let versions = if selected("versions") {
        let last = row_field_newest(ctx, "versions")?;
        keys_if(true, features, |feature| FeatureVersions {
            feature: feature.id,
            last,
        })
    } else {
        Vec::new()
    };
    let specs = keys_if(selected("spec"), features, |feature| {
        SpecKey(feature.spec_key.clone())
    });
    let (counts, versions, ()) = futures::join!(
        prime(&loaders.db, counts),
        prime(&loaders.db, versions),
        async {
            let _ = loaders.prime_specs(specs).await;
        }
    );
    counts.and(versions)
}

#[cfg(test)]
mod tests {
    use async_graphql::registry::{MetaType, MetaTypeName};
    use sea_orm::{IdenStatic, Iterable};

    use super::{Feature, Plan, Project, User, column_name};
    use crate::graphql::inline::{PageRow, PureFields};
    use entity::{feature, project, user};

    /// The fields of the types in `Plan::IMMEDIATE` that are not immediate,
    /// each with what it may wait for: a plan page showing any of them
    /// resolves its rows the general way (an object under a row: its own
    /// fields), row after row.
    const GENERAL_PATH: &[(&str, &[&str])] = &[
        (
            "Plan",
            &[
                // The spec store: primed only when the page's specs fit the
                // document budget, and asked again after a failed prime.
                "spec",
                "specHtml",
                // Primed, but `FeatureVersion` has no immediate fields here.
                "implementedFeatureVersion",
                // Its feature is joined whole, but `SpecDrift` has no
                // immediate fields here, and its `diff` waits for a diff.
                "specDrift",
                // Loaders a page does not prime.
                "specRevisions",
                "blockedBy",
                "blocks",
                "isBlocked",
                // The viewer's role and the project, loaded per plan.
                "availableActions",
                // Primed for the `last` of its first selection only, and its
                // events' actors and plans are not.
                "events",
            ],
        ),
        ("User", &[]),
        (
            "Feature",
            &[
                "spec",
                "project",
                "plans",
                "planCounts",
                "driftedPlanCount",
                "specDiff",
                "versions",
            ],
        ),
        (
            "Project",
            &[
                "createdBy",
                // Primed for a page, but not a column: objects under a row
                // resolve inline only with columns selected (`Related`).
                "viewerRole",
                "members",
                "features",
                "planCounts",
                "webhooks",
            ],
        ),
    ];

    /// A field missing from `IMMEDIATE` still answers right, but sends every
    /// page that shows it the general way, unnoticed: each field of a plan
    /// row, and of the objects under it that `IMMEDIATE` lists, is either
    /// immediate or named in `GENERAL_PATH`, so that a new one is placed on
    /// purpose.
    #[test]
    fn every_field_of_a_plan_row_is_immediate_or_named_as_general() {
        let registry = crate::graphql::registry();
        let mut unplaced = Vec::new();
        for (type_name, immediate) in <Plan as PageRow>::IMMEDIATE {
            let general = GENERAL_PATH
                .iter()
                .find_map(|(name, fields)| (name == type_name).then_some(*fields))
                .unwrap_or_else(|| panic!("{type_name} is not in GENERAL_PATH"));
            let fields = registry.types[*type_name]
                .fields()
                .unwrap_or_else(|| panic!("{type_name} has no fields"));
            for (name, field) in fields {
                match (
                    immediate.contains(&name.as_str()),
                    general.contains(&name.as_str()),
                ) {
                    (false, false) => unplaced.push(format!("{type_name}.{name}")),
                    (true, true) => panic!("{type_name}.{name} is both immediate and general"),
                    (true, false) => {
                        // Below an immediate field, its object's own fields
                        // are checked too, or the page would go the general
                        // way for want of them.
                        let below = MetaTypeName::concrete_typename(&field.ty);
                        if matches!(registry.types.get(below), Some(MetaType::Object { .. })) {
                            assert!(
                                <Plan as PageRow>::IMMEDIATE
                                    .iter()
                                    .any(|(name, _)| *name == below),
                                "{type_name}.{name} is immediate, but its {below} has no entry"
                            );
                        }
                    }
                    (false, true) => {}
                }
            }
            for name in immediate.iter().chain(general) {
                assert!(
                    fields.contains_key(*name),
                    "{type_name}.{name} is listed, but is no field of {type_name}"
                );
            }
        }
        assert!(
            unplaced.is_empty(),
            "neither in Plan::IMMEDIATE nor in GENERAL_PATH: {unplaced:?}"
        );
    }

    /// A page joins only the columns named after the pure fields selected
    /// under its rows' feature, project and claimer: a pure field that is
    /// not a column of that name would read its type's default there.
    #[test]
    fn every_pure_field_is_a_column_of_its_name() {
        fn check<T: PureFields, C: Iterable + IdenStatic>() {
            for field in T::PURE {
                let column = column_name(field);
                assert!(
                    C::iter().any(|candidate| candidate.as_str() == column),
                    "{}.{field} is not the column `{column}`",
                    T::type_name()
                );
            }
        }
        check::<Feature, feature::Column>();
        check::<Project, project::Column>();
        check::<User, user::Column>();
    }
}
