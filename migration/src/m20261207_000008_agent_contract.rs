use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// What agents and leads read along the workflow:
/// - `plan_events.note`: why a change was made — the server's cause for a
///   change no person made (a drift, an unblock, a stall), so the history
///   names it instead of the person whose unrelated action set it off, or
///   the reviewer's reason for sending work back. Existing events keep their
///   actor and get no note.
/// - `projects.review_policy`: who may approve work in REVIEW; existing
///   projects get `any_member`, the behaviour they had.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one thing at a time.
        let columns = [
            ("plan_events", text_null("note").to_owned()),
            (
                "projects",
                string("review_policy").default("any_member").to_owned(),
            ),
        ];
        for (table, column) in columns {
            manager
                .alter_table(Table::alter().table(table).add_column(column).to_owned())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, column) in [("projects", "review_policy"), ("plan_events", "note")] {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .drop_column(Alias::new(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
