use sea_orm_migration::prelude::*;

use crate::index;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Plan lists of a feature or a project in their default order (creation
/// time, id as tie-breaker), so the database reads a page in index order and
/// stops at the page's end instead of sorting every plan of the feature or project.
const INDEXES: [(&str, &str); 2] = [
    ("ix_plans_feature_created", "feature_id"),
    ("ix_plans_project_created", "project_id"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, parent) in INDEXES {
            manager
                .create_index(index("plans", name, &[parent, "created_at", "id"]))
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, _) in INDEXES {
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
        Ok(())
    }
}
