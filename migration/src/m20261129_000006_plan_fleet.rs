use sea_orm_migration::{prelude::*, schema::*};

use crate::{foreign_key, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Agent fleets: a priority per plan, dependencies between plans, and claims
/// as leases with fencing tokens.
///
/// - `priority` (0 = most urgent … 4, default 2: existing plans are "normal");
/// - `claim_generation` counts the plan's claims; the claim token carries it,
///   so a token from before a re-claim no longer matches (fencing);
/// - `lease_seconds` is the current claim's lease, `lease_expires_at` =
///   last activity + lease, which the sweeper compares with the clock (null
///   for claims taken before this migration: the global threshold applies);
/// - `plan_dependencies` (plan waits for blocker), both in one project.
const PLAN_COLUMNS: [&str; 4] = [
    "priority",
    "claim_generation",
    "lease_seconds",
    "lease_expires_at",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        let columns = [
            integer("priority").default(2).to_owned(),
            big_integer("claim_generation").default(0).to_owned(),
            integer_null("lease_seconds").to_owned(),
            timestamp_with_time_zone_null("lease_expires_at").to_owned(),
        ];
        for mut column in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("plans"))
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table("plan_dependencies")
                    .if_not_exists()
                    .col(uuid("plan_id"))
                    .col(uuid("blocked_by_plan_id"))
                    .col(uuid("project_id"))
                    .col(uuid("created_by"))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(
                        Index::create()
                            .col(Alias::new("plan_id"))
                            .col(Alias::new("blocked_by_plan_id")),
                    )
                    .foreign_key(&mut foreign_key(
                        "plan_dependencies",
                        "plan_id",
                        "plans",
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut foreign_key(
                        "plan_dependencies",
                        "blocked_by_plan_id",
                        "plans",
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        for statement in [
            // claimNextPlan: a project's READY plans in priority order.
            index(
                "plans",
                "ix_plans_claim_next",
                &["project_id", "status", "priority", "created_at"],
            ),
            // The sweeper: claims whose lease ran out.
            index("plans", "ix_plans_lease", &["status", "lease_expires_at"]),
            // Plan.blocks and unblocking on completion.
            index(
                "plan_dependencies",
                "ix_plan_dependencies_blocker",
                &["blocked_by_plan_id"],
            ),
        ] {
            manager.create_index(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(Alias::new("plan_dependencies"))
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        for name in ["ix_plans_claim_next", "ix_plans_lease"] {
            manager
                .drop_index(
                    Index::drop()
                        .name(name)
                        .table(Alias::new("plans"))
                        .if_exists()
                        .to_owned(),
                )
                .await?;
        }
        for column in PLAN_COLUMNS {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("plans"))
                        .drop_column(Alias::new(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
