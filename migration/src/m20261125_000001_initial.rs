use sea_orm_migration::{prelude::*, schema::*};

use crate::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Tables in creation order; `down` drops them in reverse so foreign keys never dangle.
const TABLES: [&str; 8] = [
    "users",
    "api_keys",
    "projects",
    "project_members",
    "features",
    "feature_versions",
    "plans",
    "plan_events",
];

fn foreign_key(from: &str, column: &str, to: &str) -> ForeignKeyCreateStatement {
    crate::foreign_key(from, column, to, ForeignKeyAction::Restrict)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("users")
                    .if_not_exists()
                    .col(pk_uuid("id"))
                    .col(string_len_uniq("email", 320))
                    .col(string_len_null("display_name", 255))
                    .col(boolean("is_admin").default(false))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("api_keys")
                    .if_not_exists()
                    .col(pk_uuid("id"))
                    .col(uuid("user_id"))
                    .col(string_len("label", 255))
                    .col(string_len_uniq("prefix", 32))
                    .col(string_len("secret_hash", 64))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone_null("last_used_at"))
                    .col(timestamp_with_time_zone_null("revoked_at"))
                    .foreign_key(&mut foreign_key("api_keys", "user_id", "users"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("projects")
                    .if_not_exists()
                    .col(pk_uuid("id"))
                    .col(string_len("name", 255))
                    .col(text_null("description"))
                    .col(uuid("created_by"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(&mut foreign_key("projects", "created_by", "users"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("project_members")
                    .if_not_exists()
                    .col(uuid("project_id"))
                    .col(uuid("user_id"))
                    .col(string_len("role", 16))
                    .col(timestamp_with_time_zone("created_at"))
                    .primary_key(Index::create().col("project_id").col("user_id"))
                    .foreign_key(&mut foreign_key(
                        "project_members",
                        "project_id",
                        "projects",
                    ))
                    .foreign_key(&mut foreign_key("project_members", "user_id", "users"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("features")
                    .if_not_exists()
                    .col(pk_uuid("id"))
                    .col(uuid("project_id"))
                    .col(string_len("title", 255))
                    .col(text_null("description"))
                    .col(integer("current_version"))
                    .col(string_len("spec_key", 512))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(&mut foreign_key("features", "project_id", "projects"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("feature_versions")
                    .if_not_exists()
                    .col(pk_uuid("id"))
                    .col(uuid("feature_id"))
                    .col(integer("version"))
                    .col(string_len("spec_key", 512))
                    .col(uuid_null("implemented_by_plan_id"))
                    .col(uuid_null("implemented_by"))
                    .col(timestamp_with_time_zone("created_at"))
                    .foreign_key(&mut foreign_key(
                        "feature_versions",
                        "feature_id",
                        "features",
                    ))
                    .foreign_key(&mut foreign_key(
                        "feature_versions",
                        "implemented_by",
                        "users",
                    ))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("plans")
                    .if_not_exists()
                    .col(pk_uuid("id"))
                    .col(uuid("project_id"))
                    .col(uuid("feature_id"))
                    .col(string_len("title", 255))
                    .col(text_null("description"))
                    .col(string_len("status", 16))
                    .col(string_len("spec_key", 512))
                    .col(string_len("spec_sha256", 64))
                    .col(big_integer("spec_size"))
                    .col(text_null("work_artifacts"))
                    .col(uuid_null("claimed_by"))
                    .col(timestamp_with_time_zone_null("claimed_at"))
                    .col(uuid_null("submitted_by"))
                    .col(integer_null("implemented_version"))
                    .col(timestamp_with_time_zone("last_activity_at"))
                    .col(uuid("created_by"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(&mut foreign_key("plans", "project_id", "projects"))
                    .foreign_key(&mut foreign_key("plans", "feature_id", "features"))
                    .foreign_key(&mut foreign_key("plans", "claimed_by", "users"))
                    .foreign_key(&mut foreign_key("plans", "submitted_by", "users"))
                    .foreign_key(&mut foreign_key("plans", "created_by", "users"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table("plan_events")
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    .col(uuid("project_id"))
                    .col(uuid("feature_id"))
                    .col(uuid("plan_id"))
                    .col(string_len("kind", 32))
                    .col(string_len_null("from_status", 16))
                    .col(string_len("to_status", 16))
                    .col(uuid_null("actor_id"))
                    .col(timestamp_with_time_zone("at"))
                    .foreign_key(&mut foreign_key("plan_events", "plan_id", "plans"))
                    .foreign_key(&mut foreign_key("plan_events", "actor_id", "users"))
                    .to_owned(),
            )
            .await?;

        let mut unique_version = index(
            "feature_versions",
            "ux_feature_versions_feature_version",
            &["feature_id", "version"],
        );
        manager
            .create_index(unique_version.unique().to_owned())
            .await?;

        for statement in [
            index("api_keys", "ix_api_keys_user", &["user_id"]),
            index("project_members", "ix_project_members_user", &["user_id"]),
            index("features", "ix_features_project", &["project_id"]),
            index(
                "plans",
                "ix_plans_project_status",
                &["project_id", "status"],
            ),
            index(
                "plans",
                "ix_plans_feature_status",
                &["feature_id", "status"],
            ),
            index("plans", "ix_plans_claimed_by", &["claimed_by"]),
            index(
                "plans",
                "ix_plans_status_activity",
                &["status", "last_activity_at"],
            ),
            index("plan_events", "ix_plan_events_plan", &["plan_id", "id"]),
            index(
                "plan_events",
                "ix_plan_events_project",
                &["project_id", "id"],
            ),
        ] {
            manager.create_index(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in TABLES.iter().rev() {
            manager
                .drop_table(
                    Table::drop()
                        .table(Alias::new(*table))
                        .if_exists()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
