use sea_orm_migration::{prelude::*, schema::*};

use crate::{foreign_key, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Spec drift: each plan records the feature version and the feature spec
/// object it was written against (`based_on_version`, `based_on_spec_key`),
/// and each plan spec revision keeps a row (`plan_spec_revisions`) pointing
/// at its immutable object.
///
/// Backfill of existing plans: the version current at the plan's creation —
/// the highest version of its feature created at or before the plan — which
/// the data always allows (v1 is created with the feature, before any plan);
/// the feature's current version only if no such version exists. The spec
/// key is that version's spec as it is now: earlier amendments were not
/// recorded, so no existing plan starts out drifted by an amendment. Each
/// existing plan gets one revision row for its current spec, stamped with the
/// plan's `updated_at` and no author (who wrote it was not recorded).
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        for column in [
            integer("based_on_version").default(1).to_owned(),
            string("based_on_spec_key").default("").to_owned(),
        ] {
            manager
                .alter_table(Table::alter().table("plans").add_column(column).to_owned())
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table("plan_spec_revisions")
                    .if_not_exists()
                    .col(pk_uuid("id"))
                    .col(uuid("plan_id"))
                    .col(string("spec_key"))
                    .col(big_integer("spec_size"))
                    .col(uuid_null("created_by"))
                    .col(timestamp_with_time_zone("created_at"))
                    .foreign_key(&mut foreign_key(
                        "plan_spec_revisions",
                        "plan_id",
                        "plans",
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut foreign_key(
                        "plan_spec_revisions",
                        "created_by",
                        "users",
                        ForeignKeyAction::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "plan_spec_revisions",
                "ix_plan_spec_revisions_plan",
                &["plan_id", "created_at", "id"],
            ))
            .await?;
        // Plain SQL that SQLite and PostgreSQL both accept: correlated
        // subqueries are beyond what the schema builders express.
        let connection = manager.get_connection();
        connection
            .execute_unprepared(
                "UPDATE plans SET based_on_version = COALESCE(
                    (SELECT MAX(v.version) FROM feature_versions v
                      WHERE v.feature_id = plans.feature_id AND v.created_at <= plans.created_at),
                    (SELECT f.current_version FROM features f WHERE f.id = plans.feature_id))",
            )
            .await?;
        connection
            .execute_unprepared(
                "UPDATE plans SET based_on_spec_key = COALESCE(
                    (SELECT v.spec_key FROM feature_versions v
                      WHERE v.feature_id = plans.feature_id AND v.version = plans.based_on_version),
                    (SELECT f.spec_key FROM features f WHERE f.id = plans.feature_id))",
            )
            .await?;
        connection
            .execute_unprepared(
                "INSERT INTO plan_spec_revisions (id, plan_id, spec_key, spec_size, created_by, created_at)
                 SELECT id, id, spec_key, spec_size, NULL, updated_at FROM plans",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(Alias::new("plan_spec_revisions"))
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        for column in ["based_on_spec_key", "based_on_version"] {
            manager
                .alter_table(
                    Table::alter()
                        .table("plans")
                        .drop_column(Alias::new(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
