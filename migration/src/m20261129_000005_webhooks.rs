use sea_orm_migration::{prelude::*, schema::*};

use crate::{foreign_key, index};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Webhooks and their delivery log. A webhook's `event_cursor` is its place in
/// `plan_events` (the outbox): the id of the last event it is done with, so
/// delivery resumes there after a restart, a crash or on another instance.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("webhooks")
                    .if_not_exists()
                    .col(pk_uuid("id"))
                    .col(uuid("project_id"))
                    .col(string_len("url", 2048))
                    .col(text_null("event_kinds"))
                    .col(string_len("secret", 128))
                    .col(boolean("enabled"))
                    .col(text_null("disabled_reason"))
                    .col(big_integer("event_cursor"))
                    .col(integer("attempts").default(0))
                    .col(integer("consecutive_failures").default(0))
                    .col(timestamp_with_time_zone_null("failing_since"))
                    .col(timestamp_with_time_zone_null("next_attempt_at"))
                    .col(uuid("created_by"))
                    .col(timestamp_with_time_zone("created_at"))
                    .col(timestamp_with_time_zone("updated_at"))
                    .foreign_key(&mut foreign_key(
                        "webhooks",
                        "project_id",
                        "projects",
                        ForeignKeyAction::Restrict,
                    ))
                    .foreign_key(&mut foreign_key(
                        "webhooks",
                        "created_by",
                        "users",
                        ForeignKeyAction::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("webhook_deliveries")
                    .if_not_exists()
                    .col(pk_uuid("id"))
                    .col(uuid("webhook_id"))
                    .col(big_integer("event_id"))
                    .col(integer("attempt"))
                    .col(boolean("redelivery").default(false))
                    .col(integer_null("status"))
                    .col(text_null("error"))
                    .col(integer_null("duration_ms"))
                    .col(timestamp_with_time_zone("at"))
                    .foreign_key(&mut foreign_key(
                        "webhook_deliveries",
                        "webhook_id",
                        "webhooks",
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut foreign_key(
                        "webhook_deliveries",
                        "event_id",
                        "plan_events",
                        ForeignKeyAction::Restrict,
                    ))
                    .to_owned(),
            )
            .await?;
        for statement in [
            index("webhooks", "ix_webhooks_project", &["project_id"]),
            index(
                "webhook_deliveries",
                "ix_webhook_deliveries_webhook",
                &["webhook_id", "id"],
            ),
        ] {
            manager.create_index(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["webhook_deliveries", "webhooks"] {
            manager
                .drop_table(
                    Table::drop()
                        .table(Alias::new(table))
                        .if_exists()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
